"""Test environment: offline hubs, W&B off, ir_datasets on a writable copy of the shared cache.

Set at import time so subprocesses (the CLI tests) inherit the same environment.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, SHARED_DATA, shared  # noqa: F401  (shared: for tests that import it from here)

_session_tmp = Path(tempfile.mkdtemp(prefix="dear-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# fp32 on CPU unless a test turns bf16 on (tests/models/test_bf16.py): the exactness tests compare
# against fp32 references; bf16's own parity is tested against fp32 there.
os.environ["DEAR_CPU_BF16"] = "0"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["DEAR_CACHE_DIR"] = str(_session_tmp / "cache")
os.environ["DEAR_DATA_DIR"] = str(SHARED_DATA)
os.environ["IR_DATASETS_HOME"] = str(_session_tmp / "ir_datasets")
if (SHARED_DATA / "ir_datasets").is_dir():
    shutil.copytree(SHARED_DATA / "ir_datasets", _session_tmp / "ir_datasets")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_session_tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_llama_cls(tmp_path_factory) -> str:
    from dear.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "llama-cls", "llama", "seqcls")


@pytest.fixture(scope="session")
def tiny_bert_cls(tmp_path_factory) -> str:
    from dear.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "bert-cls", "bert", "seqcls")


@pytest.fixture(scope="session")
def flag_jsonl(tmp_path_factory) -> Path:
    """A FlagEmbedding-format training file: 8 queries, each with its topic's passage as positive."""
    import json

    path = tmp_path_factory.mktemp("flag") / "train.jsonl"
    topics = ["llama", "edison", "coffee", "volcano", "violin", "glacier", "comet", "tulip"]
    rows = [
        {
            "query": f"tell me about {t}",
            "pos": [f"a passage about {t}"],
            "neg": [f"a passage about {o}" for o in topics if o != t][:5],
        }
        for t in topics
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def toy_files(tmp_path) -> dict[str, Path]:
    """A 2-query benchmark on disk: docs/queries TSV, qrels, a TREC run and a rank_llm JSON."""
    import json

    docs = {
        "d1": "the llama is a domesticated south american camelid",
        "d2": "the quick brown fox jumps over the lazy dog",
        "d3": "thomas edison invented the light bulb in 1879",
        "d4": "coffee is a popular drink",
    }
    queries = {"q1": "what is a llama", "q2": "who invented the light bulb"}
    paths = {
        k: tmp_path / n
        for k, n in [
            ("docs", "docs.tsv"),
            ("queries", "queries.tsv"),
            ("qrels", "qrels.txt"),
            ("run", "run.trec"),
            ("json", "rankllm.json"),
        ]
    }
    paths["docs"].write_text("".join(f"{d}\t{t}\n" for d, t in docs.items()))
    paths["queries"].write_text("".join(f"{q}\t{t}\n" for q, t in queries.items()))
    paths["qrels"].write_text("q1 0 d1 2\nq1 0 d2 0\nq2 0 d3 1\nq2 0 d4 0\n")
    # The run puts the relevant document last for both queries.
    paths["run"].write_text(
        "q1 Q0 d2 1 3.0 bm25\nq1 Q0 d4 2 2.0 bm25\nq1 Q0 d1 3 1.0 bm25\n"
        "q2 Q0 d4 1 3.0 bm25\nq2 Q0 d2 2 2.0 bm25\nq2 Q0 d3 3 1.0 bm25\n"
    )
    paths["json"].write_text(
        json.dumps(
            [
                {
                    "query": queries[q],
                    "hits": [
                        {"content": docs[d], "qid": q, "docid": d, "rank": i + 1, "score": 3.0 - i}
                        for i, d in enumerate(order)
                    ],
                }
                for q, order in [("q1", ["d2", "d4", "d1"]), ("q2", ["d4", "d2", "d3"])]
            ]
        )
    )
    return paths


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread is as fast, and immune to a busy second core (modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_llama_causal(tmp_path_factory) -> str:
    from dear.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "llama-causal", "llama", "causal")


@pytest.fixture
def chat_server():
    """A real HTTP server on loopback speaking the OpenAI chat-completions protocol.

    ``server.respond(body) -> str | (content, finish_reason[, extra message fields])`` makes each
    answer (set it per test); the server records every request body, the most requests it had
    in flight at once, and the start time of each; ``server.delay`` slows each answer down.
    """
    import json
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    state = SimpleNamespace(
        requests=[],
        starts=[],
        in_flight=0,
        max_in_flight=0,
        delay=0.0,
        auth=[],
        respond=lambda body: "[1] > [2]",
        lock=threading.Lock(),
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_POST(self):
            if not self.path.endswith("/chat/completions"):
                self.send_error(404)
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(body)
                state.starts.append(time.monotonic())
                state.auth.append(self.headers.get("Authorization"))
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                time.sleep(state.delay)
                answer = state.respond(body)
            finally:
                with state.lock:
                    state.in_flight -= 1
            content, finish, extra = (
                (answer, "stop", {}) if isinstance(answer, str) else (*answer, {})[:3]
            )
            payload = {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish,
                        "message": {"role": "assistant", "content": content, **extra},
                    }
                ],
                "usage": {
                    "prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
                    "completion_tokens": len(content.split()),
                    "total_tokens": 0,
                },
            }
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()
