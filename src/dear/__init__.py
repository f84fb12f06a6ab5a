"""dear: DeAR-style dual-stage reranking — evaluation harness, distillation and listwise stages."""

__version__ = "0.1.0"
