"""Load on the rerank server over loopback: throughput and latency with micro-batching on and off,
side by side in one run (two `serve.py` processes, each level measured on both, interleaved).

    python benchmarks/serve_load.py                         # tiny random BERT cross-encoder, c = 1 4 16 64
    python benchmarks/serve_load.py --serve pointwise=minilm_bi_encoder --concurrency 1 16 --max-seconds 30

The default model is a tiny random BERT cross-encoder (``tiny:bert-seqcls``: speed only, its
scores are noise) so that a run stays within minutes on a shared 2-core CPU, where MiniLM
needs seconds per request; there the server's own per-request work (HTTP, JSON, tokenising,
one forward call) is what micro-batching amortises.

Requests: TREC DL21 queries with 10 of their BM25 top-100 passages each (rank_llm's file), every
request distinct within a run (the bi-encoder memoises texts, so a repeated request would be
free). Each level sends ``--requests-per-client`` x concurrency requests (at least 8); clients
stop starting requests after ``--max-seconds``; only 127.0.0.1 is contacted. Prints requests/s, pairs/s, p50/p99
latency and the count of non-200 answers (429 = queue full).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
from _common import ROOT, dl21_candidates, table


def request_bodies(docs_per_request: int) -> list[dict]:
    """Every (query, slice of its candidates) once: distinct requests, in a fixed order."""
    bodies = []
    for ranking in dl21_candidates(queries=60, depth=100):
        texts = [c.full_text for c in ranking.candidates]
        for start in range(0, len(texts) - docs_per_request + 1, docs_per_request):
            bodies.append({"model": "bench", "query": ranking.query.text, "documents": texts[start : start + docs_per_request]})
    return bodies


def start_server(port: int, batching: bool, overrides: list[str]) -> subprocess.Popen:
    args = [sys.executable, "serve.py", *overrides, f"serve.port={port}", "serve.log_level=warning",
            f"serve.batching.enabled={str(batching).lower()}", "hydra.run.dir=/tmp/dear-serve-load/${now:%H-%M-%S-%f}"]
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s")


async def drive(url: str, bodies: list[dict], concurrency: int, max_seconds: float) -> dict:
    """``concurrency`` clients, each sending its next request as soon as the last one answered."""
    latencies, codes, queue = [], [], list(reversed(bodies))
    deadline = time.monotonic() + max_seconds
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def worker():
            while queue and time.monotonic() < deadline:
                body = queue.pop()
                start = time.perf_counter()
                reply = await client.post(f"{url}/v2/rerank", json=body)
                latencies.append(time.perf_counter() - start)
                codes.append(reply.status_code)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    ok = [lat for lat, code in zip(latencies, codes) if code == 200]
    return {"requests": len(codes), "ok": len(ok), "rejected_429": codes.count(429),
            "other_errors": len(codes) - len(ok) - codes.count(429), "seconds": seconds,
            "p50_ms": 1000 * float(np.percentile(ok, 50)) if ok else float("nan"),
            "p99_ms": 1000 * float(np.percentile(ok, 99)) if ok else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--docs", type=int, default=10, help="documents per request")
    parser.add_argument("--requests-per-client", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=15, help="per level and server")
    parser.add_argument("--serve", nargs="+", default=["pointwise=minilm_cross_encoder", "pointwise.model=tiny:bert-seqcls"],
                        help="serve.py overrides choosing the model")
    parser.add_argument("--port", type=int, default=18600)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the servers (finally) when killed
    bodies = request_bodies(args.docs)
    ports = {"on": args.port, "off": args.port + 1}
    if any(o.endswith("tiny:bert-seqcls") for o in args.serve):
        from dear.models.loading import resolve_model_path

        resolve_model_path("tiny:bert-seqcls")  # built once here, not raced by the two servers
    servers = {mode: start_server(port, mode == "on", args.serve) for mode, port in ports.items()}
    try:
        for mode, port in ports.items():
            wait_healthy(f"http://127.0.0.1:{port}", servers[mode])
        rows, used = [], 0
        for c in args.concurrency:
            n = max(8, c * args.requests_per_client)
            if used + n > len(bodies):
                raise SystemExit(f"only {len(bodies)} distinct requests; lower --concurrency/--requests-per-client")
            level = bodies[used : used + n]
            used += n
            results = {mode: asyncio.run(drive(f"http://127.0.0.1:{port}", level, c, args.max_seconds))
                       for mode, port in ports.items()}
            rps = {mode: r["ok"] / r["seconds"] for mode, r in results.items()}
            for mode, r in results.items():
                rows.append((c, mode, r["requests"], r["rejected_429"], r["other_errors"], f"{rps[mode]:.1f}",
                             f"{rps[mode] * args.docs:.0f}", f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}",
                             f"{rps['on'] / rps['off']:.2f}x" if mode == "on" else ""))
            print(f"concurrency {c}: on {rps['on']:.1f} req/s, off {rps['off']:.1f} req/s", file=sys.stderr, flush=True)
    finally:
        for proc in servers.values():
            proc.terminate()
        for proc in servers.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"\n{' '.join(args.serve)}, {args.docs} documents per request, loopback, {os.cpu_count()} CPU cores\n")
    print(table(rows, ("concurrency", "batching", "requests", "429", "other errors", "req/s", "pairs/s",
                       "p50 ms", "p99 ms", "on/off")))


if __name__ == "__main__":
    main()
