"""No request hurting another (issue 21): a bad request fails alone, whatever it was batched with,
and a small request is not held up behind a large one (chunks interleaved round-robin)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import numpy as np

from dear.errors import DataError
from dear.serve.app import build_app
from dear.serve.batcher import MicroBatcher
from tests.helpers.serving import FakeScorer, ranking_of, serving, thread_pool


class PickyScorer(FakeScorer):
    """FakeScorer (score = document length) that holds its calls until ``gate`` opens, records
    each call's texts, and raises for the document ``poison`` (a server fault) or ``unscorable``
    (input it refuses)."""

    def __init__(self):
        super().__init__(None)  # no tokenizer: the server counts tokens by characters
        self.gate, self.attempts = threading.Event(), []

    def score(self, rankings):
        texts = [c.text for r in rankings for c in r.candidates]
        self.attempts.append(texts)
        assert self.gate.wait(60)
        if "poison" in texts:
            raise RuntimeError("the scorer crashed")
        if "unscorable" in texts:
            raise DataError("documents: 'unscorable' cannot be scored")
        return super().score(rankings)


def by_docid(rankings):
    """Scores = the candidates' docids (their indices in the request): chunks reassemble in order."""
    return [np.array([float(c.docid) for c in r.candidates]) for r in rankings]


def test_bad_requests_in_flight_with_twenty_good_ones_fail_alone():
    scorer = PickyScorer()
    app = build_app(scorer, "picky", batching={"max_wait_ms": 0})
    with serving(app) as (url, _), httpx.Client(timeout=60) as client, thread_pool(24) as pool:

        def post(documents):  # json.dumps escapes a lone surrogate (\ud800), as a client's JSON may
            return client.post(
                f"{url}/v2/rerank",
                content=json.dumps({"query": "q", "documents": documents}),
                headers={"content-type": "application/json"},
            )

        warm = pool.submit(post, ["warm"])  # holds the worker until everything below is queued
        while not scorer.attempts:
            time.sleep(0.01)
        goods = [pool.submit(post, [f"good {i}", "x" * (i + 1)]) for i in range(20)]
        surrogate = pool.submit(post, ["a", "b", "c", "bad \ud800 text"])  # valid JSON, not text
        poison = pool.submit(post, ["fine", "poison"])
        unscorable = pool.submit(post, ["unscorable"])
        deadline = time.monotonic() + 60
        while (
            app.state.batcher.admitted < 23 and time.monotonic() < deadline
        ):  # warm + 20 good + 2 bad
            time.sleep(0.01)
        scorer.gate.set()
        replies = [g.result() for g in goods]
        bad, crashed, refused = surrogate.result(), poison.result(), unscorable.result()
        assert warm.result().status_code == 200
    for i, reply in enumerate(replies):
        assert reply.status_code == 200, reply.text
        assert {r["index"]: r["raw_score"] for r in reply.json()["results"]} == {
            0: len(f"good {i}"),
            1: i + 1,
        }
    assert (
        bad.status_code == 422
        and "documents[3]: not valid Unicode" in bad.json()["detail"][0]["msg"]
    )
    assert crashed.status_code == 500
    assert (
        refused.status_code == 422
        and refused.json()["message"] == "documents: 'unscorable' cannot be scored"
    )
    merged = scorer.attempts[1]  # the 22 queued requests in one call, which raised ...
    assert len(merged) == 2 * 20 + 2 + 1 and "poison" in merged
    # ... then each scored alone (the lone surrogate never reached it)
    assert len(scorer.attempts) == 2 + 22


def test_a_failing_merged_call_is_retried_chunk_by_chunk():
    calls = []

    def score(rankings):
        calls.append([(r.query.text, len(r.candidates)) for r in rankings])
        if any(c.text == "poison" for r in rankings for c in r.candidates):
            raise RuntimeError("poisoned")
        return by_docid(rankings)

    async def scenario():
        batcher = MicroBatcher(score, max_wait_ms=100, chunk_pairs=2)
        await batcher.start()
        requests = [
            ranking_of("a", ["1", "2", "3"]),
            ranking_of("b", ["x", "poison", "y"]),
            ranking_of("c", ["z", "w", "v"]),
        ]
        out = await asyncio.gather(*(batcher.score(r) for r in requests), return_exceptions=True)
        await batcher.close()
        return out

    a, b, c = asyncio.run(scenario())
    assert list(a) == [0, 1, 2] and isinstance(b, RuntimeError) and list(c) == [0, 1, 2]
    # b's last chunk is dropped with its request
    assert calls == [
        [("a", 2), ("b", 2), ("c", 2)],
        [("a", 2)],
        [("b", 2)],
        [("c", 2)],  # the merged call, then alone
        [("a", 1), ("c", 1)],
    ]


def test_a_small_request_overtakes_a_large_one_scored_in_chunks():
    calls = []

    def score(rankings):  # 2 ms a pair
        calls.append(sum(len(r.candidates) for r in rankings))
        time.sleep(0.002 * calls[-1])
        return by_docid(rankings)

    async def race(chunk_pairs):
        batcher = MicroBatcher(score, max_wait_ms=0, max_batch_pairs=64, chunk_pairs=chunk_pairs)
        await batcher.start()
        finished = []

        async def request(name, n):
            scores = await batcher.score(ranking_of(name, [f"{name} {i}" for i in range(n)]))
            finished.append(name)
            return scores

        large = asyncio.create_task(request("large", 300))  # 0.6 s of scoring
        await asyncio.sleep(0.05)  # the large request is being scored
        small = await request("small", 2)
        scores = await large
        await batcher.close()
        return finished, scores, small

    finished, scores, small = asyncio.run(race(16))
    assert (
        finished == ["small", "large"]
        and list(scores) == list(range(300))
        and list(small) == [0, 1]
    )
    # the small request in a call of its own, between chunks
    assert sorted(calls) == [2] + [12] + [16] * 18
    # scored whole, it holds the small one up
    assert asyncio.run(race(None))[0] == [
        "large",
        "small",
    ]
