"""Judges turn a run into metrics: per query and averaged over the judged queries."""

from __future__ import annotations

from dear.data.benchmarks import Answers, Qrels
from dear.data.contract import Run
from dear.errors import ConfigError
from dear.eval.answers import has_answer


def build_judge(judgments: Qrels | Answers) -> RelevanceJudge | AnswerJudge:
    """The judge that scores runs against a benchmark's ``judgments``."""
    if isinstance(judgments, Qrels):
        return RelevanceJudge(judgments.qrels, judgments.measures)
    if isinstance(judgments, Answers):
        return AnswerJudge(judgments.answers, judgments.ks)
    raise TypeError(f"no judge for {type(judgments).__name__}")


class RelevanceJudge:
    """Graded-qrels metrics through ir_measures (nDCG@k, RR, R@k, ... any ir_measures name)."""

    def __init__(self, qrels: dict[str, dict[str, int]], measures: list[str]):

        self.qrels = qrels
        self.names = list(measures)
        self.measures = [_parse_measure(m) for m in measures]

    @property
    def qids(self) -> set[str]:
        return set(self.qrels)

    def evaluate(self, run: Run) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        import ir_measures

        scored = {qid: r.eval_scores() for qid, r in run.items() if qid in self.qrels}
        per_query: dict[str, dict[str, float]] = {qid: {} for qid in scored}
        by_measure = {m: n for m, n in zip(self.measures, self.names)}
        for metric in ir_measures.iter_calc(self.measures, self.qrels, scored):
            per_query[metric.query_id][by_measure[metric.measure]] = float(metric.value)
        # Queries whose candidates miss every judged doc get 0, as trec_eval -c counts them.
        for qid in per_query:
            for name in self.names:
                per_query[qid].setdefault(name, 0.0)
        return _mean(per_query, self.names), per_query

    def warnings(self, run: Run) -> list[str]:
        """Judged queries none of whose candidates is judged (usually docids of another collection)."""
        blind = sorted(
            q
            for q, r in run.items()
            if q in self.qrels and not any(c.docid in self.qrels[q] for c in r.candidates)
        )
        if not blind:
            return []
        return [
            f"{len(blind)} of {len(run)} judged queries have no judged document among their candidates "
            f"(scored 0), e.g. {blind[:5]}: do the run's docids match the qrels'?"
        ]


def _parse_measure(name: str):
    """An ir_measures measure, or a ConfigError that lists the valid names."""
    import ir_measures

    try:
        return ir_measures.parse_measure(name)
    except (NameError, ValueError, TypeError) as e:
        valid = ", ".join(sorted(ir_measures.measures.registry, key=str.lower))
        raise ConfigError(
            f"metrics: unknown or malformed metric {name!r} ({e}); expected an ir_measures name "
            f"such as nDCG@10, RR@10, R@100 — valid measures: {valid}"
        ) from None


class AnswerJudge:
    """Top-k answer accuracy (DPR): a query counts at k if any of its top-k passages has an answer."""

    def __init__(self, answers: dict[str, list[str]], ks: list[int]):
        self.answers = answers
        self.ks = list(ks)
        self.names = [f"Top-{k}" for k in self.ks]
        self._hits: dict[
            tuple[str, str], bool
        ] = {}  # (qid, docid) → has answer; reranking only permutes

    @property
    def qids(self) -> set[str]:
        return set(self.answers)

    def evaluate(self, run: Run) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        per_query = {}
        for qid, ranking in run.items():
            if qid not in self.answers:
                continue
            flags = [self._has(qid, c.docid, c.full_text) for c in ranking.candidates]
            per_query[qid] = {name: float(any(flags[:k])) for name, k in zip(self.names, self.ks)}
        return _mean(per_query, self.names), per_query

    def warnings(self, run: Run) -> list[str]:
        """Answers are matched in the text: no candidate is ever unjudged."""
        return []

    def _has(self, qid: str, docid: str, text: str) -> bool:
        key = (qid, docid)
        if key not in self._hits:
            self._hits[key] = has_answer(self.answers[qid], text)
        return self._hits[key]


def _mean(per_query: dict[str, dict[str, float]], names: list[str]) -> dict[str, float]:
    n = max(len(per_query), 1)
    return {name: sum(q[name] for q in per_query.values()) / n for name in names}
