"""Export a Stage-1 run for serving engines, and prove the export scores like training did.

    python -m dear.export outputs/train/RUN                       # → outputs/train/RUN/merged
    python -m dear.export outputs/train/RUN --verify benchmark=noveleval
    python -m dear.export outputs/train/RUN --merged DIR --verify benchmark=noveleval   # check DIR only

The merged directory (LoRA merged into the base, score head, tokenizer, ``dear_scorer.json``) loads with plain
``AutoModelForSequenceClassification``; ``config.pad_token_id`` is set so the library pools our position. A bi-encoder
export is copied as is. ``--verify`` scores a benchmark through both the merged model (plain transformers) and
``scorer_from_export``, reports max |Δscore|, ranking identity and metrics, and exits non-zero beyond ``--atol``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from dear.errors import DataError
from dear.eval.judges import build_judge
from dear.rerank.pointwise import EXPORT_META, export_meta, scorer_from_export, sort_by_scores
from dear.rerank.pointwise import export_dir as locate_export
from dear.rerank.template import PairTemplate
from dear.serve.pairs import PairTokenizer, read_settings
from dear.utils.io import atomic_dir, atomic_write_json


def serving_pad_id(config_pad_id: int | None, tokenizer_pad_id: int, pooling: str) -> int:
    """The ``pad_token_id`` making transformers (rightmost id != pad) pool our position: for ``reference`` the last
    padding position (0, as DeAR's code, unless the config names another token), for ``last`` the last real token."""
    if pooling == "reference":
        if tokenizer_pad_id == 0:
            raise DataError(
                "pooling 'reference' needs a padding token other than id 0 (the stand-in pad_token_id)"
            )
        return 0 if config_pad_id in (None, tokenizer_pad_id) else config_pad_id
    if pooling == "last":
        return tokenizer_pad_id
    return tokenizer_pad_id if config_pad_id is None else config_pad_id


def merge(export_dir: Path, out_dir: Path, dtype: str = "float32") -> Path:
    """Write the merged model directory (atomically: a crash leaves the old one or none)."""
    from transformers import AutoModelForSequenceClassification

    from dear.models.loading import load_pretrained

    meta = export_meta(export_dir)
    if meta.get("kind") == "bi_encoder":
        return atomic_dir(out_dir, lambda tmp: shutil.copytree(export_dir, tmp, dirs_exist_ok=True))
    tokenizer, model = load_pretrained(
        AutoModelForSequenceClassification,
        str(export_dir),
        dtype=dtype,
        device="cpu",
        fill_pad_id=False,
        num_labels=1,
    )
    model.config.pad_token_id = serving_pad_id(
        model.config.pad_token_id, tokenizer.pad_token_id, meta["pooling"]
    )
    settings = {
        "template": asdict(PairTemplate.of(meta.get("template"))),
        "pooling": meta["pooling"],
        "base_model": meta.get("base_model"),
        "merged_from": str(export_dir.resolve()),
    }

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / EXPORT_META, settings)

    return atomic_dir(out_dir, write)


@torch.inference_mode()
def plain_scores(
    merged_dir: Path, rankings, batch_size: int = 16, device: str = "cpu"
) -> list[np.ndarray]:
    """Scores from the merged directory with transformers alone (no scorer of ours)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    settings = read_settings(merged_dir)
    if settings.get("kind") == "bi_encoder":
        return plain_bi_encoder_scores(merged_dir, settings, rankings, batch_size, device)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    model = (
        AutoModelForSequenceClassification.from_pretrained(merged_dir, dtype=torch.float32)
        .to(device)
        .eval()
    )
    pairs = PairTokenizer(tokenizer, read_settings(merged_dir))
    triples = [(r.query.text, c.title, c.text) for r in rankings for c in r.candidates]
    flat = []
    for start in range(0, len(triples), batch_size):
        batch = {
            k: v.to(device) for k, v in pairs.batch(triples[start : start + batch_size]).items()
        }
        flat.append(model(**batch).logits[:, 0].float().cpu().numpy())
    flat = np.concatenate(flat) if flat else np.zeros(0, dtype=np.float32)
    bounds = np.cumsum([0] + [len(r.candidates) for r in rankings])
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


@torch.inference_mode()
def plain_bi_encoder_scores(
    model_dir: Path, settings: dict, rankings, batch_size: int, device: str
) -> list[np.ndarray]:
    """sentence-transformers' recipe with transformers alone: masked mean, L2-normalised, cosine × ``logit_scale``."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    inputs = settings["inputs"]

    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[start : start + batch_size],
                truncation=True,
                max_length=inputs["max_len"],
                padding=True,
                return_tensors="pt",
            ).to(device)
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            out.append(
                torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).cpu()
            )
        return torch.cat(out)

    scores = []
    for r in rankings:
        q = embed([inputs["query_prefix"] + r.query.text])
        d = embed([inputs["doc_prefix"] + c.full_text for c in r.candidates])
        scores.append((settings["logit_scale"] * (d @ q[0])).numpy())
    return scores


def load_benchmark(overrides: list[str]):
    """``benchmark=NAME`` plus any further overrides, composed from ``conf/evaluate.yaml``."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from dear.config import CONF_DIR, prepare_environment, register_resolvers

    if not any(o.startswith("benchmark=") for o in overrides):
        raise DataError(
            f"--verify {' '.join(overrides)}: name the benchmark, e.g. --verify benchmark=noveleval"
        )
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=overrides)
    prepare_environment(cfg)
    return instantiate(cfg.benchmark)


def verify(
    export_dir: Path,
    merged_dir: Path,
    benchmark,
    atol: float,
    depth: int = 100,
    device: str = "cpu",
) -> dict:
    """Both scorings of ``benchmark``'s top-``depth`` candidates → the parity report."""
    loaded = benchmark.load()
    rankings = [r.head(depth) for r in loaded.run.values()]
    ours = scorer_from_export(str(export_dir), dtype="float32", device=device).score(rankings)
    plain = plain_scores(merged_dir, rankings, device=device)
    same = {
        r.qid: (
            [c.docid for c in sort_by_scores(r, a).candidates]
            == [c.docid for c in sort_by_scores(r, b).candidates]
        )
        for r, a, b in zip(rankings, ours, plain)
    }
    judge = build_judge(loaded.judgments)
    metrics = {
        side: judge.evaluate({r.qid: sort_by_scores(r, s) for r, s in zip(rankings, scores)})[0]
        for side, scores in [("training_scorer", ours), ("merged_transformers", plain)]
    }
    diff = max((float(np.max(np.abs(a - b))) for a, b in zip(ours, plain) if len(a)), default=0.0)
    return {
        "benchmark": benchmark.name,
        "queries": len(rankings),
        "pairs": sum(len(s) for s in ours),
        "max_abs_diff": diff,
        "atol": atol,
        "passed": diff <= atol,
        "identical_rankings": sum(same.values()),
        "identical_ranking_per_query": same,
        "metrics": metrics,
    }


def report_table(report: dict) -> str:
    names = list(next(iter(report["metrics"].values())))
    rows = "".join(
        f"| {side} | " + " | ".join(f"{100 * m[n]:.2f}" for n in names) + " |\n"
        for side, m in report["metrics"].items()
    )
    return (
        f"{report['benchmark']}: {report['pairs']} pairs, max |Δscore| = {report['max_abs_diff']:.3g} "
        f"(atol {report['atol']:g}), "
        f"identical rankings {report['identical_rankings']}/{report['queries']} queries\n\n"
        f"| scorer | {' | '.join(names)} |\n|---|{'---:|' * len(names)}\n{rows}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dear.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run", help="train.py's run directory or its export/")
    parser.add_argument("--out", help="merged model directory (default: RUN/merged)")
    parser.add_argument(
        "--merged", help="verify this existing merged directory instead of writing one"
    )
    parser.add_argument(
        "--verify", nargs="+", metavar="OVERRIDE", help="benchmark=NAME [hydra overrides]"
    )
    parser.add_argument(
        "--atol", type=float, default=1e-4, help="largest |Δscore| accepted (fp32 on CPU)"
    )
    parser.add_argument(
        "--depth", type=int, default=100, help="candidates per query scored by --verify"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="dtype of the merged weights")
    args = parser.parse_args(argv)
    export_dir = locate_export(args.run)
    if args.merged:
        merged = Path(args.merged)
    else:
        merged = merge(
            export_dir, Path(args.out) if args.out else export_dir.parent / "merged", args.dtype
        )
        print(f"merged model: {merged}")
    if not args.verify:
        return 0
    report = verify(
        export_dir, merged, load_benchmark(args.verify), args.atol, args.depth, args.device
    )
    atomic_write_json(merged / f"verify_{report['benchmark']}.json", report)
    print(report_table(report))
    if not report["passed"]:
        print(
            f"FAILED: the merged model's scores differ from the training-time scorer's by up to "
            f"{report['max_abs_diff']:.3g} > atol {args.atol:g}",
            file=sys.stderr,
        )
        return 1
    print("PASSED: the merged model scores like the training-time scorer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
