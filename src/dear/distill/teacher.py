"""The teacher as Stage-1 training sees it. ``Teacher``: the scorer's config and a builder called only when a shard
must be scored (a complete cache never loads the model); ``TeacherLogits``: one teacher's cache over one source."""

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
    """Settings of ``config``'s scorer that do not change scores (its ``runtime_only``: device, batch sizes)."""
    target = config.get("_target_")
    if not target:
        return frozenset()
    from hydra.utils import get_object

    return frozenset(getattr(get_object(target), "runtime_only", ()))


def scoring_settings(config: dict) -> dict:
    """``config`` less runtime-only settings, CPU bf16 autocast marked (its logits differ: caches never mix)."""
    skip = runtime_only(config)
    return {k: v for k, v in with_cpu_precision(config).items() if k not in skip}


def with_cpu_precision(node):
    """``node`` with each ``dtype: auto`` run in native CPU bf16 marked so; GPU and fp32 fingerprints unchanged."""
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
    """``config``: the teacher scorer's plain config; ``build(**overrides) -> scorer`` (``device=`` from the
    distributed precompute). Not a dataclass: ``instantiate`` would treat one as a config."""

    def __init__(self, config: dict, build: Callable[..., object]):
        self.config, self.build = config, build

    @property
    def name(self) -> str:
        return str(self.config.get("model", self.config.get("_target_", "teacher")))


class TeacherLogits:
    """``teacher``'s logits for every pair of ``source``, in ``cache_dir``'s directory named by its fingerprint."""

    def __init__(
        self, teacher: Teacher, source, cache_dir: str = ".cache/teacher", shard_size: int = 4096
    ):
        self.teacher, self.source, self.cache_root, self.shard_size = (
            teacher,
            source,
            cache_dir,
            shard_size,
        )

    @cached_property
    def fingerprint(self) -> dict:
        """What the logits depend on: scoring settings and the source's description (computed once: it hashes files)."""
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
        """Score what the cache lacks in this process (building the teacher only if needed) → seconds taken."""
        start = time.perf_counter()
        log(f"teacher cache missing: scoring with {self.teacher.name} into {self.cache.dir}")
        self.cache.precompute(self.teacher.build, self.fingerprint, queries, docs, self.shard_size)
        return time.perf_counter() - start

    def load(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """{(qid, docid): logit} for ``pairs`` (verified against the manifest)."""
        return self.cache.load(self.fingerprint, pairs)
