"""Dynamic micro-batching: concurrent rerank requests merged into one scorer call.

The scorer is not thread-safe and a CPU/GPU does one forward at a time, so one worker thread
scores. While it is busy, new requests queue; the next call takes every queued request up to a
pair budget (documents over all merged requests), after waiting at most ``max_wait_ms`` for
more. The merged call is ``scorer.score(rankings)`` itself — the engine ``evaluate.py`` uses —
so a request's scores are those of its pairs, whatever it was merged with (up to the fp noise
of a different padded length when its pairs share a batch with longer ones).

The queue is bounded in requests (waiting + being scored): one more answers ``QueueFull`` at
once, so overload costs a 429 instead of memory.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dear.data.contract import Ranking


class QueueFull(RuntimeError):
    """The batcher already holds ``max_queue`` requests."""


@dataclass
class _Job:
    rankings: list[Ranking]
    future: asyncio.Future
    pairs: int = field(init=False)

    def __post_init__(self):
        self.pairs = sum(len(r.candidates) for r in self.rankings)


class MicroBatcher:
    """``score_fn(rankings) -> list[np.ndarray]`` (one array of candidate scores per ranking).

    ``enabled=False`` scores every request in its own call (the baseline the load benchmark
    compares against); the queue bound and the single worker stay the same.
    """

    def __init__(self, score_fn: Callable[[list[Ranking]], list[np.ndarray]], enabled: bool = True,
                 max_wait_ms: float = 2.0, max_batch_pairs: int = 512, max_queue: int = 64):
        if max_queue < 1 or max_batch_pairs < 1 or max_wait_ms < 0:
            raise ValueError("serve.batching: max_queue and max_batch_pairs must be >= 1, max_wait_ms >= 0")
        self.score_fn, self.enabled = score_fn, enabled
        self.max_wait_s, self.max_batch_pairs, self.max_queue = max_wait_ms / 1000, max_batch_pairs, max_queue
        self.admitted = 0  # requests waiting or being scored
        self.calls = 0  # scorer calls made (tests and /health read it)
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._carry: _Job | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dear-scorer")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Finish every admitted request, then stop the worker."""
        if self._worker is not None:
            await self._queue.put(None)
            await self._worker
            self._worker = None
        self._executor.shutdown(wait=True)

    async def score(self, rankings: list[Ranking]) -> list[np.ndarray]:
        if self._worker is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        if self.admitted >= self.max_queue:
            raise QueueFull(f"{self.admitted} requests queued (serve.batching.max_queue = {self.max_queue})")
        self.admitted += 1
        try:
            job = _Job(rankings, asyncio.get_running_loop().create_future())
            await self._queue.put(job)
            return await job.future
        finally:
            self.admitted -= 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch(loop)
            if not batch:
                return
            try:
                merged = await loop.run_in_executor(self._executor, self.score_fn,
                                                    [r for job in batch for r in job.rankings])
            except Exception as error:  # noqa: BLE001 - handed to every waiting request
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            self.calls += 1
            start = 0
            for job in batch:
                if not job.future.done():  # a client that went away leaves a cancelled future
                    job.future.set_result(merged[start : start + len(job.rankings)])
                start += len(job.rankings)

    async def _next_batch(self, loop) -> list[_Job]:
        """The next requests to score together: [] once closed and drained."""
        first = self._carry or await self._queue.get()
        self._carry = None
        if first is None:
            return []
        batch, pairs = [first], first.pairs
        deadline = loop.time() + self.max_wait_s
        while self.enabled and pairs < self.max_batch_pairs:
            job = await self._get_until(deadline, loop)
            if job is None:
                break
            if pairs + job.pairs > self.max_batch_pairs:
                self._carry = job  # starts the next batch
                break
            batch.append(job)
            pairs += job.pairs
        return batch

    async def _get_until(self, deadline: float, loop) -> _Job | None:
        """A queued job, waiting until ``deadline`` at most; None on timeout or at the close sentinel
        (which is put back, so the worker stops after this batch)."""
        try:
            job = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            timeout = deadline - loop.time()
            if timeout <= 0:
                return None
            try:
                job = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                return None
        if job is None:
            self._queue.put_nowait(None)
        return job
