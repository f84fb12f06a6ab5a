"""Candidates → zero or more reranking stages → a TREC run, metrics and a table per stage.

Writes into ``out_dir`` (docs/evaluation.md):
  runs/<stage>.trec        each stage's ranking, order-reproducing under trec_eval (Ranking.eval_scores)
  metrics.json             {"<stage>": {"nDCG@10": ..., "sec_per_query": ..., "significance": tests vs first_stage},
                           "warnings": [...] if any}; written last: its presence means the run is complete
  per_query.json           {"<stage>": {"<qid>": {"nDCG@10": ...}}}, also at the end
  *.partial.json           both, after each stage while running; removed at the end
  <stage>.details.jsonl    per-query notes of a stage (e.g. listwise justifications)
  results.md               the Markdown table that is also printed
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from dear.data.benchmarks import Benchmark, Loaded
from dear.data.contract import Ranking, Run
from dear.data.trec import write_run
from dear.errors import DataError, positive_depth
from dear.eval.judges import build_judge
from dear.eval.significance import note, significant_cells, stage_significance, with_significance
from dear.eval.tables import markdown_table
from dear.utils.io import atomic_write_json, atomic_write_text
from dear.utils.progress import log

FIRST_STAGE = "first_stage"
METRICS, PER_QUERY = "metrics", "per_query"
WARNINGS = "warnings"  # the one key of metrics.json that is not a stage


@dataclass
class Stage:
    """A reranker over the top ``depth`` of the previous stage (or of ``source``); the tail keeps its order."""

    name: str
    reranker: object  # anything with rerank(list[Ranking]) -> list[Ranking]
    depth: int = 100
    source: str | None = None

    def __post_init__(self):
        positive_depth(self.depth, f"stage {self.name!r} depth")


def stages_from_config(stages, build, field: str = "pipeline.stages") -> list[Stage]:
    """``{name: {reranker, depth, source?} | null}`` → stages, built by ``build`` once every depth is checked."""
    stages = {name: s for name, s in stages.items() if s is not None}  # null: a stage switched off
    check_depths(stages, field)  # before any reranker loads a model
    return [Stage(name, build(s.reranker), s.depth, s.get("source")) for name, s in stages.items()]


def check_depths(stages, field: str = "pipeline.stages") -> None:
    """Every stage's depth ≥ 1, else a ConfigError naming ``<field>.<stage>.depth``."""
    for name, s in stages.items():
        if s is not None:
            positive_depth(s.depth, f"{field}.{name}.depth")


def rerank_stage(stage: Stage, run: Run) -> tuple[Run, float]:
    """Apply one stage to every query at once (rerankers batch across queries). → (run, seconds)."""
    _check_texts(stage.name, run)
    heads = [r.head(stage.depth) for r in run.values()]
    start = time.perf_counter()
    reranked = stage.reranker.rerank(heads)
    seconds = time.perf_counter() - start
    out = {}
    for old, new in zip(run.values(), reranked):
        if sorted(c.docid for c in new.candidates) != sorted(
            c.docid for c in old.candidates[: stage.depth]
        ):
            raise RuntimeError(
                f"stage {stage.name!r} changed the candidate set of query {old.qid!r}"
            )
        out[old.qid] = Ranking(old.query, new.candidates + old.candidates[stage.depth :], new.meta)
    return out, seconds


def timed_load(benchmark: Benchmark) -> tuple[Loaded, float]:
    """``benchmark.load()`` and its seconds (the first stage's time)."""
    start = time.perf_counter()
    return benchmark.load(), time.perf_counter() - start


def run_pipeline(
    benchmark: Benchmark,
    stages: list[Stage],
    out_dir: str | Path,
    loaded: tuple[Loaded, float] | None = None,
) -> dict:
    """Run and evaluate every stage (on ``loaded`` if given) → ``{"metrics", "table", "per_query", "warnings"}``."""
    out_dir = Path(out_dir)
    loaded, load_seconds = loaded or timed_load(benchmark)
    # a rerun into the same dir is not complete until it ends
    _final(out_dir, METRICS).unlink(missing_ok=True)
    run, judge = loaded.run, build_judge(loaded.judgments)
    n = max(len(run), 1)
    log(
        f"{benchmark.name}: {len(run)} judged queries, {sum(len(r.candidates) for r in run.values())} candidates"
    )
    warnings = judge.warnings(run)
    for warning in warnings:
        log(f"WARNING {benchmark.name}: {warning}")
    metrics, per_query = {}, {}

    def record(name: str, stage_run: Run, seconds: float, extra: dict | None = None) -> None:
        aggregate, per_q = judge.evaluate(stage_run)
        metrics[name] = {**aggregate, **(extra or {}), "sec_per_query": seconds / n}
        per_query[name] = per_q
        write_run(out_dir / "runs" / f"{name}.trec", stage_run, tag=name)
        details = [{"qid": q, **r.meta} for q, r in stage_run.items() if r.meta]
        if details:
            atomic_write_text(
                out_dir / f"{name}.details.jsonl", "".join(json.dumps(d) + "\n" for d in details)
            )
        # nothing computed is lost
        atomic_write_json(_partial(out_dir, METRICS), _with_warnings(metrics, warnings))
        atomic_write_json(_partial(out_dir, PER_QUERY), per_query)

    record(FIRST_STAGE, run, load_seconds)
    runs = {FIRST_STAGE: run}
    for stage in stages:
        if stage.source is not None and stage.source not in runs:
            raise DataError(
                f"stage {stage.name!r}: source {stage.source!r} is not an earlier stage ({list(runs)})"
            )
        log(f"stage {stage.name}: reranking the top {stage.depth} of {len(run)} queries")
        run, seconds = rerank_stage(stage, runs[stage.source] if stage.source else run)
        runs[stage.name] = run
        extra = stage.reranker.stage_metrics() if hasattr(stage.reranker, "stage_metrics") else None
        record(stage.name, run, seconds, extra)
    significance = stage_significance(per_query, judge.names, FIRST_STAGE)
    table = markdown_table(metrics, judge.names, significant_cells(significance))
    if significance:
        table += (
            f"\n{note(FIRST_STAGE, f'the {len(significance)} reranking stage(s), per metric')}\n"
        )
    atomic_write_text(out_dir / "results.md", f"## {benchmark.name}\n\n{table}")
    atomic_write_json(_final(out_dir, PER_QUERY), per_query)
    final = _with_warnings(with_significance(metrics, significance), warnings)
    atomic_write_json(_final(out_dir, METRICS), final)  # last: the completion marker
    for name in (METRICS, PER_QUERY):
        _partial(out_dir, name).unlink(missing_ok=True)
    return {
        "metrics": metrics,
        "table": table,
        "per_query": per_query,
        "warnings": warnings,
        "significance": significance,
    }


def _final(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name}.json"


def _partial(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name}.partial.json"


def _with_warnings(metrics: dict, warnings: list[str]) -> dict:
    """metrics.json's content: the stages, then ``warnings`` when there are any."""
    return {**metrics, WARNINGS: warnings} if warnings else metrics


def _check_texts(stage: str, run: Run) -> None:
    for ranking in run.values():
        if not ranking.query.text:
            raise DataError(
                f"stage {stage!r} needs query texts: set benchmark.queries (TSV file or ir_datasets id)"
            )
        if any(not (c.text or c.title) for c in ranking.candidates):
            raise DataError(
                f"stage {stage!r} needs document texts: set benchmark.docs (TSV file or ir_datasets id)"
            )
