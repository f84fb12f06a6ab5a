"""The rerank app under uvicorn on a free loopback port, and a slow fake scorer to load it with."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import uvicorn

from dear.data.contract import Candidate, Query, Ranking


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app):
    """``app`` under uvicorn in a thread on a free loopback port; stopped (gracefully) on exit."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "server failed to start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive()


def ranking_of(query: str, docs: list) -> Ranking:
    """``docs``: texts or (title, text) pairs; docid = index, as the server builds it."""
    titled = [d if isinstance(d, tuple) else ("", d) for d in docs]
    return Ranking(
        Query("request", query),
        [Candidate(str(i), text, title) for i, (title, text) in enumerate(titled)],
    )


class FakeScorer:
    """Scores = document length, after ``delay`` seconds; records every call's pair count."""

    def __init__(self, tokenizer, delay: float = 0.0):
        self.tokenizer, self.delay, self.calls = tokenizer, delay, []
        self.started = threading.Event()

    def score(self, rankings):
        self.started.set()
        time.sleep(self.delay)
        self.calls.append(sum(len(r.candidates) for r in rankings))
        return [np.array([len(c.text) for c in r.candidates], dtype=np.float32) for r in rankings]


@contextmanager
def thread_pool(n: int):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n) as pool:
        yield pool
