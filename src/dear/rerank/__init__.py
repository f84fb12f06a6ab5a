"""The pointwise stage: the DeAR pair template and reference pooling, the scorers (cross-encoder, bi-encoder, BM25,
fusion, vLLM) and the reranker sorting by their scores."""
