"""The teacher as Stage-1 training sees it: its config, how to build it, and its cached logits.

``Teacher`` is what a composition root hands the data module: the scorer's config (what its
logits depend on) and a function that builds the scorer (called only when a cache shard has to
be scored, so a complete cache never loads the model). ``TeacherLogits`` is one teacher's cache
over one training source: its fingerprint, directory, precompute and lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property

from dear.data.texts import DocStore
from dear.distill.sources import TrainQuery
from dear.distill.teacher_cache import TeacherCache
from dear.distill.teacher_cache import fingerprint as cache_fingerprint
from dear.utils.progress import log


def runtime_only(config: dict) -> frozenset[str]:
    """The settings of ``config``'s ``_target_`` scorer that do not change its scores (its
    ``runtime_only`` attribute: device, batch sizes, memo sizes); none for a target without one."""
    target = config.get("_target_")
    if not target:
        return frozenset()
    from hydra.utils import get_object

    return frozenset(getattr(get_object(target), "runtime_only", ()))


def scoring_settings(config: dict) -> dict:
    """``config`` less its scorer's runtime-only settings: what the teacher's logits depend on,
    with every ``dtype: auto`` that computes in bf16 autocast on this CPU said so (its logits
    differ from an fp32 host's, so the two never share a cache)."""
    skip = runtime_only(config)
    return {k: v for k, v in with_cpu_precision(config).items() if k not in skip}


def with_cpu_precision(node):
    """``node`` with each ``dtype: auto`` (at any depth, e.g. a fusion member) that runs on a CPU
    with native bf16 rewritten ``auto (bf16 autocast on CPU)``; elsewhere unchanged, so caches
    made on GPUs or fp32 CPUs keep their fingerprints."""
    if isinstance(node, dict):
        out = {k: with_cpu_precision(v) for k, v in node.items()}
        if out.get("dtype") == "auto":
            from dear.models.loading import cpu_bf16, pick_device

            if cpu_bf16(pick_device(str(out.get("device") or "auto"))):
                out["dtype"] = "auto (bf16 autocast on CPU)"
        return out
    if isinstance(node, list):
        return [with_cpu_precision(v) for v in node]
    return node


class Teacher:
    """``config``: the teacher scorer's plain config (``_target_`` and settings); ``build``:
    ``build(**overrides) -> scorer`` (e.g. ``functools.partial(hydra.utils.instantiate, node)``),
    called with ``device=...`` by the distributed precompute.

    A plain class, not a dataclass: Hydra would turn a dataclass passed to ``instantiate`` into a
    config, and build the scorer its ``_target_`` names."""

    def __init__(self, config: dict, build: Callable[..., object]):
        self.config, self.build = config, build

    @property
    def name(self) -> str:
        return str(self.config.get("model", self.config.get("_target_", "teacher")))


class TeacherLogits:
    """``teacher``'s logits for every pair of ``source``, cached under ``cache_dir`` in the
    directory its fingerprint names (shards of about ``shard_size`` pairs)."""

    def __init__(self, teacher: Teacher, source, cache_dir: str = ".cache/teacher", shard_size: int = 4096):
        self.teacher, self.source, self.cache_root, self.shard_size = teacher, source, cache_dir, shard_size

    @cached_property
    def fingerprint(self) -> dict:
        """What the logits depend on: the teacher's scoring settings and the source's description
        (computed once: the description hashes the source's files, e.g. a training run or JSONL)."""
        return cache_fingerprint(scoring_settings(self.teacher.config), self.source.describe())

    @cached_property
    def cache(self) -> TeacherCache:
        return TeacherCache.for_fingerprint(self.cache_root, self.fingerprint)

    def record(self) -> dict:
        """Where the logits are and what they were computed for (for the run directory)."""
        return {"dir": str(self.cache.dir), "fingerprint": self.fingerprint}

    @property
    def ready(self) -> bool:
        return self.cache.recorded

    def precompute(self, queries: list[TrainQuery], docs: DocStore) -> float:
        """Score what the cache lacks in this process (the teacher is built only if a shard needs
        it). → seconds taken."""
        start = time.perf_counter()
        log(f"teacher cache missing: scoring with {self.teacher.name} into {self.cache.dir}")
        self.cache.precompute(self.teacher.build, self.fingerprint, queries, docs, self.shard_size)
        return time.perf_counter() - start

    def load(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """{(qid, docid): logit} for ``pairs`` (verified against the manifest)."""
        return self.cache.load(self.fingerprint, pairs)
