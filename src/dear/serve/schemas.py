"""The Cohere rerank wire format (v1 and v2; Jina and vLLM clients send the same shape).

Unused request fields (``priority``, ``relevant_spans``, ``rank_fields``) are accepted and ignored, as Cohere does.
Texts must encode as UTF-8: a lone surrogate (``"\\ud800"``), which JSON can carry but no tokenizer takes, is refused
with a 422 naming the field.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


def unicode_text(text: str, field: str) -> str:
    """``text`` if it encodes as UTF-8, else a ValueError naming ``field`` and the bad character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{field}: not valid Unicode text (lone surrogate {text[error.start]!r} at "
            f"character {error.start})"
        ) from None
    return text


class RerankDocument(BaseModel):
    text: str
    title: str = ""


class RerankRequest(BaseModel):
    model: str | None = Field(
        None, description="Served model name (see GET /v1/models); optional here."
    )
    query: str = Field(..., min_length=1)
    documents: list[str | RerankDocument] = Field(..., min_length=1)
    top_n: int | None = Field(None, ge=1, description="Return only the best top_n results.")
    return_documents: bool = False
    max_tokens_per_doc: int | None = Field(
        None,
        ge=1,
        description="Cut each document to its first N tokens "
        "(never longer than the model's own document cut).",
    )

    @field_validator("documents")
    @classmethod
    def _documents_are_text(
        cls, documents: list[str | RerankDocument]
    ) -> list[str | RerankDocument]:
        for i, d in enumerate(documents):
            for field, text in (
                [("", d)] if isinstance(d, str) else [(".text", d.text), (".title", d.title)]
            ):
                unicode_text(text, f"documents[{i}]{field}")
        return documents

    def titled(self) -> list[RerankDocument]:
        return [RerankDocument(text=d) if isinstance(d, str) else d for d in self.documents]


class ResultDocument(BaseModel):
    text: str
    title: str | None = None


class RerankResult(BaseModel):
    index: int
    relevance_score: float = Field(
        ...,
        ge=0,
        le=1,
        description="Relevance in [0, 1], in the order of raw_score: "
        "the sigmoid of a pointwise logit, (cosine + 1) / 2 for a bi-encoder.",
    )
    raw_score: float = Field(
        ...,
        description="The scorer's own score, as evaluate.py computes it for the same "
        "pair (a logit, or logit_scale x cosine for a bi-encoder).",
    )
    document: ResultDocument | None = None


class RerankResponse(BaseModel):
    id: str
    results: list[RerankResult]
    meta: dict = Field(
        default_factory=dict,
        description="api_version, billed_units, the served model's name "
        "and per-query notes (the listwise justification in dual-stage mode).",
    )


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    owned_by: str = "dear"
    scorer: str
    stages: list[str]


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]
