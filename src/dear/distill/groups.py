"""Stage-1 training groups: deterministic draws, a resumable sampler and loader, and the collator. A group is q's
positive + (m − 1) negatives from q's pool, a pure function of (seed, epoch, query index); the teacher's logits are
looked up for exactly the drawn documents."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dear.distill.sources import TrainQuery
from dear.errors import DataError
from dear.utils.memo import LRUMemo
from dear.utils.ranks import rank_world


class GroupSampler(Sampler[int]):
    """Shuffled query order per epoch, sharded by rank, yielding ``epoch * n + i`` (no shared state under workers or
    DDP); ``resume`` starts that epoch's next pass ``start`` indices in."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self._resume_at: tuple[int, int] | None = None  # (epoch, indices already consumed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, start: int) -> None:
        self.epoch, self._resume_at = epoch, (epoch, start)

    def __iter__(self):
        order = (
            np.random.default_rng((self.seed, self.epoch)).permutation(self.n)
            if self.shuffle
            else np.arange(self.n)
        )
        rank, world = rank_world(launcher_env=False)
        per_rank = -(-self.n // world)
        # pad by wrapping, equal length per rank
        order = np.resize(order, per_rank * world)[rank::world]
        resume, self._resume_at = self._resume_at, None
        # another epoch: a fresh pass
        start = resume[1] if resume and resume[0] == self.epoch else 0
        return iter((self.epoch * self.n + order[start:]).tolist())

    def __len__(self) -> int:
        return -(-self.n // rank_world(launcher_env=False)[1])


class ResumableLoader(DataLoader):
    """A DataLoader over a ``GroupSampler`` that Lightning checkpoints mid-epoch: state (epoch, batches handed out),
    and groups being pure, a resumed pass yields exactly the uninterrupted batches. ``len`` stays the whole epoch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, GroupSampler) or not self.drop_last:
            raise ValueError(
                "ResumableLoader needs a GroupSampler and drop_last=True (whole batches only)"
            )
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
    """Padded student inputs for (qid, docid) pairs, with labels and teacher logits, via ``encoder`` (``PairEncoder``
    or ``BiEncoderInputs``); texts tokenised on first use and memoised (``memo_size`` docs)."""

    def __init__(
        self, encoder, queries: dict[str, str], docs, teacher: dict | None, memo_size: int = 500_000
    ):
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
            batch["teacher"] = torch.tensor(
                [self.teacher[p] for p in pairs], dtype=torch.float32
            ).view(len(groups), m)
            if not torch.isfinite(batch["teacher"]).all():
                bad = [
                    p
                    for p, t in zip(pairs, batch["teacher"].flatten().tolist())
                    if not np.isfinite(t)
                ]
                raise DataError(
                    f"teacher logits are not finite for {len(bad)} pairs of this batch, e.g. {bad[:3]}: "
                    "delete the teacher cache and check the teacher"
                )
        batch["pairs"] = pairs  # (qid, docid) per row: named when a loss is not finite
        return batch


class DocOverlay:
    """Texts of ``first`` (e.g. validation candidates' from their benchmark) in front of a doc store."""

    def __init__(self, first: dict[str, tuple[str, str]], store):
        self.first, self.store = first, store

    def get_many(self, docids) -> dict[str, tuple[str, str]]:
        docids = list(docids)
        rest = [d for d in docids if d not in self.first]
        return {d: self.first[d] for d in docids if d in self.first} | (
            self.store.get_many(rest) if rest else {}
        )
