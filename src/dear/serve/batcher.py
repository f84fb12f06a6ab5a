"""Dynamic micro-batching: concurrent rerank requests merged into scorer calls, large requests chunked and
interleaved, a failure kept to its own request (docs/serving.md).

One worker thread scores (the scorer is not thread-safe). Requests over ``chunk_pairs`` go a chunk at a time; a call
takes the first pending request's next chunk plus those of requests of the same kind (whole or chunked) up to
``max_batch_pairs``, and a served request goes back in line, so a small request waits about one chunk. A call is
``scorer.score(rankings)`` itself, so scores do not depend on batch mates (up to fp noise of padding). A raising
merged call is retried chunk by chunk: only a chunk that still raises fails its request. The queue is bounded: one
more request raises ``QueueFull`` (a 429).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from dear.data.contract import Ranking
from dear.errors import ConfigError


class QueueFull(RuntimeError):
    """The batcher already holds ``max_queue`` requests."""


@dataclass(eq=False)
class _Job:
    """One request: its ranking, handed to the scorer a chunk at a time."""

    ranking: Ranking
    chunk: int
    future: asyncio.Future
    sent: int = 0  # candidates handed to the scorer so far
    parts: dict[int, np.ndarray] = field(default_factory=dict)  # scores by chunk start

    @property
    def split(self) -> bool:
        """Whether it is scored in more than one chunk (a large request)."""
        return len(self.ranking.candidates) > self.chunk

    def next_size(self) -> int:
        return min(self.chunk, len(self.ranking.candidates) - self.sent)

    def take(self) -> _Chunk:
        start, self.sent = self.sent, self.sent + self.next_size()
        return _Chunk(
            self,
            start,
            Ranking(
                self.ranking.query, self.ranking.candidates[start : self.sent], self.ranking.meta
            ),
        )

    def deliver(self, start: int, scores: np.ndarray) -> None:
        if self.future.done():  # failed already, or a client that went away left it cancelled
            return
        self.parts[start] = scores
        if sum(len(p) for p in self.parts.values()) == len(self.ranking.candidates):
            self.future.set_result(np.concatenate([self.parts[s] for s in sorted(self.parts)]))

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass(eq=False)
class _Chunk:
    job: _Job
    start: int
    ranking: Ranking


class MicroBatcher:
    """``score_fn(rankings) -> list[np.ndarray]``; ``enabled=False``: one chunk per call (the no-merging baseline)."""

    def __init__(
        self,
        score_fn: Callable[[list[Ranking]], list[np.ndarray]],
        enabled: bool = True,
        max_wait_ms: float = 2.0,
        max_batch_pairs: int = 512,
        chunk_pairs: int | None = 64,
        max_queue: int = 64,
    ):
        if max_queue < 1 or max_batch_pairs < 1 or max_wait_ms < 0 or (chunk_pairs or 1) < 1:
            raise ConfigError(
                "serve.batching: expected max_queue, max_batch_pairs and chunk_pairs (or null) >= 1, "
                f"max_wait_ms >= 0, found {max_queue}, {max_batch_pairs}, {chunk_pairs}, {max_wait_ms}"
            )
        self.score_fn, self.enabled = score_fn, enabled
        # a chunk fits a call
        self.chunk_pairs = min(chunk_pairs, max_batch_pairs) if chunk_pairs else None
        self.max_wait_s, self.max_batch_pairs, self.max_queue = (
            max_wait_ms / 1000,
            max_batch_pairs,
            max_queue,
        )
        self.admitted = 0  # requests waiting or being scored
        self.calls = 0  # scorer calls that succeeded (tests and /health read it)
        self._pending: list[_Job] = []  # the line (see the module's docstring)
        self._arrived: asyncio.Event | None = None
        self._closing = False
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dear-scorer")

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._worker = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Finish every admitted request, then stop the worker."""
        if self._worker is not None:
            self._closing = True
            self._arrived.set()
            await self._worker
            self._worker = None
        self._executor.shutdown(wait=True)

    async def score(self, ranking: Ranking) -> np.ndarray:
        """The scores of ``ranking``'s candidates, in its order."""
        if self._worker is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        if self.admitted >= self.max_queue:
            raise QueueFull(
                f"{self.admitted} requests queued (serve.batching.max_queue = {self.max_queue})"
            )
        if not ranking.candidates:
            return np.zeros(0, dtype=np.float32)
        self.admitted += 1
        try:
            job = _Job(
                ranking,
                self.chunk_pairs or len(ranking.candidates),
                asyncio.get_running_loop().create_future(),
            )
            self._pending.append(job)
            self._arrived.set()
            return await job.future
        finally:
            self.admitted -= 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while await self._wait_for_work(loop):
            chunks = self._take()
            if not chunks:
                continue
            await self._score(chunks, loop)
            # back in line behind the requests that arrived meanwhile
            self._pending += [
                c.job for c in chunks if c.job.next_size() and not c.job.future.done()
            ]

    async def _wait_for_work(self, loop) -> bool:
        """Until a request is pending (False once closed and drained), then up to ``max_wait_ms`` more."""
        idle = not self._pending
        while not self._pending:
            if self._closing:
                return False
            self._arrived.clear()
            await self._arrived.wait()
        deadline = loop.time() + self.max_wait_s
        while (
            idle and self.enabled and not self._closing and self._room() and deadline > loop.time()
        ):
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), deadline - loop.time())
            except TimeoutError:
                break
        return True

    def _room(self) -> bool:
        return sum(job.next_size() for job in self._pending) < self.max_batch_pairs

    def _take(self) -> list[_Chunk]:
        """The next call's chunks: the first request's next chunk plus the next chunks of its kind that fit."""
        chunks, pairs = [], 0
        # failed, or client gone
        self._pending = [job for job in self._pending if not job.future.done()]
        for job in list(self._pending):
            if chunks and (
                not self.enabled
                or job.split != chunks[0].job.split
                or pairs + job.next_size() > self.max_batch_pairs
            ):
                continue
            pairs += job.next_size()
            chunks.append(job.take())
            self._pending.remove(job)
        return chunks

    async def _score(self, chunks: list[_Chunk], loop) -> None:
        try:
            scores = await loop.run_in_executor(
                self._executor, self.score_fn, [c.ranking for c in chunks]
            )
        except Exception as error:  # noqa: BLE001 - kept to the request whose chunk raises
            if len(chunks) == 1:
                chunks[0].job.fail(error)
                return
            for chunk in chunks:  # which chunk fails? each alone: the others still get their scores
                await self._score([chunk], loop)
            return
        self.calls += 1
        for chunk, s in zip(chunks, scores):
            chunk.job.deliver(chunk.start, s)
