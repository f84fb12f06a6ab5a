"""The pointwise scoring engine (evaluation, teacher-logit precompute) and its stage. Each unique query and document
is tokenised once; pairs are scored in length-sorted, dynamically padded batches under ``torch.inference_mode`` with
``dear.models.loading.compute_autocast``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dear.data.contract import Ranking
from dear.errors import DataError, json_object
from dear.models.batching import length_batches, pad
from dear.models.loading import compute_autocast, load_pretrained, load_sequence_classifier
from dear.rerank.bi_encoder import BiEncoderInputs, mean_embedding
from dear.rerank.pooling import Pooling, auto_mode, pooled_pad_id
from dear.rerank.template import PairEncoder, PairTemplate
from dear.utils.io import read_json
from dear.utils.memo import LRUMemo
from dear.utils.progress import progress_bar

EXPORT_META = "dear_scorer.json"  # written next to a Stage-1 export: template + pooling


def _unique(items):
    """(unique items in first-seen order, index of each item into them)."""
    index: dict = {}
    positions = [index.setdefault(x, len(index)) for x in items]
    return list(index), positions


class CrossEncoderScorer:
    """Any one-logit ``AutoModelForSequenceClassification`` with the DeAR pair template; ``pooling``: a
    ``dear.rerank.pooling`` mode (``auto``: ``reference`` for decoders); ``shared``: a ``SharedBase``."""

    # Settings that change how fast it scores, not what (left out of a teacher cache's fingerprint).
    runtime_only = frozenset({"max_batch_pairs", "max_batch_tokens", "device"})

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        revision: str | None = None,
        template: PairTemplate | dict | None = None,
        pooling: str = "auto",
        max_batch_pairs: int = 64,
        max_batch_tokens: int = 16384,
        dtype: str = "auto",
        device: str = "auto",
        shared=None,
    ):
        self.name, self.dtype = model, dtype
        load = load_sequence_classifier if shared is None else shared.sequence_classifier
        self.tokenizer, self.model = load(
            model, adapter=adapter, revision=revision, dtype=dtype, device=device
        )
        self.template = PairTemplate.of(template)
        self.encoder = PairEncoder(self.tokenizer, self.template)
        self.pooling = auto_mode(self.model) if pooling == "auto" else pooling
        self.pool = Pooling(
            self.pooling,
            self.tokenizer.pad_token_id,
            pooled_pad_id(self.model.config),
            self.template.max_length,
        )
        self.max_batch_pairs, self.max_batch_tokens = max_batch_pairs, max_batch_tokens
        self.device = next(self.model.parameters()).device

    @classmethod
    def from_export(cls, path: str, **kwargs) -> CrossEncoderScorer:
        """A Stage-1 export (``export/`` or its run dir) with the template and pooling it was trained with."""
        path = export_dir(path)
        meta = export_meta(path, template=dict, pooling=str)
        return cls(str(path), template=meta["template"], pooling=meta["pooling"], **kwargs)

    def encode(self, rankings: list[Ranking]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids and type ids for every (query, candidate) pair, in ranking order."""
        queries, q_of = _unique([r.query.text for r in rankings])
        docs, d_of = _unique([(c.title, c.text) for r in rankings for c in r.candidates])
        q_enc, d_enc = self.encoder.queries(queries), self.encoder.docs(docs)
        pair_q = [q_of[i] for i, r in enumerate(rankings) for _ in r.candidates]
        joined = [self.encoder.pair(q_enc[q], d_enc[d]) for q, d in zip(pair_q, d_of)]
        return [j[0] for j in joined], [j[1] for j in joined]

    @torch.inference_mode()
    def score(self, rankings: list[Ranking], desc: str = "scoring pairs") -> list[np.ndarray]:
        ids, types = self.encode(rankings)
        flat = np.zeros(len(ids), dtype=np.float32)
        batches = length_batches([len(x) for x in ids], self.max_batch_pairs, self.max_batch_tokens)
        with progress_bar(desc, len(ids)) as advance, compute_autocast(self.device, self.dtype):
            for batch in batches:
                input_ids, mask = pad([ids[i] for i in batch], self.tokenizer.pad_token_id)
                type_ids = pad([types[i] for i in batch], 0)[0]
                out = self.pool(
                    self.model,
                    input_ids.to(self.device),
                    mask.to(self.device),
                    type_ids.to(self.device),
                )
                flat[batch] = out.cpu().numpy()
                advance(len(batch))
        return _split(flat, rankings)


class BiEncoderScorer:
    """Cosine of mean-pooled embeddings (LRU-memoised by text); scores ``logit_scale`` × cosine (sets how peaked a
    teacher's distribution is; sentence-transformers trains MiniLM with 20)."""

    runtime_only = frozenset({"max_batch_items", "max_batch_tokens", "device", "memo_size"})

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        max_len: int = 256,
        query_prefix: str = "",
        doc_prefix: str = "",
        max_batch_items: int = 128,
        max_batch_tokens: int = 32768,
        dtype: str = "auto",
        device: str = "auto",
        memo_size: int = 200_000,
        logit_scale: float = 1.0,
    ):
        from transformers import AutoModel

        self.name, self.dtype = model, dtype
        self.tokenizer, self.model = load_pretrained(
            AutoModel, model, revision=revision, dtype=dtype, device=device
        )
        self.device, self.max_len = next(self.model.parameters()).device, max_len
        self.query_prefix, self.doc_prefix = query_prefix, doc_prefix
        self.max_batch_items, self.max_batch_tokens = max_batch_items, max_batch_tokens
        self.inputs = BiEncoderInputs(self.tokenizer, max_len, query_prefix, doc_prefix)
        self.memo, self.logit_scale = LRUMemo(memo_size), logit_scale

    def embed(self, texts: list[str], desc: str) -> torch.Tensor:
        """L2-normalised embeddings, (N, H) float32 on CPU; only texts not memoised are encoded."""
        if not texts:
            return torch.zeros(0, self.model.config.hidden_size)
        return torch.stack(self.memo.get_many(texts, lambda new: list(self._encode(new, desc))))

    @torch.inference_mode()
    def _encode(self, texts: list[str], desc: str) -> torch.Tensor:
        enc = self.inputs.encode(texts)
        out = torch.zeros(len(texts), self.model.config.hidden_size)
        with progress_bar(desc, len(texts)) as advance, compute_autocast(self.device, self.dtype):
            for batch in length_batches(
                [len(x) for x in enc], self.max_batch_items, self.max_batch_tokens
            ):
                ids, mask = pad([enc[i] for i in batch], self.tokenizer.pad_token_id)
                out[batch] = mean_embedding(
                    self.model, ids.to(self.device), mask.to(self.device)
                ).cpu()
                advance(len(batch))
        return out

    def score(self, rankings: list[Ranking], desc: str = "embedding") -> list[np.ndarray]:
        queries, q_of = _unique([self.query_prefix + r.query.text for r in rankings])
        docs, d_of = _unique(
            [self.doc_prefix + c.full_text for r in rankings for c in r.candidates]
        )
        q_emb = self.embed(queries, f"{desc} queries")
        d_emb = self.embed(docs, f"{desc} documents")
        pair_q = torch.tensor(
            [q_of[i] for i, r in enumerate(rankings) for _ in r.candidates], dtype=torch.long
        )
        flat = (
            self.logit_scale
            * (q_emb[pair_q] * d_emb[torch.tensor(d_of, dtype=torch.long)]).sum(-1).numpy()
        )
        return _split(flat, rankings)


def scorer_from_export(path: str, **kwargs):
    """The scorer for a Stage-1 export (``export/`` or its run dir), as trained: cross-encoder or bi-encoder."""
    directory = export_dir(path)
    meta = export_meta(directory)
    if meta.get("kind", "cross_encoder") == "bi_encoder":
        meta = export_meta(directory, inputs=dict, logit_scale=(int, float))
        names = ("max_batch_items", "max_batch_tokens", "dtype", "device", "memo_size")
        return BiEncoderScorer(
            str(directory),
            **meta["inputs"],
            logit_scale=meta["logit_scale"],
            **{k: v for k, v in kwargs.items() if k in names},
        )
    return CrossEncoderScorer.from_export(str(directory), **kwargs)


# An export scored by either class: what neither lets change its scores.
scorer_from_export.runtime_only = CrossEncoderScorer.runtime_only | BiEncoderScorer.runtime_only


def export_dir(path: str) -> Path:
    """``path`` or its ``export/`` — whichever holds the export's ``dear_scorer.json``."""
    path = Path(path)
    if not (path / EXPORT_META).is_file() and (path / "export" / EXPORT_META).is_file():
        path = path / "export"
    if not (path / EXPORT_META).is_file():
        raise DataError(
            f"{path}: not a Stage-1 run or export (no {EXPORT_META} in it or in its export/)"
        )
    return path


def export_meta(directory: Path, **fields) -> dict:
    """``<directory>/dear_scorer.json`` with typed ``fields``, else a DataError naming file and field."""
    path = directory / EXPORT_META
    meta = json_object(read_json(path), str(path))
    for name, kind in fields.items():
        if not isinstance(meta.get(name), kind) or isinstance(meta.get(name), bool):
            raise DataError(
                f"{path}: field {name!r}: expected {getattr(kind, '__name__', kind)}, "
                f"found {meta.get(name)!r:.80}"
            )
    return meta


def _split(flat: np.ndarray, rankings: list[Ranking]) -> list[np.ndarray]:
    bounds = np.cumsum([0] + [len(r.candidates) for r in rankings])
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def sort_by_scores(ranking: Ranking, scores: np.ndarray) -> Ranking:
    """Candidates by descending score (stable: ties keep the previous order), scores attached."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    return Ranking(
        ranking.query,
        [ranking.candidates[i].with_score(scores[i]) for i in order],
        dict(ranking.meta),
    )


def sort_flat(rankings: list[Ranking], flat: np.ndarray) -> list[Ranking]:
    """Sort every ranking by its slice of ``flat`` (pair scores in ranking order)."""
    return [sort_by_scores(r, s) for r, s in zip(rankings, _split(flat, rankings))]


class PointwiseReranker:
    """Scores every candidate and sorts by score (stable: ties keep the previous order)."""

    def __init__(self, scorer):
        self.scorer = scorer

    def rerank(self, rankings: list[Ranking]) -> list[Ranking]:
        return [sort_by_scores(r, s) for r, s in zip(rankings, self.scorer.score(rankings))]
