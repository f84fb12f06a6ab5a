"""Rerankers: the pointwise scoring engine (and, later, listwise generation)."""
