"""The listwise reranking stage: a sliding window over each query's top-k, one window step across all queries per
back-end call; with ``cache_dir`` each window's generation is cached so a killed run resumes.

``Ranking.meta`` records per query the parse status (worst window), the justification (reasoning of the window that
set the top ranks) and per-window details; ``stage_metrics()`` gives the last run's clean / repaired / fallback rates.

``scoring="first_id"`` generates nothing: each window is ranked by the log-probability of each id as the answer's
first (FIRST, Reddy et al., EMNLP 2024, single-token decoding; here the whole id, ``[12]`` being several tokens for
most tokenizers), the ids scored under the answer's own head (``ListwisePrompt.ranking_line``): one prompt pass per
window instead of a decoded ranking, and a ranking that reads only what the model would write first.
"""

from __future__ import annotations

import math

from dear.data.contract import Candidate, Ranking
from dear.errors import ConfigError
from dear.listwise.backends.base import STOP, Generation
from dear.listwise.cache import GenerationCache
from dear.listwise.constrained import PermutationGrammar
from dear.listwise.parsing import CLEAN, FALLBACK, REPAIRED, STATUSES, Parsed, parse_ranking
from dear.listwise.prompts import ListwisePrompt, fit_window
from dear.listwise.window import window_spans
from dear.utils.progress import log

SCORINGS = ("generate", "first_id")


class ListwiseReranker:
    """``backend``: see ``dear.listwise.backends``; ``prompt``: a :class:`ListwisePrompt` or its config; ``top_k``:
    the candidates windows cover (None: all), the rest keep their order. ``constrained``: decode each answer under
    the window's permutation grammar (``dear.listwise.constrained``: the prompt's ranking line, every id once), on
    back ends that take one (transformers). ``scoring``: ``generate`` (the answer decoded and parsed) or ``first_id``
    (ids ranked by their log-probability as the answer's first: see the module docstring; transformers)."""

    def __init__(
        self,
        backend,
        prompt: ListwisePrompt | dict,
        window_size: int = 20,
        step: int = 10,
        top_k: int | None = None,
        cache_dir: str | None = None,
        constrained: bool = False,
        scoring: str = "generate",
    ):
        self.backend = backend
        self.prompt = ListwisePrompt.coerce(prompt)
        for field, value in (("window_size", window_size), ("step", step), ("top_k", top_k)):
            if not (value is None and field == "top_k") and (
                isinstance(value, bool) or not isinstance(value, int)
            ):
                raise ConfigError(f"listwise.{field}: expected an integer, found {value!r}")
        try:
            window_spans(window_size, window_size, step)  # validates size and step now, not mid-run
        except ValueError as e:
            raise ConfigError(f"listwise.window_size / listwise.step: {e}") from None
        self.window_size, self.step, self.top_k = window_size, step, top_k
        if not isinstance(constrained, bool):
            raise ConfigError(
                f"listwise.constrained: expected true or false, found {constrained!r}"
            )
        if constrained and not getattr(backend, "constrains", False):
            raise ConfigError(
                f"listwise.constrained: the {type(backend).__name__} back end cannot constrain "
                "decoding; use the transformers back end or constrained=false"
            )
        if scoring not in SCORINGS:
            raise ConfigError(
                f"listwise.scoring: expected one of {', '.join(SCORINGS)}, found {scoring!r}"
            )
        if scoring == "first_id" and not getattr(backend, "scores_answers", False):
            raise ConfigError(
                f"listwise.scoring=first_id: the {type(backend).__name__} back end cannot score "
                "answers; use the transformers back end or scoring=generate"
            )
        if scoring == "first_id" and constrained:
            raise ConfigError(
                "listwise.constrained: scoring=first_id decodes no answer to constrain; "
                "set constrained=false or scoring=generate"
            )
        self.constrained, self.scoring = constrained, scoring
        self.cache = GenerationCache(cache_dir, self._identity()) if cache_dir else None
        self._counts: dict[str, int] = {}
        self.reused = 0  # windows of the last run read back from the cache

    def _identity(self) -> dict:
        """What decides a window's answer besides its prompt: the back end's identity, the scoring rule when it is
        not generation, and the grammar when constrained (a scored or constrained answer is another answer: never
        one cache entry for two)."""
        identity = dict(self.backend.identity)
        if self.scoring != "generate":  # the ids' log-probabilities under the answer's head
            identity["scoring"] = {
                "rule": self.scoring,
                "marker": self.prompt.marker,
                "first_id": self.prompt.first_id,
            }
        if self.constrained:
            identity["constraint"] = {
                "grammar": "permutation",
                "marker": self.prompt.marker,
                "first_id": self.prompt.first_id,
            }
        return identity

    def rerank(self, rankings: list[Ranking]) -> list[Ranking]:
        depth = max((len(r.candidates) for r in rankings), default=0)
        if self.top_k is not None and 0 < depth < self.top_k:
            log(
                f"listwise top_k={self.top_k}, but queries arrive with at most {depth} candidates: set "
                f"pipeline.stages.listwise.depth={self.top_k} to rerank the top {self.top_k}"
            )
        heads = [r.candidates[: self.top_k] for r in rankings]
        tails = [r.candidates[len(h) :] for r, h in zip(rankings, heads)]
        orders = [list(h) for h in heads]
        self.reused = 0
        plans = [window_spans(len(c), self.window_size, self.step) for c in orders]
        windows: list[list[dict]] = [[] for _ in rankings]
        justifications = [""] * len(rankings)  # the last window processed is the top one
        steps = max((len(p) for p in plans), default=0)
        for j in range(steps):
            active = [q for q, plan in enumerate(plans) if j < len(plan)]
            chats, words = self._chats(rankings, orders, plans, active, j)
            sizes = [plans[q][j][1] - plans[q][j][0] for q in active]
            gens = self._generate(chats, f"listwise window {j + 1}/{steps}", sizes)
            for q, gen, w in zip(active, gens, words):
                start, end = plans[q][j]
                parsed = parse_ranking(
                    gen.text, end - start, self.prompt.first_id, self.prompt.marker, gen.truncated
                )
                orders[q][start:end] = [orders[q][start + i] for i in parsed.order]
                windows[q].append(_window_record(start, end, w, parsed, gen))
                justifications[q] = parsed.reasoning
        out = [
            self._result(r, order + tail, notes, why)
            for r, order, tail, notes, why in zip(rankings, orders, tails, windows, justifications)
        ]
        self._counts = {s: sum(1 for r in out if r.meta.get("parse") == s) for s in STATUSES}
        self._log_rates()
        if self.cache is not None:
            log(
                f"listwise cache: {self.reused} of {sum(len(w) for w in windows)} windows reused from {self.cache.dir}"
            )
        return out

    def _generate(self, chats: list, desc: str, sizes: list[int]) -> list:
        """Generations for ``chats`` (windows of ``sizes`` passages); with a cache, only for missing windows, each
        stored as soon as it is reported."""
        chat = self.prompt.chat_template
        grammars = (
            [PermutationGrammar(n, self.prompt.first_id, self.prompt.marker) for n in sizes]
            if self.constrained
            else None
        )

        def fresh(indices: list[int], on_done=None) -> list[Generation]:
            subset = [chats[i] for i in indices]
            if self.scoring == "first_id":
                return self._scored(subset, [sizes[i] for i in indices], desc, on_done)
            # only a cached run passes on_done, only a constrained one constraints
            extra = {} if on_done is None else {"on_done": on_done}
            if grammars is not None:
                extra["constraints"] = [grammars[i] for i in indices]
            return self.backend.generate(subset, chat=chat, desc=desc, **extra)

        if self.cache is None:
            return fresh(list(range(len(chats))))
        keys = [self.cache.key(m, chat) for m in chats]
        gens = [self.cache.get(k) for k in keys]
        todo = [i for i, g in enumerate(gens) if g is None]
        self.reused += len(chats) - len(todo)
        if todo:
            made = fresh(todo, lambda j, gen: self.cache.put(keys[todo[j]], gen))
            for i, gen in zip(todo, made):
                gens[i] = gen
        return gens

    def _scored(self, chats: list, sizes: list[int], desc: str, on_done=None) -> list[Generation]:
        """``scoring=first_id``: per window, each id's log-probability as the answer's first, and the ranking they
        give (highest first, ties in the window's order) as the window's answer."""
        chat = self.prompt.chat_template
        answers = [[self.prompt.ranking_line([i]) for i in range(n)] for n in sizes]

        gens: list[Generation | None] = [None] * len(chats)

        # each window's answer, built as it is scored
        def done(i: int, scores: list[float]) -> None:
            order = sorted(range(len(scores)), key=lambda j: -scores[j])  # stable
            tokens = self.backend.count_tokens(chats[i], chat)
            gens[i] = Generation(self.prompt.ranking_line(order), STOP, tokens, 0, tuple(scores))
            if on_done is not None:
                on_done(i, gens[i])

        self.backend.score_answers(
            chats,
            answers,
            chat=chat,
            desc=desc.replace("listwise", "first-id scoring"),
            on_done=done,
        )
        return gens

    def stage_metrics(self) -> dict[str, float]:
        """Fractions of the last run's queries whose worst window parsed clean / repaired / fell back."""
        total = sum(self._counts.values())
        return {f"parse_{s}": self._counts[s] / total for s in STATUSES} if total else {}

    def _chats(self, rankings, orders, plans, active, j) -> tuple[list, list[int]]:
        chats, words = [], []
        for q in active:
            start, end = plans[q][j]
            texts = [c.full_text for c in orders[q][start:end]]
            messages, w = fit_window(
                self.prompt,
                rankings[q].query.text,
                texts,
                lambda m: self.backend.count_tokens(m, self.prompt.chat_template),
                self.backend.prompt_limit,
                getattr(self.backend, "passage_tokens", None),
            )
            chats.append(messages)
            words.append(w)
        return chats, words

    @staticmethod
    def _result(
        ranking: Ranking, order: list[Candidate], notes: list[dict], justification: str
    ) -> Ranking:
        """Scores follow the new order (n … 1): listwise output has ranks, not scores."""
        n = len(order)
        meta = dict(ranking.meta)
        if notes:
            worst = max(STATUSES.index(w["parse"]) for w in notes)
            meta.update(parse=STATUSES[worst], justification=justification, windows=notes)
        return Ranking(ranking.query, [c.with_score(n - i) for i, c in enumerate(order)], meta)

    def _log_rates(self) -> None:
        if sum(self._counts.values()):
            log(
                "listwise parse: "
                + ", ".join(f"{self._counts[s]} {s}" for s in (CLEAN, REPAIRED, FALLBACK))
            )


def _window_record(start: int, end: int, words: int, parsed: Parsed, gen) -> dict:
    return {
        "ranks": [start + 1, end],
        "parse": parsed.status,
        "issues": list(parsed.issues),
        "words_per_passage": words,
        "prompt_tokens": gen.prompt_tokens,
        "output_tokens": gen.completion_tokens,
        "output": gen.text,
        **({} if gen.scores is None else {"first_id_probs": _first_id_probs(gen.scores)}),
    }


def _first_id_probs(scores: tuple[float, ...]) -> list[float]:
    """The answer's log-probabilities with each id → the probability of each id being written first, given that
    one of the window's ids is (window order, 4 decimals)."""
    top = max(scores)
    weights = [math.exp(x - top) for x in scores]
    total = sum(weights)
    return [round(w / total, 4) for w in weights]
