"""The pointwise stage: the DeAR pair template and reference pooling, the scorers (cross-encoder,
bi-encoder, BM25, fusion, vLLM) and the reranker that sorts a ranking by their scores. Model
loading lives in ``dear.models``, listwise generation in ``dear.listwise``."""
