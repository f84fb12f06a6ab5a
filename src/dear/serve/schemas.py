"""The Cohere rerank wire format (v1 and v2; Jina and vLLM clients send the same shape).

Request: ``model``, ``query``, ``documents`` (strings or ``{text, title}`` objects), ``top_n``,
``return_documents``, ``max_tokens_per_doc``. Response: ``id``, ``results`` (best first:
``index`` into the request's documents, ``relevance_score``, ``document`` when asked for) and
``meta``. Fields a client may send that we do not use (``priority``, ``relevant_spans``,
``rank_fields``) are accepted and ignored, as Cohere's own API does for unknown options.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class RerankDocument(BaseModel):
    text: str
    title: str = ""


class RerankRequest(BaseModel):
    model: str | None = Field(None, description="Served model name (see GET /v1/models); optional here.")
    query: str = Field(..., min_length=1)
    documents: list[str | RerankDocument] = Field(..., min_length=1)
    top_n: int | None = Field(None, ge=1, description="Return only the best top_n results.")
    return_documents: bool = False
    max_tokens_per_doc: int | None = Field(None, ge=1, description="Cut each document to its first N tokens "
                                           "(never longer than the model's own document cut).")

    def titled(self) -> list[RerankDocument]:
        return [RerankDocument(text=d) if isinstance(d, str) else d for d in self.documents]


class ResultDocument(BaseModel):
    text: str
    title: str | None = None


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: ResultDocument | None = None


class RerankResponse(BaseModel):
    id: str
    results: list[RerankResult]
    meta: dict = Field(default_factory=dict, description="api_version, billed_units and per-query notes "
                       "(the listwise justification in dual-stage mode).")


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    owned_by: str = "dear"
    scorer: str
    stages: list[str]


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]
