"""Judges (relevance and QA), the stage pipeline, and result tables."""
