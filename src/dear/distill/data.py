"""Stage-1 training data as a LightningDataModule: groups, sampler and collator (``dear.distill.groups``), the
teacher's cached logits (``dear.distill.teacher``) and validation (``dear.distill.validation``), all built by the
composition root (``train.py``, the precompute)."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from dear.distill.groups import (
    DocOverlay,
    GroupDataset,
    GroupSampler,
    PairCollator,
    ResumableLoader,
)
from dear.distill.student import student_kind
from dear.distill.teacher import Teacher, TeacherLogits
from dear.distill.teacher_cache import pair_list
from dear.distill.validation import ValidationSet
from dear.models.loading import load_tokenizer
from dear.utils.plain import to_plain
from dear.utils.progress import log


class DistillDataModule(L.LightningDataModule):
    """``train``: a training source; ``val``: a benchmark whose judged queries are never trained on; ``teacher``:
    whose logits the loss distils (None when α = 0); ``student``: the student config (tokenizer + template)."""

    def __init__(
        self,
        train,
        student: dict,
        teacher: Teacher | None = None,
        val=None,
        group_size: int = 8,
        batch_size: int = 4,
        eval_batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
        cache_dir: str = ".cache/teacher",
        shard_size: int = 4096,
    ):
        super().__init__()
        self.source = train
        self.validation = ValidationSet(val) if val is not None else None
        self.teacher = (
            TeacherLogits(teacher, train, cache_dir, shard_size) if teacher is not None else None
        )
        self.student_cfg = to_plain(student)
        self.group_size, self.batch_size, self.eval_batch_size = (
            group_size,
            batch_size,
            eval_batch_size,
        )
        self.seed, self.num_workers = seed, num_workers
        self.queries = self.all_queries = self.docs = None
        self.timings: dict[
            str, float
        ] = {}  # seconds of the steps this module ran (read by train.py)

    def records(self) -> dict[str, dict]:
        """{file name: content} for the run directory: where the teacher's logits are."""
        return {"teacher_cache.json": self.teacher.record()} if self.teacher is not None else {}

    # --- data -------------------------------------------------------------------------------------
    def load_sources(self) -> None:
        """Training queries (validation held out), and all of the source's for the teacher cache."""
        if self.queries is not None:
            return
        self.all_queries, self.docs = self.source.load()
        held_out = self.validation.held_out if self.validation is not None else set()
        self.queries = [q for q in self.all_queries if q.qid not in held_out]
        if len(self.queries) < len(self.all_queries):
            log(
                f"{len(self.all_queries) - len(self.queries)} validation queries held out of the training queries"
            )
        log(
            f"training: {len(self.queries)} queries, {len(pair_list(self.queries))} (query, doc) pairs in their pools"
        )

    def prepare_data(self) -> None:
        """Compute a missing or unverified teacher cache (rank 0); the teacher is built only if needed."""
        if self.teacher is None or self.teacher.ready:
            return
        self.load_sources()
        self.timings["teacher_precompute"] = self.teacher.precompute(self.all_queries, self.docs)

    def setup(self, stage: str | None = None) -> None:
        self.load_sources()
        logits = self.teacher.load(pair_list(self.queries)) if self.teacher is not None else None
        tokenizer = load_tokenizer(self.student_cfg["model"], self.student_cfg.get("revision"))
        encoder = student_kind(self.student_cfg).encoder(self.student_cfg, tokenizer)
        queries, docs = {q.qid: q.text for q in self.queries}, self.docs
        if self.validation is not None:
            queries |= self.validation.queries
            docs = DocOverlay(self.validation.docs, self.docs)
        self.collate = PairCollator(encoder, queries, docs, logits)
        self.train_set = GroupDataset(self.queries, self.group_size, self.seed)
        self.val_pairs = self.validation.pairs if self.validation is not None else []

    # --- loaders ----------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        return ResumableLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=GroupSampler(len(self.train_set), self.seed),
            collate_fn=self.collate,
            num_workers=self.num_workers,
            drop_last=True,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self):
        if not self.val_pairs:
            return []
        chunks = range(0, len(self.val_pairs), self.eval_batch_size)
        return DataLoader(list(chunks), batch_size=None, collate_fn=self._val_batch, num_workers=0)

    def _val_batch(self, start: int) -> dict[str, torch.Tensor]:
        pairs = self.val_pairs[start : start + self.eval_batch_size]
        return {**self.collate.inputs(pairs), "start": torch.tensor(start)}
