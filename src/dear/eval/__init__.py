"""Measuring runs: judges (ir_measures relevance, DPR answer matching), significance tests, the
stage pipeline and result tables."""
