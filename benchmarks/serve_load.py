"""Load on the rerank server over loopback, side by side in one run (two `serve.py` processes,
each level measured on both, interleaved): throughput and latency with micro-batching on and off,
or (``--head-of-line``) small requests' latency while a maximal request is being scored, with
large requests scored in interleaved chunks (the default) and whole (``chunk_pairs=null``).

    python benchmarks/serve_load.py                         # tiny random BERT cross-encoder, c = 1 4 16 64
    python benchmarks/serve_load.py --serve pointwise=minilm_bi_encoder --concurrency 1 16 --max-seconds 30
    python benchmarks/serve_load.py --head-of-line          # 500 documents of 40,000 characters in flight

The default model is a tiny random BERT cross-encoder (``tiny:bert-seqcls``: speed only, its
scores are noise) so that a run stays within minutes on a shared 2-core CPU, where MiniLM
needs seconds per request; there the server's own per-request work (HTTP, JSON, tokenising,
one forward call) is what micro-batching amortises.

Requests: TREC DL21 queries with 10 of their BM25 top-100 passages each (rank_llm's file), every
request distinct within a run (the bi-encoder memoises texts, so a repeated request would be
free). Each level sends ``--requests-per-client`` x concurrency requests (at least 8); clients
stop starting requests after ``--max-seconds``; only 127.0.0.1 is contacted. Prints requests/s, pairs/s, p50/p99
latency and the count of non-200 answers (429 = queue full).

Head of line: each round sends one large request (``--large-docs`` documents of
``--large-chars`` characters: distinct slices of the DL21 passages joined; 500 x 40,000 is the
most the default limits allow with a 196-token document cut, 98,000 of the 100,000 tokens in
``serve.limits.max_request_tokens``) and, once the server has admitted it, a small request
(``--small-docs`` passages) every ``1 / --small-rate`` seconds until the large one is answered;
prints p50/p99/max latency of those small requests and the large request's own latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx
import numpy as np
from _common import ROOT, dl21_candidates, table


def request_bodies(docs_per_request: int) -> list[dict]:
    """Every (query, slice of its candidates) once: distinct requests, in a fixed order."""
    bodies = []
    for ranking in dl21_candidates(queries=60, depth=100):
        texts = [c.full_text for c in ranking.candidates]
        for start in range(0, len(texts) - docs_per_request + 1, docs_per_request):
            bodies.append(
                {
                    "model": "bench",
                    "query": ranking.query.text,
                    "documents": texts[start : start + docs_per_request],
                }
            )
    return bodies


def start_server(port: int, overrides: list[str]) -> subprocess.Popen:
    args = [
        sys.executable,
        "serve.py",
        *overrides,
        f"serve.port={port}",
        "serve.log_level=warning",
        "hydra.run.dir=/tmp/dear-serve-load/${now:%H-%M-%S-%f}",
    ]
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


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
    async with httpx.AsyncClient(
        timeout=120, limits=httpx.Limits(max_connections=concurrency)
    ) as client:

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
    return {
        "requests": len(codes),
        "ok": len(ok),
        "rejected_429": codes.count(429),
        "other_errors": len(codes) - len(ok) - codes.count(429),
        "seconds": seconds,
        "p50_ms": 1000 * float(np.percentile(ok, 50)) if ok else float("nan"),
        "p99_ms": 1000 * float(np.percentile(ok, 99)) if ok else float("nan"),
    }


@contextmanager
def servers(modes: dict[str, list[str]], port: int):
    """One ``serve.py`` per mode (its overrides) on consecutive ports → {mode: url}; stopped on exit."""
    if any(o.endswith("tiny:bert-seqcls") for overrides in modes.values() for o in overrides):
        from dear.models.loading import resolve_model_path

        resolve_model_path("tiny:bert-seqcls")  # built once here, not raced by the servers
    urls = {mode: f"http://127.0.0.1:{port + i}" for i, mode in enumerate(modes)}
    procs = {
        mode: start_server(port + i, overrides) for i, (mode, overrides) in enumerate(modes.items())
    }
    try:
        for mode, url in urls.items():
            wait_healthy(url, procs[mode])
        yield urls
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def throughput(args, bodies: list[dict]) -> None:
    modes = {
        mode: [*args.serve, f"serve.batching.enabled={str(mode == 'on').lower()}"]
        for mode in ("on", "off")
    }
    rows, used = [], 0
    with servers(modes, args.port) as urls:
        for c in args.concurrency:
            n = max(8, c * args.requests_per_client)
            if used + n > len(bodies):
                raise SystemExit(
                    f"only {len(bodies)} distinct requests; lower --concurrency/--requests-per-client"
                )
            level = bodies[used : used + n]
            used += n
            results = {
                mode: asyncio.run(drive(url, level, c, args.max_seconds))
                for mode, url in urls.items()
            }
            rps = {mode: r["ok"] / r["seconds"] for mode, r in results.items()}
            for mode, r in results.items():
                rows.append(
                    (
                        c,
                        mode,
                        r["requests"],
                        r["rejected_429"],
                        r["other_errors"],
                        f"{rps[mode]:.1f}",
                        f"{rps[mode] * args.docs:.0f}",
                        f"{r['p50_ms']:.0f}",
                        f"{r['p99_ms']:.0f}",
                        f"{rps['on'] / rps['off']:.2f}x" if mode == "on" else "",
                    )
                )
            print(
                f"concurrency {c}: on {rps['on']:.1f} req/s, off {rps['off']:.1f} req/s",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"\n{' '.join(args.serve)}, {args.docs} documents per request, loopback, {os.cpu_count()} CPU cores\n"
    )
    print(
        table(
            rows,
            (
                "concurrency",
                "batching",
                "requests",
                "429",
                "other errors",
                "req/s",
                "pairs/s",
                "p50 ms",
                "p99 ms",
                "on/off",
            ),
        )
    )


def large_request(text: str, docs: int, chars: int, offset: int) -> dict:
    """``docs`` distinct documents of ``chars`` characters: slices of ``text`` from ``offset`` on."""
    step = 997
    if offset + step * docs + chars > len(text):
        raise SystemExit(
            f"the DL21 passages hold {len(text)} characters: lower --large-docs/--large-chars/--rounds"
        )
    return {
        "model": "bench",
        "query": "what is the most common pack animal in the andes",
        "documents": [text[offset + i * step : offset + i * step + chars] for i in range(docs)],
    }


async def head_of_line_round(url: str, large: dict, smalls: list[dict], rate: float) -> dict:
    """The large request, and a small one every ``1 / rate`` s from its admission until its answer."""
    async with httpx.AsyncClient(timeout=1800) as client:

        async def timed(body: dict) -> tuple[float, int]:
            start = time.perf_counter()
            reply = await client.post(f"{url}/v2/rerank", json=body)
            return time.perf_counter() - start, reply.status_code

        big = asyncio.create_task(timed(large))
        while not big.done() and (await client.get(f"{url}/health")).json()["queued"] == 0:
            await asyncio.sleep(0.01)  # uploaded, parsed, counted: now it is being scored
        small = []
        while not big.done():
            if len(small) == len(smalls):
                raise SystemExit("ran out of distinct small requests: lower --small-rate")
            small.append(asyncio.create_task(timed(smalls[len(small)])))
            await asyncio.wait({big}, timeout=1 / rate)
        (large_s, large_code), answered = await big, await asyncio.gather(*small)
    if large_code != 200:
        raise SystemExit(f"the large request got {large_code}: lower --large-docs/--large-chars")
    return {
        "large_s": large_s,
        "small_s": [s for s, code in answered if code == 200],
        "small_errors": sum(code != 200 for _, code in answered),
    }


def head_of_line(args, bodies: list[dict]) -> None:
    modes = {"whole": [*args.serve, "serve.batching.chunk_pairs=null"], "interleaved": args.serve}
    measured = {mode: {"large_s": [], "small_s": [], "small_errors": 0} for mode in modes}
    text = " ".join(
        c.full_text for r in dl21_candidates(queries=60, depth=100) for c in r.candidates
    )
    with servers(modes, args.port) as urls:
        for round_ in range(args.rounds):
            for i, mode in enumerate(
                modes
            ):  # interleaved: load drift hits both alike; every request distinct
                large = large_request(
                    text, args.large_docs, args.large_chars, offset=7919 * (round_ * len(modes) + i)
                )
                got = asyncio.run(head_of_line_round(urls[mode], large, bodies, args.small_rate))
                bodies = bodies[len(got["small_s"]) + got["small_errors"] :]
                m = measured[mode]
                m["large_s"].append(got["large_s"])
                m["small_s"] += got["small_s"]
                m["small_errors"] += got["small_errors"]
                print(
                    f"round {round_ + 1} {mode}: large {got['large_s']:.1f} s, {len(got['small_s'])} small requests",
                    file=sys.stderr,
                    flush=True,
                )
    rows = []
    for mode, m in measured.items():
        ms = 1000 * np.array(m["small_s"])
        rows.append(
            (
                mode,
                len(ms),
                m["small_errors"],
                f"{np.percentile(ms, 50):.0f}",
                f"{np.percentile(ms, 99):.0f}",
                f"{ms.max():.0f}",
                f"{np.median(m['large_s']):.1f}",
            )
        )
    print(
        f"\n{' '.join(args.serve)}; large request: {args.large_docs} documents x {args.large_chars} characters; "
        f"small: {args.small_docs} documents, {args.small_rate:g}/s while it is scored; {args.rounds} rounds; "
        f"loopback, {os.cpu_count()} CPU cores\n"
    )
    print(
        table(
            rows,
            (
                "large request scored",
                "small requests",
                "errors",
                "small p50 ms",
                "small p99 ms",
                "small max ms",
                "large request s (median)",
            ),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--docs", type=int, default=10, help="documents per request")
    parser.add_argument("--requests-per-client", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=15, help="per level and server")
    parser.add_argument(
        "--serve",
        nargs="+",
        default=["pointwise=minilm_cross_encoder", "pointwise.model=tiny:bert-seqcls"],
        help="serve.py overrides choosing the model",
    )
    parser.add_argument("--port", type=int, default=18600)
    parser.add_argument(
        "--head-of-line", action="store_true", help="small requests' latency behind a maximal one"
    )
    parser.add_argument("--large-docs", type=int, default=500)
    parser.add_argument("--large-chars", type=int, default=40000)
    parser.add_argument("--small-docs", type=int, default=2)
    parser.add_argument("--small-rate", type=float, default=4, help="small requests per second")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    # still stop the servers (finally) when killed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.head_of_line:
        head_of_line(args, request_bodies(args.small_docs))
    else:
        throughput(args, request_bodies(args.docs))


if __name__ == "__main__":
    main()
