"""Listwise SFT data without GPT-4o: first-stage windows whose target permutation comes from the Stage-1 teacher's
cached logits (permutation distillation, as RankZephyr distils RankGPT).

Per query: the first ``window_size`` candidates (an unranked source shuffled with the seed), or ``sampled_windows``
windows drawn from its first ``pool`` candidates, each holding a judged positive (smaller windows, several a query: the
sliding window's view at inference); the answer is the ranking line, judged positives first, each group in teacher
order. No reasoning is written (``think`` empty): nothing is presented as a model's chain of thought.
"""

from __future__ import annotations

import random

from dear.data.contract import Candidate
from dear.data.cot import CotExample
from dear.errors import DataError
from dear.listwise.prompts import ListwisePrompt
from dear.utils.progress import log


class TeacherPermutations:
    """``sources``: Stage-1 sources read with Stage 1's teacher cache (``cache_dir``). ``max_words`` None: the
    prompt's budget, or its ``auto_cap``. ``skip_queries``: Stage 1's validation queries. ``shuffle``: seeded window
    order even for ranked sources (against copying the input order). ``sampled_windows`` N > 0: N windows a query
    instead of its top ``window_size``, each a judged positive (with ``require_positive``) and ``window_size`` − 1
    other candidates drawn from the first ``pool`` (None: all), shown in first-stage order; identical draws kept
    once."""

    def __init__(
        self,
        sources,
        prompt: ListwisePrompt | dict,
        window_size: int = 20,
        max_words: int | None = None,
        max_queries: int | None = None,
        skip_queries: int = 0,
        require_positive: bool = True,
        seed: int = 0,
        cache_dir: str = ".cache/teacher",
        shard_size: int = 4096,
        shuffle: bool = False,
        sampled_windows: int = 0,
        pool: int | None = None,
    ):
        # one source, or a list
        self.sources = [sources] if hasattr(sources, "load") else list(sources)
        self.prompt = ListwisePrompt.coerce(prompt)
        if window_size < 2:
            raise DataError(f"data.train.window_size must be at least 2, got {window_size}")
        budget = (
            max_words
            if max_words is not None
            else (
                self.prompt.auto_cap if self.prompt.max_words == "auto" else self.prompt.max_words
            )
        )
        if budget is not None and (not isinstance(budget, int) or budget < 1):
            raise DataError(f"data.train.max_words must be a positive integer, got {budget!r}")
        self.window_size, self.max_words, self.max_queries = window_size, budget, max_queries
        self.skip_queries, self.require_positive, self.seed = skip_queries, require_positive, seed
        self.cache_dir, self.shard_size, self.shuffle = cache_dir, shard_size, shuffle
        if not isinstance(sampled_windows, int) or sampled_windows < 0:
            raise DataError(
                f"data.train.sampled_windows must be 0 (the top window) or a positive integer, got {sampled_windows!r}"
            )
        if pool is not None and (not isinstance(pool, int) or pool < window_size):
            raise DataError(
                f"data.train.pool must be null or at least window_size={window_size}, got {pool!r}"
            )
        self.sampled_windows, self.pool = sampled_windows, pool

    def examples(self, teacher) -> list[CotExample]:
        """One example per window (``max_queries``: at most that many); ``teacher``: a
        ``dear.distill.teacher.Teacher`` ordering each window."""
        from dear.distill.teacher import TeacherLogits

        if teacher is None:
            raise DataError(
                "data.train: teacher permutations need a teacher (add `- /teacher: NAME` to the "
                "config's defaults, e.g. teacher=fusion_bm25_minilm)"
            )
        out: list[CotExample] = []
        for source in self.sources:
            queries, docs = source.load()
            logits = TeacherLogits(teacher, source, self.cache_dir, self.shard_size)
            if not logits.ready:  # the whole source, as Stage 1 caches it
                logits.precompute(queries, docs)
            queries = queries[self.skip_queries :]
            scores = logits.load([(q.qid, d) for q in queries for d in q.docids])
            made = skipped = 0
            for q in queries:
                if self.max_queries is not None and len(out) >= self.max_queries:
                    break
                examples = self._examples(q, docs, scores)
                if not examples:
                    skipped += 1
                    continue
                if self.max_queries is not None:
                    examples = examples[: self.max_queries - len(out)]
                out += examples
                made += len(examples)
            log(
                f"teacher permutations: {made} windows from {getattr(source, 'dataset', type(source).__name__)}"
                + (
                    f" ({skipped} queries without a judged positive in a window skipped)"
                    if skipped
                    else ""
                )
            )
        if not out:
            raise DataError(
                "data.train: no training window (no query has a judged positive among its candidates)"
            )
        return out

    def candidates(self, query) -> list[str]:
        """The query's candidates in first-stage order (an unranked source's shuffled with the seed)."""
        if query.ranked:
            return list(query.ranked)
        docids = list(query.docids)
        random.Random(f"{self.seed}:{query.qid}").shuffle(docids)
        return docids

    def window(self, query) -> list[str]:
        """The docids a query's (top) window shows, in prompt order."""
        window = self.candidates(query)[: self.window_size]
        if self.shuffle:
            random.Random(f"{self.seed}:{query.qid}:order").shuffle(window)
        return window

    def windows(self, query) -> list[list[str]]:
        """The docids of each of the query's windows, in prompt order: its top window, or the sampled ones."""
        if not self.sampled_windows:
            return [self.window(query)]
        pool, judged = self.candidates(query)[: self.pool], set(query.positives)
        positives = [d for d in pool if d in judged]
        if self.require_positive and not positives:
            return []
        position = {d: i for i, d in enumerate(pool)}
        out, seen = [], set()
        for j in range(self.sampled_windows):
            rng = random.Random(f"{self.seed}:{query.qid}:{j}")
            first = [rng.choice(positives)] if positives else []
            rest = [d for d in pool if d not in first]
            window = sorted(
                first + rng.sample(rest, min(len(rest), self.window_size - len(first))),
                key=position.__getitem__,
            )
            if frozenset(window) in seen:
                continue
            seen.add(frozenset(window))
            if self.shuffle:
                random.Random(f"{self.seed}:{query.qid}:{j}:order").shuffle(window)
            out.append(window)
        return out

    def target(self, query, window: list[str], scores: dict[tuple[str, str], float]) -> list[int]:
        """Window positions best first: judged positives, then the rest, each by teacher logit."""
        missing = [d for d in window if (query.qid, d) not in scores]
        if missing:
            raise DataError(
                f"query {query.qid!r}: no teacher logit for {missing[:3]} (its ranked list must hold "
                "only the source's positives and negatives)"
            )
        positives = set(query.positives)
        return sorted(
            range(len(window)),
            key=lambda i: (window[i] not in positives, -scores[(query.qid, window[i])], i),
        )

    def _examples(self, query, docs, scores) -> list[CotExample]:
        windows = [
            w
            for w in self.windows(query)
            if len(w) >= 2 and not (self.require_positive and not set(w) & set(query.positives))
        ]
        texts = docs.get_many(sorted({d for w in windows for d in w}))
        out = []
        for window in windows:
            passages = [Candidate(d, texts[d][1], texts[d][0]).full_text for d in window]
            messages = self.prompt.messages(query.text, passages, self.max_words)
            out.append(
                CotExample.from_messages(
                    messages,
                    self.prompt.ranking_line(self.target(query, window, scores)),
                    group=str(query.qid),
                )
            )
        return out
