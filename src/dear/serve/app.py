"""The rerank server: Cohere-compatible ``POST /v1/rerank`` and ``/v2/rerank``, ``GET /health``, ``GET /v1/models``,
over any pointwise scorer (docs/serving.md).

Errors fail only their request: 401 without the bearer key, 413 over a named limit, 422 for a malformed body or
refused input, 429 when the queue is full, 500 for a fault. Shutdown drains in-flight requests. Responses name the
model by ``model_name``, never a filesystem path.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from tokenizers import Tokenizer

from dear.data.contract import Candidate, Query, Ranking
from dear.errors import ConfigError, DataError, EndpointError
from dear.rerank.pointwise import BiEncoderScorer
from dear.rerank.template import words_prefix
from dear.serve.batcher import MicroBatcher, QueueFull
from dear.serve.schemas import (
    ModelCard,
    ModelList,
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
)

CHARS_PER_TOKEN = 4  # the token count of a scorer without a tokenizer: a character proxy


@dataclass(frozen=True)
class Limits:
    """Per-request limits (``serve.limits``); exceeding one answers 413 naming it."""

    max_documents: int = 1000
    max_query_chars: int = 4000
    max_document_chars: int = 40000
    max_request_tokens: int = 100_000


class LimitExceeded(ValueError):
    pass


def check_limits(body: RerankRequest, docs: list[RerankDocument], limits: Limits) -> None:
    if len(docs) > limits.max_documents:
        raise LimitExceeded(
            f"documents: {len(docs)} > serve.limits.max_documents = {limits.max_documents}"
        )
    if len(body.query) > limits.max_query_chars:
        raise LimitExceeded(
            f"query: {len(body.query)} characters > "
            f"serve.limits.max_query_chars = {limits.max_query_chars}"
        )
    for i, d in enumerate(docs):
        if len(d.text) + len(d.title) > limits.max_document_chars:
            raise LimitExceeded(
                f"documents[{i}]: {len(d.text) + len(d.title)} characters > "
                f"serve.limits.max_document_chars = {limits.max_document_chars}"
            )


def document_cut(scorer) -> int | None:
    """The most tokens of a document ``scorer`` reads (template ``doc_max_len`` or ``max_len``), or None."""
    return getattr(getattr(scorer, "template", None), "doc_max_len", None) or getattr(
        scorer, "max_len", None
    )


class DocumentTokens:
    """Documents in the scorer's tokens (a private copy of its tokenizer; else ``CHARS_PER_TOKEN``): ``read`` cuts to
    ``max_tokens_per_doc`` at a character offset (verbatim prefix) and counts tokens up to ``model_cut``."""

    def __init__(self, hf_tokenizer=None, model_cut: int | None = None):
        self.backend, self.model_cut, self.precut = None, model_cut or sys.maxsize, False
        if hf_tokenizer is not None:
            self.backend = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
            self.backend.no_truncation()
            self.backend.no_padding()
            # as PairEncoder: with a whitespace pre-tokenizer, N tokens need no more than N + 1 words
            self.precut = self.backend.pre_tokenizer is not None

    def read(self, text: str, max_tokens: int | None = None) -> tuple[str, int]:
        """(``text`` cut after its ``max_tokens``-th token, its tokens up to ``model_cut``)."""
        need = max_tokens or self.model_cut
        if self.backend is None:
            ends = range(CHARS_PER_TOKEN, len(text) + CHARS_PER_TOKEN, CHARS_PER_TOKEN)
        else:
            head = words_prefix(text, need + 1) if self.precut and need < sys.maxsize else text
            ends = [end for _, end in self.backend.encode(head, add_special_tokens=False).offsets]
        if max_tokens is not None and len(ends) > max_tokens:
            text, ends = text[: ends[max_tokens - 1]], ends[:max_tokens]
        return text, min(len(ends), self.model_cut)


def to_ranking(
    body: RerankRequest, docs: list[RerankDocument], tokens: DocumentTokens, limits: Limits
) -> Ranking:
    """The request as a ``Ranking`` (``docid`` = index), within ``max_request_tokens`` as the model reads it."""
    texts, total = [], 0
    for d in docs:
        text, n = tokens.read(d.text, body.max_tokens_per_doc)
        texts.append(text)
        total += min(n + tokens.read(d.title)[1], tokens.model_cut)
    if total > limits.max_request_tokens:
        raise LimitExceeded(
            f"documents: {total} tokens as the model reads them > serve.limits.max_request_tokens = "
            f"{limits.max_request_tokens} (send fewer documents, or cut them with max_tokens_per_doc)"
        )
    candidates = [Candidate(str(i), text, d.title) for i, (d, text) in enumerate(zip(docs, texts))]
    return Ranking(Query("request", body.query), candidates)


def relevance(scorer, scores: np.ndarray) -> np.ndarray:
    """Raw scores → ``relevance_score`` in [0, 1], monotone: (cosine + 1) / 2 for bi-encoders, else sigmoid."""
    s = np.asarray(scores, dtype=np.float64)
    if isinstance(scorer, BiEncoderScorer):
        return np.clip((s / (scorer.logit_scale or 1.0) + 1) / 2, 0.0, 1.0)
    return np.exp(-np.logaddexp(0.0, -s))  # sigmoid, without overflow for large |s|


def served_name(scorer) -> str:
    """The model's name in responses, never a path: a local model by its run's name, else its model id."""
    name = str(getattr(scorer, "name", type(scorer).__name__))
    path = Path(name).expanduser()
    if not (path.is_absolute() or path.exists()):
        return name
    path = path.resolve()
    return path.parent.name if path.name in ("export", "merged") else path.name


class Reranking:
    """Pointwise scores via the micro-batcher, then optionally listwise over the top ``listwise_depth`` (own thread)."""

    def __init__(self, batcher: MicroBatcher, listwise=None, listwise_depth: int = 20):
        self.batcher, self.listwise, self.listwise_depth = batcher, listwise, listwise_depth
        self._listwise_lock = asyncio.Lock()

    async def rank(self, ranking: Ranking) -> tuple[list[int], np.ndarray, dict]:
        """(candidate indices best first, pointwise score per candidate in request order, meta)."""
        scores = await self.batcher.score(ranking)
        order = [int(i) for i in np.argsort(-scores, kind="stable")]
        if self.listwise is None:
            return order, scores, {}
        head = Ranking(ranking.query, [ranking.candidates[i] for i in order[: self.listwise_depth]])
        async with self._listwise_lock:
            reranked = (await asyncio.to_thread(self.listwise.rerank, [head]))[0]
        top = [int(c.docid) for c in reranked.candidates]
        meta = {
            "order": f"listwise over the pointwise top {len(top)}; relevance_score is the pointwise one",
            "justification": reranked.meta.get("justification", ""),
            "parse": reranked.meta.get("parse"),
        }
        return top + order[len(top) :], scores, meta


class Unauthorized(Exception):
    pass


def bearer_check(api_key: str | None):
    """A dependency answering 401 unless ``Authorization: Bearer <api_key>`` (constant-time compare)."""
    scheme = HTTPBearer(auto_error=False)
    bearer = Depends(scheme)

    async def check(credentials: HTTPAuthorizationCredentials | None = bearer) -> None:
        if api_key is None:
            return
        if credentials is None or not secrets.compare_digest(
            credentials.credentials.encode(), api_key.encode()
        ):
            raise Unauthorized()

    return check


def known_keys(settings: dict, target, field: str) -> dict:
    """``settings`` if ``target`` (a class) takes every key, else a ConfigError naming the unknown ones."""
    import inspect

    known = set(inspect.signature(target).parameters) - {"self", "score_fn"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"{field}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return settings


def build_app(
    scorer,
    model_name: str | None = None,
    limits: Limits | dict | None = None,
    batching: dict | None = None,
    api_key: str | None = None,
    listwise=None,
    listwise_depth: int = 20,
) -> FastAPI:
    """A FastAPI app serving ``scorer`` (anything with ``score(rankings)``); ``model_name`` None: ``served_name``."""
    model_name = model_name or served_name(scorer)
    limits = (
        limits
        if isinstance(limits, Limits)
        else Limits(**known_keys(limits or {}, Limits, "serve.limits"))
    )
    batching = known_keys(dict(batching or {}), MicroBatcher, "serve.batching")
    if getattr(
        scorer, "whole_rankings", False
    ):  # its scores depend on all of a request's documents
        batching["chunk_pairs"] = None
    batcher = MicroBatcher(scorer.score, **batching)
    reranking = Reranking(batcher, listwise, listwise_depth)
    tokens = DocumentTokens(getattr(scorer, "tokenizer", None), document_cut(scorer))
    stages = ["pointwise"] + (["listwise"] if listwise is not None else [])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.close()

    app = FastAPI(
        title="dear rerank server",
        version="1",
        lifespan=lifespan,
        description="Cohere-compatible rerank API over a DeAR pointwise scorer (optionally + listwise).",
    )
    app.state.batcher, app.state.model_name = batcher, model_name
    auth = [Depends(bearer_check(api_key))]

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized):
        return JSONResponse(
            {"message": "missing or wrong bearer key (Authorization: Bearer ...)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError):
        # FastAPI's own 422 less each error's ``input``: a check over ``documents`` would echo them all
        errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": model_name,
            "queued": batcher.admitted,
            "scorer_calls": batcher.calls,
        }

    @app.get("/v1/models", dependencies=auth)
    async def models() -> ModelList:
        return ModelList(
            data=[ModelCard(id=model_name, scorer=type(scorer).__name__, stages=stages)]
        )

    async def rerank(body: RerankRequest, api_version: str):
        docs = body.titled()
        try:
            check_limits(body, docs, limits)
            # tokenising: off the event loop
            ranking = await asyncio.to_thread(to_ranking, body, docs, tokens, limits)
            order, scores, notes = await reranking.rank(ranking)
        except LimitExceeded as error:
            return JSONResponse({"message": str(error)}, status_code=413)
        except QueueFull as error:
            return JSONResponse(
                {"message": f"server busy: {error}"}, status_code=429, headers={"Retry-After": "1"}
            )
        except EndpointError:
            raise  # a model endpoint of ours is down: a server fault (500), not the request's
        except DataError as error:  # the scorer refused this request's input
            return JSONResponse({"message": str(error)}, status_code=422)
        unit = relevance(scorer, scores)
        results = [
            RerankResult(
                index=i,
                relevance_score=float(unit[i]),
                raw_score=float(scores[i]),
                document=(
                    {"text": docs[i].text, "title": docs[i].title or None}
                    if body.return_documents
                    else None
                ),
            )
            for i in order[: body.top_n]
        ]
        meta = {
            "api_version": {"version": api_version},
            "billed_units": {"search_units": 1},
            "model": model_name,
            **notes,
        }
        return RerankResponse(id=str(uuid.uuid4()), results=results, meta=meta)

    def versioned(version: str):
        async def endpoint(body: RerankRequest):
            return await rerank(body, version)

        return endpoint

    for version in ("1", "2"):  # Cohere's v1 and v2 request shapes
        app.post(
            f"/v{version}/rerank",
            name=f"rerank_v{version}",
            dependencies=auth,
            response_model=RerankResponse,
            response_model_exclude_none=True,
        )(versioned(version))

    return app
