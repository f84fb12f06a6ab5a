"""Does a listwise adapter fit its own training windows, and does that carry over to held-out ones?

    python -m dear.listwise.window_fit RUN [--checkpoint last.ckpt] [--limit 500]

A run of ``train.py --config-name train_listwise`` whose answers are ranking lines (data with ranking targets, e.g.
``data=teacher_listwise``) is rebuilt from ``RUN/export/config.yaml`` (its data module: the same windows and the same
validation split), and two models score its training windows (the first ``--limit``) and its validation windows:
the untrained start (the base, zero LoRA update) and the checkpoint (``RUN/checkpoints/last.ckpt`` by default). Per
set: FIRST's ranking loss on the ids' first-answer log-probabilities (``dear.listwise.sft_module``; the score
``listwise.scoring=first_id`` ranks by) beside its value for passage-blind (equal) scores, and how often the
target's first id scores highest beside the chance rate. An adapter that learns the task moves both below blind /
above chance on the held-out windows; one that memorises moves them on the training windows only; one that does
neither has not fitted its data at all (too few steps, too small a model, too weak a signal).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from dear.cli import user_errors, verbose_errors
from dear.distill.losses import rank_weighted_ranknet
from dear.errors import DataError
from dear.eval.tables import markdown_grid
from dear.utils.progress import log, progress_bar


def blind(rows: list[dict]) -> tuple[float, float]:
    """(mean ranking loss of equal scores, expected top-1 rate of a uniform pick) over ``rows``' ranking targets."""
    losses = [
        float(
            rank_weighted_ranknet(
                torch.zeros(len(r["rank"]["ranks"])), torch.tensor(r["rank"]["ranks"])
            )
        )
        for r in rows
    ]
    chance = [1.0 / len(r["rank"]["ranks"]) for r in rows]
    return sum(losses) / len(losses), sum(chance) / len(chance)


def fit(module, rows: list[dict], collate, desc: str = "windows") -> tuple[float, int]:
    """(mean ranking loss, windows whose target's first id scores highest) of ``module`` over ``rows``, one
    window a forward (no padding, so each window scores as it would alone), whatever its ``rank_loss_weight``."""
    losses, first = [], 0
    with torch.no_grad(), progress_bar(desc, len(rows)) as advance:
        for row in rows:
            parts = module.losses(collate([row]), with_rank=True)
            losses.append(float(parts["rank"]))
            first += round(float(parts["rank_top1"]))
            advance()
    return sum(losses) / len(losses), first


def ranked_rows(rows: list[dict], name: str) -> list[dict]:
    kept = [r for r in rows if r.get("rank") is not None]
    if not kept:
        raise DataError(
            f"{name}: no window has a ranking target (the answers must be the prompt's ranking line of the whole "
            "window, without reasoning, e.g. data=teacher_listwise)"
        )
    return kept


def table(results: dict[str, dict]) -> str:
    header = [
        "windows",
        "n",
        "rank loss: blind",
        "start",
        "checkpoint",
        "first id right: chance",
        "start",
        "checkpoint",
    ]
    rows = [
        [
            name,
            str(r["n"]),
            f"{r['blind']:.4f}",
            f"{r['start']['rank']:.4f}",
            f"{r['checkpoint']['rank']:.4f}",
            f"{100 * r['chance']:.1f} %",
            f"{r['start']['first']} ({100 * r['start']['first'] / r['n']:.1f} %)",
            f"{r['checkpoint']['first']} ({100 * r['checkpoint']['first'] / r['n']:.1f} %)",
        ]
        for name, r in results.items()
    ]
    return "\n".join(markdown_grid(header, rows, text_columns=1))


def load_state(module, path: Path) -> None:
    """The checkpoint's trainable tensors into ``module`` (checkpoints hold only those); ``path`` exists."""
    from dear.utils.checkpoints import load_checkpoint

    state = load_checkpoint(path).get("state_dict")
    if not isinstance(state, dict) or not state:
        raise DataError(f"{path}: no 'state_dict' in the checkpoint")
    # non-empty and nothing unexpected: every tensor of the checkpoint found its place in the module
    unexpected = module.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise DataError(f"{path}: tensors this run's module does not have, e.g. {unexpected[0]!r}")


def window_fit(
    run: str | Path, checkpoint: str = "last.ckpt", limit: int | None = None
) -> dict[str, dict]:
    """{"train": ..., "val": ...}: each set's ``n``, ``blind``, ``chance`` and the ``start`` / ``checkpoint``
    ``rank`` and ``first`` (see the module docstring)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from dear.config import prepare_environment, register_resolvers
    from dear.listwise.sft_data import collate
    from dear.training import build_datamodule

    run = Path(run)
    config = run / "export" / "config.yaml"
    if not config.is_file():
        raise DataError(
            f"{config}: not found (RUN must be a finished train.py --config-name train_listwise run)"
        )
    register_resolvers()
    cfg = OmegaConf.load(config)
    if "module" not in cfg or "data" not in cfg:
        raise DataError(f"{config}: no 'module' or 'data' (not a train.py run's export config)")
    path = Path(checkpoint)
    path = path if path.is_absolute() else run / "checkpoints" / path
    if not path.is_file():  # before minutes of scoring the start
        raise DataError(f"{path}: checkpoint not found")
    prepare_environment(cfg)
    data = build_datamodule(cfg)
    data.setup("fit")
    sets = {"train": ranked_rows(data.train_rows, "train windows")[:limit]}
    if data.val_rows:
        sets["val"] = ranked_rows(data.val_rows, "validation windows")
    module = instantiate(cfg.module).eval()

    def pad(rows):
        return collate(rows, module.tokenizer.pad_token_id)

    results = {}
    for name, rows in sets.items():
        loss, chance = blind(rows)
        results[name] = {"n": len(rows), "blind": loss, "chance": chance}

    def score(stage: str) -> None:
        for name, rows in sets.items():
            loss, first = fit(module, rows, pad, f"{stage}: {name} windows")
            results[name][stage] = {"rank": loss, "first": first}
            log(f"{stage} on {name}: rank loss {loss:.4f}, first id right {first}/{len(rows)}")

    score("start")
    load_state(module, path)
    score("checkpoint")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dear.listwise.window_fit", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run", help="a train.py --config-name train_listwise run directory")
    parser.add_argument(
        "--checkpoint",
        default="last.ckpt",
        help="under RUN/checkpoints, or a path (default: last.ckpt)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="score the first N training windows only"
    )
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    with user_errors(verbose_errors()):
        results = window_fit(args.run, args.checkpoint, args.limit)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
