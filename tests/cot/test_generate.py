"""CoT data generation against a real loopback HTTP server speaking the OpenAI protocol."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dear.config import CONF_DIR
from dear.cot.generate import CotGenerator
from dear.data.contract import Candidate, Query, Ranking
from dear.data.cot import FIELDS, load_cot
from dear.errors import ConfigError, EndpointError
from dear.listwise.backends.openai import OpenAIChatBackend, RateLimiter
from tests.helpers import ROOT

KEY = "sk-test-not-a-real-key"
SECRET = "sk-proj-" + "a1B2c3D4" * 5  # shaped like a real key


def load_prompt(name: str):
    return instantiate(OmegaConf.load(CONF_DIR / "prompt" / f"{name}.yaml"))


def teacher(body: dict, seen: Counter) -> str:
    """A stand-in for GPT-4o: ranks passages by word overlap with the query, with reasoning.
    Queries with 'flaky' answer incompletely the first time; 'hopeless' never answer usefully."""
    messages = body["messages"]
    query = re.search(r"Search Query: (.*?)\.\n", messages[-1]["content"]).group(1)
    passages = [
        re.match(r"\[(\d+)\] (.*)", m["content"], re.DOTALL)
        for m in messages
        if m["role"] == "user"
    ]
    passages = [(int(p.group(1)), p.group(2)) for p in passages if p]
    seen[query] += 1
    if "hopeless" in query:
        return "I cannot rank these passages."
    words = set(query.lower().split())
    ranked = sorted(passages, key=lambda p: -len(words & set(p[1].lower().split())))
    ids = [f"[{i}]" for i, _ in ranked]
    if "flaky" in query and seen[query] == 1:
        ids = ids[:2]
    return (
        f"Step 1. The query asks about {query}.\nStep 2. [{ranked[0][0]}] shares the most words.\n"
        f"Step 3. Ranking all passages.\n### Final Reranking: {' > '.join(ids)}"
    )


def rankings(n: int, special: dict[int, str] | None = None) -> list[Ranking]:
    out = []
    for q in range(n):
        text = f"{(special or {}).get(q, 'topic')} number {q} llama"
        cands = [
            Candidate(
                f"q{q}-d{d}", f"passage {d} about {'llama' if d == 3 else 'coffee'} number {q}"
            )
            for d in range(5)
        ]
        out.append(Ranking(Query(f"q{q}", text), cands))
    return out


@pytest.fixture
def endpoint(chat_server, monkeypatch):
    monkeypatch.setenv("DEAR_TEST_KEY", KEY)
    seen = Counter()
    chat_server.respond = lambda body: teacher(body, seen)
    chat_server.seen = seen
    return OpenAIChatBackend(
        "teacher-model",
        base_url=chat_server.url,
        api_key_env="DEAR_TEST_KEY",
        max_concurrency=3,
        max_retries=0,
    )


def test_generation_keeps_valid_permutations_retries_and_rejects(endpoint, chat_server, tmp_path):
    out = tmp_path / "cot.jsonl"
    chat_server.delay = 0.1  # answers overlap, so the concurrency cap shows
    summary = CotGenerator(endpoint, load_prompt("dear"), max_attempts=3).run(
        rankings(6, {1: "flaky", 4: "hopeless"}), out
    )

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["meta"]["qid"] for r in rows) == ["q0", "q1", "q2", "q3", "q5"]
    for row in rows:
        assert list(row)[:6] == list(FIELDS)
        assert row["system"].startswith("You are RankLLM") and row["input"] == ""
        assert len(row["history"]) == 6 and row["history"][1] == [
            "[1] passage 0 about coffee number " + row["meta"]["qid"][1:],
            "Received passage [1].",
        ]
        # passage 3 (id [4]) mentions llama
        assert row["output"].startswith("### Final Reranking: [4] > ")
        assert sorted(re.findall(r"\[(\d)\]", row["output"])) == ["1", "2", "3", "4", "5"]
        assert row["think"].startswith("Step 1.") and "Final Reranking" not in row["think"]
        assert row["meta"]["usage"]["completion_tokens"] > 0
    flaky = next(r for r in rows if r["meta"]["qid"] == "q1")
    assert flaky["meta"]["attempts"] == 2 and chat_server.seen["flaky number 1 llama"] == 2

    rejected = [
        json.loads(line) for line in (tmp_path / "cot.rejected.jsonl").read_text().splitlines()
    ]
    assert [r["qid"] for r in rejected] == ["q4"] and rejected[0]["attempts"] == 3
    assert summary["kept"] == 5 and summary["rejected"] == 1 and summary["requests"] == 9
    assert json.loads((tmp_path / "cot.summary.json").read_text()) == summary
    usages = [r["meta"]["usage"] for r in rows] + [rejected[0]["usage"]]
    assert summary["prompt_tokens"] == sum(u["prompt_tokens"] for u in usages)

    assert 1 < chat_server.max_in_flight <= 3
    assert set(chat_server.auth) == {f"Bearer {KEY}"}
    assert KEY not in out.read_text() and KEY not in (tmp_path / "cot.summary.json").read_text()
    assert len(load_cot(str(out))) == 5  # what SFT reads back


def test_requests_respect_the_rate_limit(chat_server, monkeypatch):
    monkeypatch.setenv("DEAR_TEST_KEY", KEY)
    backend = OpenAIChatBackend(
        "m",
        base_url=chat_server.url,
        api_key_env="DEAR_TEST_KEY",
        max_concurrency=8,
        requests_per_minute=600,
    )
    began = time.monotonic()
    backend.generate([[{"role": "user", "content": f"hi {i}"}] for i in range(6)])
    # 600/min = one start every 0.1 s: the sixth request cannot leave before 0.5 s. (Arrival times at the
    # server jitter under load, so the spacing itself is checked on the limiter's clock below.)
    assert time.monotonic() - began >= 0.5 and len(chat_server.starts) == 6


def test_the_rate_limiter_spaces_starts_on_its_own_clock(monkeypatch):
    """Six requests at once on a frozen clock: the limiter schedules them 0.1 s apart (deterministic)."""
    from dear.listwise.backends import openai as module

    slept = []

    async def fake_sleep(seconds):
        slept.append(seconds)

    monkeypatch.setattr(module.time, "monotonic", lambda: 100.0)
    monkeypatch.setattr(module.asyncio, "sleep", fake_sleep)
    limiter = RateLimiter(600)

    async def main():
        await asyncio.gather(*(limiter.wait() for _ in range(6)))

    asyncio.run(main())
    assert sorted(slept) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert RateLimiter(None).interval == 0.0


def test_missing_key_names_the_variable_only(monkeypatch):
    monkeypatch.delenv("DEAR_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="DEAR_TEST_KEY is not set"):
        OpenAIChatBackend("m", base_url="http://127.0.0.1:9/v1", api_key_env="DEAR_TEST_KEY")


def test_a_key_given_as_the_variable_name_is_not_echoed():
    with pytest.raises(
        ConfigError, match=r"endpoint\.api_key_env: expected the name of an environment variable"
    ) as e:
        OpenAIChatBackend("m", base_url="http://127.0.0.1:9/v1", api_key_env=SECRET)
    assert SECRET not in str(e.value)


def test_connection_error_names_the_url_without_credentials(monkeypatch):
    monkeypatch.setenv("DEAR_TEST_KEY", KEY)
    backend = OpenAIChatBackend(
        "m",
        base_url="http://user:hunter2pass@127.0.0.1:9/v1",
        api_key_env="DEAR_TEST_KEY",
        max_retries=0,
        timeout=5,
    )
    expected = r"endpoint\.base_url http://user:\*\*\*@127\.0\.0\.1:9/v1: cannot connect"
    with pytest.raises(EndpointError, match=expected) as e:
        backend.generate([[{"role": "user", "content": "hi"}]])
    assert "hunter2pass" not in str(e.value)


def test_command_resumes_after_a_kill_without_duplicates(chat_server, tmp_path):
    """Acceptance: `python -m dear.cot` killed mid-run, then re-run, yields every query exactly once."""
    seen = Counter()
    chat_server.respond = lambda body: teacher(body, seen)
    chat_server.delay = 0.3
    data = tmp_path / "candidates.json"
    data.write_text(
        json.dumps(
            [
                {
                    "query": r.query.text,
                    "hits": [
                        {
                            "qid": r.qid,
                            "docid": c.docid,
                            "content": c.text,
                            "rank": i + 1,
                            "score": 5.0 - i,
                        }
                        for i, c in enumerate(r.candidates)
                    ],
                }
                for r in rankings(12)
            ]
        )
    )
    out = tmp_path / "out" / "cot.jsonl"
    command = [
        sys.executable,
        "-m",
        "dear.cot",
        f"candidates.path={data}",
        "endpoint=local",
        f"endpoint.base_url={chat_server.url}",
        "endpoint.max_concurrency=2",
        "endpoint.max_retries=0",
        f"output={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    log = tmp_path / "first.log"
    with log.open("w") as stderr:
        first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
        not out.is_file() or len(out.read_text().splitlines()) < 3
    ):
        assert first.poll() is None, log.read_text()[-2000:]
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = out.read_text().splitlines()
    assert 3 <= len(before) < 12
    with out.open("a") as f:  # a write torn by the kill
        f.write('{"system": "You are RankLLM", "instruc')
    requests_before = len(chat_server.requests)

    chat_server.delay = 0.0
    second = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert second.returncode == 0, second.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    qids = [r["meta"]["qid"] for r in rows]
    assert sorted(qids) == sorted(f"q{i}" for i in range(12)) and len(set(qids)) == 12
    assert out.read_text().splitlines()[: len(before)] == before
    # done queries are not re-asked
    assert len(chat_server.requests) - requests_before == 12 - len(before)
    assert json.loads(second.stdout.strip().splitlines()[-1])["kept"] == 12


@pytest.fixture
def status_server():
    """A loopback server answering every chat request with ``server.status`` and the JSON
    ``server.body`` (or the bytes ``server.raw``) after ``server.delay`` seconds (error answers
    the loopback stub cannot give)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    state = SimpleNamespace(status=400, body={}, raw=None, delay=0.0, requests=0)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            state.requests += 1
            time.sleep(state.delay)
            data = state.raw if state.raw is not None else json.dumps(state.body).encode()
            try:
                self.send_response(state.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (the timeout test)
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


# What `transformers serve` answers (FastAPI's {"detail"}), met against the real server: the
# client's own message was only "Error code: 400" and the run ended in a traceback.
@pytest.mark.parametrize(
    "status, body, expected",
    [
        (
            400,
            {"detail": "Server is pinned to '/models/smollm2'; requested 'wrong'."},
            r"^endpoint\.model='wrong': http://127\.0\.0\.1:\d+/v1 refused the request \(HTTP 400: Server is pinned to "
            r"'/models/smollm2'; requested 'wrong'\.\)$",
        ),
        (
            422,
            {"detail": "Unexpected fields in the request: {'top_k'}"},
            r"^endpoint http://.* rejected the request for model 'wrong' \(HTTP 422: Unexpected fields in the request: "
            r"\{'top_k'\}\); it carries .* endpoint\.extra_body keys \['top_k'\]$",
        ),
        (
            404,
            {"error": {"message": "The model `wrong` does not exist.", "type": "NotFoundError"}},
            r"^endpoint\.model='wrong': .*\(HTTP 404: The model `wrong` does not exist\.\)$",
        ),
        (
            400,
            {"error": {"message": "This model's maximum context length is 8192 tokens."}},
            r"^endpoint\.context_size=8192: .* endpoint\.max_new_tokens=512 \(HTTP 400: This model's maximum context",
        ),
        (
            401,
            {"error": {"message": f"Incorrect API key provided: {SECRET}"}},
            r"^endpoint\.api_key_env: http://.* refused the credentials \(HTTP 401: Incorrect API key provided: ",
        ),
        (
            500,
            {"detail": "Internal Server Error"},
            r"^endpoint\.base_url http://.*: the server failed after 0 retries \(HTTP 500: Internal Server Error\)$",
        ),
    ],
)
def test_an_http_error_answer_is_one_line_naming_the_setting(
    status_server, monkeypatch, status, body, expected
):
    monkeypatch.setenv("DEAR_TEST_KEY", KEY)
    status_server.status, status_server.body = status, body
    backend = OpenAIChatBackend(
        "wrong",
        base_url=status_server.url,
        api_key_env="DEAR_TEST_KEY",
        max_retries=0,
        max_new_tokens=512,
        context_size=8192,
        extra_body={"top_k": 40},
    )
    with pytest.raises(EndpointError, match=expected) as e:
        backend.generate([[{"role": "user", "content": "hi"}]])
    assert "\n" not in str(e.value) and SECRET not in str(e.value) and KEY not in str(e.value)


def test_a_slow_server_is_a_timeout_naming_the_setting_not_a_connection_error(
    status_server, monkeypatch
):
    monkeypatch.setenv("DEAR_TEST_KEY", KEY)
    status_server.status, status_server.delay = 200, 3.0
    backend = OpenAIChatBackend(
        "m", base_url=status_server.url, api_key_env="DEAR_TEST_KEY", max_retries=0, timeout=0.5
    )
    with pytest.raises(
        EndpointError, match=r"^endpoint\.timeout=0\.5: no answer from http://.* within 0\.5 s"
    ):
        backend.generate([[{"role": "user", "content": "hi"}]])


@pytest.mark.parametrize(
    "raw, body",
    [
        (b"<html>502 Bad Gateway</html>", None),
        (b"", None),
        (None, {}),
        (None, {"choices": []}),
        (None, {"choices": [{"finish_reason": "stop"}]}),
        (None, {"choices": "text"}),
    ],
)
def test_an_answer_that_is_no_chat_completion_is_one_line(status_server, monkeypatch, raw, body):
    monkeypatch.setenv("DEAR_TEST_KEY", KEY)
    status_server.status, status_server.raw, status_server.body = 200, raw, body
    backend = OpenAIChatBackend(
        "m", base_url=status_server.url, api_key_env="DEAR_TEST_KEY", max_retries=0
    )
    with pytest.raises(
        EndpointError, match=r"^endpoint\.base_url http://.*: the answer is not a chat completion"
    ) as e:
        backend.generate([[{"role": "user", "content": "hi"}]])
    assert "\n" not in str(e.value)


def test_a_failing_request_cancels_the_others_and_leaves_no_unretrieved_exception(
    status_server, monkeypatch, caplog
):
    import gc

    monkeypatch.setenv("DEAR_TEST_KEY", KEY)
    status_server.status, status_server.body, status_server.delay = 500, {"detail": "boom"}, 0.05
    backend = OpenAIChatBackend(
        "m",
        base_url=status_server.url,
        api_key_env="DEAR_TEST_KEY",
        max_retries=0,
        max_concurrency=4,
    )
    with (
        caplog.at_level("ERROR", logger="asyncio"),
        pytest.raises(EndpointError, match="HTTP 500: boom"),
    ):
        backend.generate([[{"role": "user", "content": f"hi {i}"}] for i in range(40)])
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert status_server.requests < 40  # the rest were cancelled, not sent


@pytest.mark.parametrize("model", [None, "", "  "])
def test_a_missing_model_name_is_a_config_error(model):
    with pytest.raises(ConfigError, match=r"^endpoint\.model: expected the name the server serves"):
        OpenAIChatBackend(model, base_url="http://127.0.0.1:9/v1", api_key_env=None)


def test_the_transformers_serve_endpoint_samples_and_takes_the_served_model(monkeypatch):
    """conf/endpoint/transformers_serve.yaml: the model from $DEAR_SERVE_MODEL (the server's
    FORCE_MODEL), sampling switched on (the server ignores `temperature` for SmolLM2 otherwise)."""
    from hydra import compose, initialize_config_dir

    from dear.config import register_resolvers

    register_resolvers()
    monkeypatch.setenv("DEAR_SERVE_MODEL", "/models/smollm2")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("cot", overrides=["endpoint=transformers_serve", "candidates.path=x.json"])
    backend = instantiate(cfg.endpoint)
    assert backend.model == "/models/smollm2" and backend.api_key_env is None
    assert json.loads(backend.extra_body["generation_config"]) == {"do_sample": True}
    assert backend.max_concurrency <= 2 and backend.prompt_limit == 8192 - 512
    monkeypatch.delenv("DEAR_SERVE_MODEL")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("cot", overrides=["endpoint=transformers_serve", "candidates.path=x.json"])
    with pytest.raises(Exception, match=r"endpoint\.model: expected the name") as e:
        instantiate(cfg.endpoint)
    assert isinstance(e.value, ConfigError) or isinstance(e.value.__cause__, ConfigError)
