"""Serving: the Cohere-compatible rerank server (``serve.py``) and client-side pair tokenisation."""
