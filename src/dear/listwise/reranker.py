"""The listwise reranking stage: a sliding window over each query's candidates, one window step
across all queries per back-end call.

Per query, ``Ranking.meta`` records the parse status (worst window), the justification (the
reasoning of the window that set the top ranks) and, per window, its ranks, status, issues,
raw output and token counts; ``stage_metrics()`` gives the rates of clean / repaired /
fallback queries of the last run.
"""

from __future__ import annotations

from dear.data.contract import Candidate, Ranking
from dear.listwise.parsing import CLEAN, FALLBACK, REPAIRED, STATUSES, Parsed, parse_ranking
from dear.listwise.prompts import ListwisePrompt, fit_window
from dear.listwise.window import window_spans
from dear.utils.progress import log


class ListwiseReranker:
    """``backend``: anything with ``generate`` / ``count_tokens`` / ``prompt_limit`` (see
    ``dear.listwise.backends``); ``prompt``: a :class:`ListwisePrompt` or its config dict."""

    def __init__(self, backend, prompt: ListwisePrompt | dict, window_size: int = 20, step: int = 10):
        self.backend = backend
        self.prompt = prompt if isinstance(prompt, ListwisePrompt) else ListwisePrompt(**prompt)
        window_spans(window_size, window_size, step)  # validates size and step now, not mid-run
        self.window_size, self.step = window_size, step
        self._counts: dict[str, int] = {}

    def rerank(self, rankings: list[Ranking]) -> list[Ranking]:
        orders = [list(r.candidates) for r in rankings]
        plans = [window_spans(len(c), self.window_size, self.step) for c in orders]
        windows: list[list[dict]] = [[] for _ in rankings]
        justifications = [""] * len(rankings)  # the last window processed is the top one
        steps = max((len(p) for p in plans), default=0)
        for j in range(steps):
            active = [q for q, plan in enumerate(plans) if j < len(plan)]
            chats, words = self._chats(rankings, orders, plans, active, j)
            gens = self.backend.generate(chats, chat=self.prompt.chat_template,
                                         desc=f"listwise window {j + 1}/{steps}")
            for q, gen, w in zip(active, gens, words):
                start, end = plans[q][j]
                parsed = parse_ranking(gen.text, end - start, self.prompt.first_id, self.prompt.marker, gen.truncated)
                orders[q][start:end] = [orders[q][start + i] for i in parsed.order]
                windows[q].append(_window_record(start, end, w, parsed, gen))
                justifications[q] = parsed.reasoning
        out = [self._result(*args) for args in zip(rankings, orders, windows, justifications)]
        self._counts = {s: sum(1 for r in out if r.meta.get("parse") == s) for s in STATUSES}
        self._log_rates()
        return out

    def stage_metrics(self) -> dict[str, float]:
        """Fractions of the last run's queries whose worst window parsed clean / repaired / fell back."""
        total = sum(self._counts.values())
        return {f"parse_{s}": self._counts[s] / total for s in STATUSES} if total else {}

    def _chats(self, rankings, orders, plans, active, j) -> tuple[list, list[int]]:
        chats, words = [], []
        for q in active:
            start, end = plans[q][j]
            texts = [c.full_text for c in orders[q][start:end]]
            messages, w = fit_window(self.prompt, rankings[q].query.text, texts,
                                     lambda m: self.backend.count_tokens(m, self.prompt.chat_template),
                                     self.backend.prompt_limit)
            chats.append(messages)
            words.append(w)
        return chats, words

    @staticmethod
    def _result(ranking: Ranking, order: list[Candidate], notes: list[dict], justification: str) -> Ranking:
        """Scores follow the new order (n … 1): listwise output has ranks, not scores."""
        n = len(order)
        meta = dict(ranking.meta)
        if notes:
            worst = max(STATUSES.index(w["parse"]) for w in notes)
            meta.update(parse=STATUSES[worst], justification=justification, windows=notes)
        return Ranking(ranking.query, [c.with_score(n - i) for i, c in enumerate(order)], meta)

    def _log_rates(self) -> None:
        if sum(self._counts.values()):
            log("listwise parse: " + ", ".join(f"{self._counts[s]} {s}" for s in (CLEAN, REPAIRED, FALLBACK)))


def _window_record(start: int, end: int, words: int, parsed: Parsed, gen) -> dict:
    return {"ranks": [start + 1, end], "parse": parsed.status, "issues": list(parsed.issues),
            "words_per_passage": words, "prompt_tokens": gen.prompt_tokens, "output_tokens": gen.completion_tokens,
            "output": gen.text}
