"""Listwise reranking speed: windows batched across queries (ours) vs the model card's loop.

    python benchmarks/listwise_window.py                       # the issue's set-up
    python benchmarks/listwise_window.py --model tiny:llama-causal-h1024-l8 --max-words 40 --max-new-tokens 128

A tiny random Llama (tiny:llama-causal, 4,096 positions) reranks NovelEval's 21 queries x 20
passages with window 20, step 10, the model card's single-turn prompt, greedy decoding and the
same generation budget on both sides:
ours        ListwiseReranker + TransformersBackend: one window step of every query per call,
            length-sorted, left-padded batches of `--batch-size`, KV cache
model card  the released card's ListwiseReranker.rerank: one `generate` per query
Prints queries/s and the ratio, and checks that both sides produce identical rankings.
`--model` takes any `tiny:` spec or checkpoint; `--max-words` fixes the per-passage word budget
(default `auto`: fit the model's context). Batching pays where reading the weights dominates a
decoding step (real models); a 2-layer, 256-wide model spends its step on the KV cache instead.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import DATA, ROOT, table
from omegaconf import OmegaConf

from dear.data.benchmarks import PooledBM25Benchmark
from dear.listwise.backends.hf import TransformersBackend
from dear.listwise.parsing import parse_ranking
from dear.listwise.reranker import ListwiseReranker


def card_loop(backend: TransformersBackend, chats: list, prompt) -> list[list[int]]:
    """The model card's per-query loop: tokenise one prompt, `generate`, decode, parse."""
    orders = []
    for messages in chats:
        ids = torch.tensor([backend.renderer.ids(messages, prompt.chat_template)])
        with torch.inference_mode():
            out = backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                         generation_config=backend.generation_config)[0, ids.shape[1]:].tolist()
        gen = backend._completion(out, ids.shape[1])
        orders.append(parse_ranking(gen.text, 20, prompt.first_id, prompt.marker, gen.truncated).order)
    return orders


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--model", default="tiny:llama-causal")
    parser.add_argument("--max-words", default="auto")
    args = parser.parse_args()

    d = DATA / "noveleval"
    rankings = list(PooledBM25Benchmark("noveleval", str(d / "corpus.tsv"), str(d / "queries.tsv"),
                                        str(d / "qrels.txt"), ["nDCG@10"]).load().run.values())
    prompt_cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "prompt" / "model_card.yaml"))
    prompt_cfg.pop("_target_")
    # auto: 20 x 300 words would overflow the tiny model's 4,096 positions
    prompt_cfg["max_words"] = args.max_words if args.max_words == "auto" else int(args.max_words)
    prompt_cfg["max_chars"] = None
    backend = TransformersBackend(args.model, max_new_tokens=args.max_new_tokens,
                                  batch_size=args.batch_size, dtype="float32")
    reranker = ListwiseReranker(backend, prompt_cfg, window_size=20, step=10)

    chats = []  # what our reranker sends, so the card's loop gets the very same prompts
    generate = backend.generate
    backend.generate = lambda convs, **kw: (chats.extend(convs), generate(convs, **kw))[1]
    reranker.rerank(rankings[:2])  # warm-up
    chats.clear()
    start = time.perf_counter()
    ours = reranker.rerank(rankings)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    card = card_loop(backend, chats, reranker.prompt)
    t_card = time.perf_counter() - start

    ours_orders = [[c.docid for c in o.candidates] for o in ours]
    card_orders = [[r.candidates[i].docid for i in order] for r, order in zip(rankings, card)]
    identical = ours_orders == card_orders
    n = len(rankings)
    params = sum(p.numel() for p in backend.model.parameters()) / 1e6
    print(f"\nNovelEval {n} queries x 20 passages, window 20 step 10, {args.model} ({params:.1f}M parameters), "
          f"max_words {args.max_words}, max_new_tokens {args.max_new_tokens}, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}\n")
    print(table([("ours (windows batched across queries)", f"{n / t_ours:.2f}", f"{t_ours:.1f}"),
                 ("model card loop (one generate per query)", f"{n / t_card:.2f}", f"{t_card:.1f}")],
                ("approach", "queries/s", "seconds")))
    print(f"\nspeed-up {t_card / t_ours:.2f}x (target >= 3); rankings identical: {identical}")
    assert identical, "batched and per-query generation disagree"


if __name__ == "__main__":
    main()
