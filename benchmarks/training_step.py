"""Stage-1 training speed: our Lightning step vs a raw PyTorch loop on the same batches.

    python benchmarks/training_step.py --steps 20                              # the default student
    python benchmarks/training_step.py --steps 20 student=minilm_cross_encoder  # any train.py override

ours  the built-in default's own trainer and callbacks (`conf/train.yaml`: Lightning, gradient
      clipping, the checkpoint / seed / LR callbacks), DistillModule.training_step, its
      optimizer and schedule — validation off
raw   a plain loop over the same precollated batches: forward, the same loss, backward, clip,
      AdamW, the same schedule (the ceiling: no framework at all)
Both start from the same weights and consume the same real SciFact groups (BM25 negatives, the
default's group size and batch, teacher logits from a cache-shaped dict). Prints seconds per step
of each (the first step of each is a warm-up, not timed), interleaved in rounds, and ours / raw.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from _common import DATA, ROOT, table

from dear.distill.groups import GroupDataset, PairCollator


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from dear.config import CONF_DIR, register_resolvers

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return hydra_compose(
            "train", overrides=[f"paths.output_dir={tempfile.mkdtemp()}", *overrides]
        )


def batches(cfg, module, steps: int) -> list[dict]:
    from dear.distill.sources import IrDatasetsTrainSource
    from dear.distill.student import student_inputs
    from dear.rerank.template import PairEncoder, PairTemplate

    queries, docs = IrDatasetsTrainSource(
        "beir/scifact/train",
        depth=30,
        max_queries=4 * steps,
        cache_dir=str(ROOT / ".cache" / "bm25"),
    ).load()
    rng = np.random.default_rng(0)
    teacher = {(q.qid, d): float(rng.normal()) for q in queries for d in q.docids}
    student = cfg.student
    encoder = (
        student_inputs(student, module.tokenizer)
        if student.get("kind") == "bi_encoder"
        else PairEncoder(module.tokenizer, PairTemplate.of(student.template))
    )
    collate = PairCollator(encoder, {q.qid: q.text for q in queries}, docs, teacher)
    groups = GroupDataset(queries, cfg.data.group_size, seed=0)
    b = cfg.data.batch_size
    return [collate([groups[b * i + j] for j in range(b)]) for i in range(steps)]


class StepClock:
    """A Lightning callback: wall time from the start of batch 1 to the end of the last batch."""

    def __init__(self):
        from lightning.pytorch import Callback

        clock = self

        class _Clock(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if batch_idx == 1:
                    clock.start = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                clock.end = time.perf_counter()

        self.callback = _Clock()


def ours(cfg, module, data: list[dict]) -> float:
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    clock = StepClock()
    # both need a display or logger
    callbacks = [
        instantiate(c)
        for name, c in (cfg.get("callbacks") or {}).items()
        if c and name not in ("progress", "lr_monitor")
    ]
    trainer = instantiate(
        cfg.trainer,
        max_steps=len(data),
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks + [clock.callback],
        default_root_dir=tempfile.mkdtemp(),
    )
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None, collate_fn=lambda x: x))
    return (clock.end - clock.start) / (len(data) - 1)


def raw(cfg, module, data: list[dict]) -> float:
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.module.lr, weight_decay=cfg.module.weight_decay)
    schedule = get_linear_schedule_with_warmup(
        optimizer, int(cfg.module.warmup_ratio * len(data)), len(data)
    )
    module.train()
    for i, batch in enumerate(data):
        if i == 1:
            start = time.perf_counter()
        scores = module(batch).view_as(batch["labels"])
        module.loss(scores, batch["labels"], batch.get("teacher"))["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.trainer.gradient_clip_val)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    return (time.perf_counter() - start) / (len(data) - 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args, overrides = parser.parse_known_args()

    from hydra.utils import instantiate

    from dear.data.irds import use_home

    use_home(None, str(DATA / "ir_datasets"))
    cfg = compose(overrides)
    torch.manual_seed(0)
    initial = instantiate(cfg.module)
    data = batches(cfg, initial, args.steps)
    tokens = sum(int(v.sum()) for b in data for k, v in b.items() if k.endswith("mask"))
    seconds = {"ours": [], "raw": []}
    for _ in range(args.rounds):  # interleaved: drift in machine load hits both alike
        seconds["ours"].append(ours(cfg, copy.deepcopy(initial), data))
        seconds["raw"].append(raw(cfg, copy.deepcopy(initial), data))
    med = {k: statistics.median(v) for k, v in seconds.items()}
    print(
        f"\n{cfg.student.model} ({cfg.student.get('kind', 'cross_encoder')}), {args.steps} steps of "
        f"{cfg.data.batch_size} groups x {cfg.data.group_size} ({tokens / args.steps:.0f} real tokens per step), "
        f"torch threads {torch.get_num_threads()}, overrides {' '.join(overrides) or 'none'}\n"
    )
    print(
        table(
            [(k, f"{t:.3f}", f"{1 / t:.2f}") for k, t in med.items()], ("loop", "s/step", "steps/s")
        )
    )
    print(
        f"\nours runs at {100 * med['raw'] / med['ours']:.1f}% of the raw loop's speed (goal >= 90%)"
    )


if __name__ == "__main__":
    sys.exit(main())
