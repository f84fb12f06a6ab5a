"""Stage-1 training data: deterministic groups, the teacher cache, and a LightningDataModule.

A group for query q is its positive + (m − 1) negatives drawn from q's pool. The draw is a pure
function of (seed, epoch, query index), and the teacher's logits for the group are looked up
for exactly the drawn documents — student and teacher always see the same group.
"""

from __future__ import annotations

import time

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dear.data.contract import Ranking
from dear.distill.sources import TrainQuery
from dear.distill.student import student_inputs
from dear.distill.teacher_cache import TeacherCache, fingerprint, pair_list
from dear.errors import DataError
from dear.eval.judges import build_judge
from dear.models.loading import load_tokenizer
from dear.rerank.pointwise import sort_flat
from dear.rerank.template import PairEncoder, PairTemplate
from dear.utils.memo import LRUMemo
from dear.utils.plain import to_plain
from dear.utils.progress import log


_NOT_FINGERPRINTED = {"device", "memo_size", "max_batch_pairs", "max_batch_tokens", "max_batch_items"}


class GroupSampler(Sampler[int]):
    """Shuffled query order per epoch, sharded by rank; yields ``epoch * n + i`` so the dataset
    knows the epoch without shared state (works with worker processes and DDP).
    Lightning calls ``set_epoch`` at every epoch start; ``resume`` makes the next pass of that
    epoch start ``start`` indices in (a checkpoint taken mid-epoch)."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self._resume_at: tuple[int, int] | None = None  # (epoch, indices already consumed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, start: int) -> None:
        self.epoch, self._resume_at = epoch, (epoch, start)

    def __iter__(self):
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n) if self.shuffle else np.arange(self.n)
        rank, world = _rank_world()
        per_rank = -(-self.n // world)
        order = np.resize(order, per_rank * world)[rank::world]  # pad by wrapping, equal length per rank
        resume, self._resume_at = self._resume_at, None
        start = resume[1] if resume and resume[0] == self.epoch else 0  # another epoch: a fresh pass
        return iter((self.epoch * self.n + order[start:]).tolist())

    def __len__(self) -> int:
        return -(-self.n // _rank_world()[1])


class ResumableLoader(DataLoader):
    """A DataLoader over a ``GroupSampler`` that Lightning checkpoints mid-epoch.

    Lightning's stateful-loader protocol (``FitLoop.on_save_checkpoint`` stores ``state_dict()``
    of every loader that has one; on resume ``load_state_dict`` is called before ``iter``): the
    state is (epoch, batches handed out this epoch), and since groups are a pure function of
    (seed, epoch, query) the resumed pass yields exactly the batches the uninterrupted one would
    have. ``len`` stays the whole epoch: Lightning adds the batches already done itself."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, GroupSampler) or not self.drop_last:
            raise ValueError("ResumableLoader needs a GroupSampler and drop_last=True (whole batches only)")
        self.batches_done = 0
        self._resumed_epoch: int | None = None

    def __iter__(self):
        if self._resumed_epoch != self.sampler.epoch:  # a fresh pass, not the rest of a resumed one
            self.batches_done = 0
        self._resumed_epoch = None
        for batch in super().__iter__():
            self.batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batches_done, self._resumed_epoch = state["batches_done"], state["epoch"]
        self.sampler.resume(state["epoch"], state["batches_done"] * self.batch_size)


class GroupDataset(Dataset):
    def __init__(self, queries: list[TrainQuery], group_size: int, seed: int = 0):
        self.queries, self.m, self.seed = queries, group_size, seed

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, index: int) -> tuple[str, list[str]]:
        """(qid, [positive, negative × (m − 1)]) for ``index = epoch * n + i``."""
        epoch, i = divmod(index, len(self.queries))
        q = self.queries[i]
        rng = np.random.default_rng((self.seed, epoch, i))
        positive = q.positives[rng.integers(len(q.positives))]
        k = self.m - 1
        negatives = rng.choice(len(q.negatives), size=k, replace=len(q.negatives) < k)
        return q.qid, [positive] + [q.negatives[j] for j in negatives]


class PairCollator:
    """Builds padded student inputs for (qid, docid) pairs; adds labels and teacher logits.
    ``encoder``: the student's inputs (``PairEncoder`` for a cross-encoder, ``BiEncoderInputs``
    for a bi-encoder): ``queries(texts)``, ``docs([(title, text)])`` and ``collate(encoded)``.

    Queries and documents are tokenised on first use and memoised (up to ``memo_size`` docs), so
    a corpus never has to be tokenised — or held — in full, yet no text is tokenised twice.
    """

    def __init__(self, encoder, queries: dict[str, str], docs, teacher: dict | None, memo_size: int = 500_000):
        self.encoder, self.queries, self.docs, self.teacher = encoder, queries, docs, teacher
        self.q_enc: dict = {}
        self.d_enc = LRUMemo(memo_size)

    def _encodings(self, pairs: list[tuple[str, str]]):
        new_q = [q for q in dict.fromkeys(q for q, _ in pairs) if q not in self.q_enc]
        self.q_enc.update(zip(new_q, self.encoder.queries([self.queries[q] for q in new_q])))
        d_enc = self.d_enc.get_many([d for _, d in pairs], self._encode_docs)
        return [(self.q_enc[q], d) for (q, _), d in zip(pairs, d_enc)]

    def _encode_docs(self, docids: list[str]) -> list:
        texts = self.docs.get_many(docids)
        return self.encoder.docs([texts[d] for d in docids])

    def inputs(self, pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
        return self.encoder.collate(self._encodings(pairs))

    def __call__(self, groups: list[tuple[str, list[str]]]) -> dict[str, torch.Tensor]:
        pairs = [(qid, d) for qid, docs in groups for d in docs]
        batch = self.inputs(pairs)  # (B·m, L)
        m = len(groups[0][1])
        batch["labels"] = torch.zeros(len(groups), m)
        batch["labels"][:, 0] = 1.0  # the positive is drawn first
        if self.teacher is not None:
            batch["teacher"] = torch.tensor([self.teacher[p] for p in pairs], dtype=torch.float32).view(len(groups), m)
            if not torch.isfinite(batch["teacher"]).all():
                bad = [p for p, t in zip(pairs, batch["teacher"].flatten().tolist()) if not np.isfinite(t)]
                raise DataError(f"teacher logits are not finite for {len(bad)} pairs of this batch, e.g. {bad[:3]}: "
                                "delete the teacher cache and check the teacher")
        batch["pairs"] = pairs  # (qid, docid) per row: named when a loss is not finite
        return batch


class DistillDataModule(L.LightningDataModule):
    """``train``: a training source (dear.distill.sources); ``val``: a harness benchmark whose
    judged queries are never trained on; ``teacher``: a pointwise scorer config (built only when
    its cache must be computed); ``student``: the student config (tokenizer + template).
    ``kd_weight`` is the loss's α: with α = 0 no teacher logits are needed or computed.
    ``train``/``val`` may be configs (``_target_`` nodes): they are instantiated here."""

    def __init__(self, train, student: dict, teacher: dict, val=None, kd_weight: float = 0.1, group_size: int = 8,
                 batch_size: int = 4, eval_batch_size: int = 64, seed: int = 0, num_workers: int = 0,
                 cache_dir: str = ".cache/teacher", shard_size: int = 4096):
        super().__init__()
        from hydra.utils import instantiate

        self.source = instantiate(train) if _is_config(train) else train
        self.val_benchmark = instantiate(val) if _is_config(val) else val
        self.student_cfg, self.teacher_cfg = to_plain(student), to_plain(teacher)
        self.group_size, self.batch_size, self.eval_batch_size = group_size, batch_size, eval_batch_size
        self.seed, self.num_workers, self.cache_root, self.shard_size = seed, num_workers, cache_dir, shard_size
        self.needs_teacher = kd_weight > 0
        self.queries = self.docs = self.val_run = self.val_judge = None
        self.timings: dict[str, float] = {}  # seconds of the steps this module ran (read by train.py)

    # --- data -------------------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        """What the teacher's logits depend on; device, batching and memo sizes do not count."""
        teacher = {k: v for k, v in self.teacher_cfg.items() if k not in _NOT_FINGERPRINTED}
        return fingerprint(teacher, self.source.describe())

    def cache_record(self) -> dict | None:
        """Where this run's teacher logits are and what they were computed for (for the run dir)."""
        return {"dir": str(self.cache.dir), "fingerprint": self.fingerprint()} if self.needs_teacher else None

    @property
    def cache(self) -> TeacherCache:
        return TeacherCache.for_fingerprint(self.cache_root, self.fingerprint())

    def load_sources(self) -> None:
        """Training queries (validation queries held out) and, for the teacher cache, every query
        of the source: the cache depends on the source alone, whatever the validation split."""
        if self.queries is not None:
            return
        self.all_queries, self.docs = self.source.load()
        held_out = set()
        if self.val_benchmark is not None:
            loaded = self.val_benchmark.load()
            self.val_run, self.val_judge = list(loaded.run.values()), build_judge(loaded.judgments)
            held_out = set(loaded.judgments.qids)
        self.queries = [q for q in self.all_queries if q.qid not in held_out]
        if len(self.queries) < len(self.all_queries):
            log(f"{len(self.all_queries) - len(self.queries)} validation queries held out of the training queries")
        log(f"training: {len(self.queries)} queries, {len(pair_list(self.queries))} (query, doc) pairs in their pools")

    def prepare_data(self) -> None:
        """Compute the teacher cache if it is missing or unverified (rank 0 only, as Lightning calls
        it); the teacher is built only if a shard needs scoring."""
        if not self.needs_teacher or self.cache.recorded:
            return
        from hydra.utils import instantiate

        start = time.perf_counter()
        self.load_sources()
        log(f"teacher cache missing: scoring with {self.teacher_cfg.get('model')} into {self.cache.dir}")
        self.cache.precompute(lambda: instantiate(self.teacher_cfg), self.fingerprint(), self.all_queries, self.docs,
                              self.shard_size)
        self.timings["teacher_precompute"] = time.perf_counter() - start

    def setup(self, stage: str | None = None) -> None:
        self.load_sources()
        teacher = self.cache.load(self.fingerprint(), pair_list(self.queries)) if self.needs_teacher else None
        tokenizer = load_tokenizer(self.student_cfg["model"], self.student_cfg.get("revision"))
        if self.student_cfg.get("kind", "cross_encoder") == "bi_encoder":
            encoder = student_inputs(self.student_cfg, tokenizer)
        else:
            encoder = PairEncoder(tokenizer, PairTemplate(**(self.student_cfg.get("template") or {})))
        val_rankings = self.val_run or []
        queries = {q.qid: q.text for q in self.queries} | {r.qid: r.query.text for r in val_rankings}
        val_docs = {c.docid: (c.title, c.text) for r in val_rankings for c in r.candidates}
        self.collate = PairCollator(encoder, queries, _Overlay(val_docs, self.docs), teacher)
        self.train_set = GroupDataset(self.queries, self.group_size, self.seed)
        self.val_pairs = [(r.qid, c.docid) for r in val_rankings for c in r.candidates]

    # --- loaders ----------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        return ResumableLoader(self.train_set, batch_size=self.batch_size,
                               sampler=GroupSampler(len(self.train_set), self.seed), collate_fn=self.collate,
                               num_workers=self.num_workers, drop_last=True, persistent_workers=self.num_workers > 0)

    def val_dataloader(self):
        if not self.val_pairs:
            return []
        chunks = range(0, len(self.val_pairs), self.eval_batch_size)
        return DataLoader(list(chunks), batch_size=None, collate_fn=self._val_batch, num_workers=0)

    def _val_batch(self, start: int) -> dict[str, torch.Tensor]:
        pairs = self.val_pairs[start : start + self.eval_batch_size]
        return {**self.collate.inputs(pairs), "start": torch.tensor(start)}

    def val_rankings(self, scores: np.ndarray) -> dict[str, Ranking]:
        """The validation run from flat pair scores (in ``val_pairs`` order)."""
        return {r.qid: r for r in sort_flat(self.val_run, scores)}


class _Overlay:
    """Validation candidates' texts (from the benchmark) in front of the training doc store."""

    def __init__(self, first: dict[str, tuple[str, str]], store):
        self.first, self.store = first, store

    def get_many(self, docids) -> dict[str, tuple[str, str]]:
        docids = list(docids)
        rest = [d for d in docids if d not in self.first]
        return {d: self.first[d] for d in docids if d in self.first} | (self.store.get_many(rest) if rest else {})


def _is_config(obj) -> bool:
    from omegaconf import DictConfig

    return isinstance(obj, (DictConfig, dict)) and "_target_" in obj



def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
