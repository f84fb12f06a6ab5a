"""The rerank server: Cohere-compatible ``POST /v1/rerank`` and ``/v2/rerank``, ``GET /health``,
``GET /v1/models`` (OpenAPI docs at ``/docs``), over any pointwise scorer of ``conf/pointwise``.

Status codes: 401 without the bearer key (when one is configured), 413 when a request exceeds a
limit (the message names it), 422 for a malformed body (FastAPI names the field), 429 at once
when the micro-batcher's queue is full. In-flight requests finish on shutdown: uvicorn stops
accepting, waits for open requests, then the lifespan drains the batcher.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from tokenizers import Tokenizer

from dear.data.contract import Candidate, Query, Ranking
from dear.serve.batcher import MicroBatcher, QueueFull
from dear.serve.schemas import ModelCard, ModelList, RerankDocument, RerankRequest, RerankResponse, RerankResult


@dataclass(frozen=True)
class Limits:
    """Per-request limits (``serve.limits``); exceeding one answers 413 naming it."""

    max_documents: int = 1000
    max_query_chars: int = 4000
    max_document_chars: int = 40000


class LimitExceeded(ValueError):
    pass


def check_limits(body: RerankRequest, docs: list[RerankDocument], limits: Limits) -> None:
    if len(docs) > limits.max_documents:
        raise LimitExceeded(f"documents: {len(docs)} > serve.limits.max_documents = {limits.max_documents}")
    if len(body.query) > limits.max_query_chars:
        raise LimitExceeded(f"query: {len(body.query)} characters > serve.limits.max_query_chars = {limits.max_query_chars}")
    for i, d in enumerate(docs):
        if len(d.text) + len(d.title) > limits.max_document_chars:
            raise LimitExceeded(f"documents[{i}]: {len(d.text) + len(d.title)} characters > "
                                f"serve.limits.max_document_chars = {limits.max_document_chars}")


class TokenCutter:
    """Cohere's ``max_tokens_per_doc``: a text up to the end of its N-th token, cut at a character
    offset so the kept prefix is verbatim text. A private copy of the scorer's Rust tokenizer: the
    scorer thread may be changing its own tokenizer's truncation settings meanwhile."""

    def __init__(self, hf_tokenizer):
        self.backend = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
        self.backend.no_truncation()
        self.backend.no_padding()

    def __call__(self, text: str, max_tokens: int | None) -> str:
        if max_tokens is None or not text:
            return text
        offsets = self.backend.encode(text, add_special_tokens=False).offsets
        return text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]]


def to_ranking(body: RerankRequest, docs: list[RerankDocument], cut: TokenCutter) -> Ranking:
    """The request as the project's data contract: candidate ``docid`` = its index in ``documents``."""
    candidates = [Candidate(str(i), cut(d.text, body.max_tokens_per_doc), d.title) for i, d in enumerate(docs)]
    return Ranking(Query("request", body.query), candidates)


class Reranking:
    """Pointwise scores through the micro-batcher, then optionally a listwise reranker over the
    pointwise top ``listwise_depth`` (its own worker thread: a long generation does not hold up
    pointwise batching)."""

    def __init__(self, batcher: MicroBatcher, listwise=None, listwise_depth: int = 20):
        self.batcher, self.listwise, self.listwise_depth = batcher, listwise, listwise_depth
        self._listwise_lock = asyncio.Lock()

    async def rank(self, ranking: Ranking) -> tuple[list[int], np.ndarray, dict]:
        """(candidate indices best first, pointwise score per candidate in request order, meta)."""
        scores = (await self.batcher.score([ranking]))[0]
        order = [int(i) for i in np.argsort(-scores, kind="stable")]
        if self.listwise is None:
            return order, scores, {}
        head = Ranking(ranking.query, [ranking.candidates[i] for i in order[: self.listwise_depth]])
        async with self._listwise_lock:
            reranked = (await asyncio.to_thread(self.listwise.rerank, [head]))[0]
        top = [int(c.docid) for c in reranked.candidates]
        meta = {"order": f"listwise over the pointwise top {len(top)}; relevance_score is the pointwise score",
                "justification": reranked.meta.get("justification", ""), "parse": reranked.meta.get("parse")}
        return top + order[len(top):], scores, meta


class Unauthorized(Exception):
    pass


def bearer_check(api_key: str | None):
    """A dependency answering 401 unless ``Authorization: Bearer <api_key>`` (constant-time compare)."""
    scheme = HTTPBearer(auto_error=False)

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        if api_key is None:
            return
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), api_key.encode()):
            raise Unauthorized()

    return check


def build_app(scorer, model_name: str, limits: Limits | dict | None = None, batching: dict | None = None,
              api_key: str | None = None, listwise=None, listwise_depth: int = 20) -> FastAPI:
    """A FastAPI app serving ``scorer`` (anything with ``score(rankings)`` and a ``tokenizer``)."""
    limits = limits if isinstance(limits, Limits) else Limits(**(limits or {}))
    batcher = MicroBatcher(scorer.score, **(batching or {}))
    reranking = Reranking(batcher, listwise, listwise_depth)
    cut = TokenCutter(scorer.tokenizer)
    stages = ["pointwise"] + (["listwise"] if listwise is not None else [])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.close()

    app = FastAPI(title="dear rerank server", version="1", lifespan=lifespan,
                  description="Cohere-compatible rerank API over a DeAR pointwise scorer (optionally + listwise).")
    app.state.batcher = batcher
    auth = [Depends(bearer_check(api_key))]

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized):
        return JSONResponse({"message": "missing or wrong bearer key (Authorization: Bearer ...)"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name, "queued": batcher.admitted, "scorer_calls": batcher.calls}

    @app.get("/v1/models", dependencies=auth)
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=model_name, scorer=type(scorer).__name__, stages=stages)])

    async def rerank(body: RerankRequest, api_version: str):
        docs = body.titled()
        try:
            check_limits(body, docs, limits)
            order, scores, notes = await reranking.rank(to_ranking(body, docs, cut))
        except LimitExceeded as error:
            return JSONResponse({"message": str(error)}, status_code=413)
        except QueueFull as error:
            return JSONResponse({"message": f"server busy: {error}"}, status_code=429, headers={"Retry-After": "1"})
        results = [RerankResult(index=i, relevance_score=float(scores[i]),
                                document={"text": docs[i].text, "title": docs[i].title or None} if body.return_documents else None)
                   for i in order[: body.top_n]]
        meta = {"api_version": {"version": api_version}, "billed_units": {"search_units": 1},
                "model": model_name, **notes}
        return RerankResponse(id=str(uuid.uuid4()), results=results, meta=meta)

    @app.post("/v1/rerank", dependencies=auth, response_model=RerankResponse, response_model_exclude_none=True)
    async def rerank_v1(body: RerankRequest):
        return await rerank(body, "1")

    @app.post("/v2/rerank", dependencies=auth, response_model=RerankResponse, response_model_exclude_none=True)
    async def rerank_v2(body: RerankRequest):
        return await rerank(body, "2")

    return app
