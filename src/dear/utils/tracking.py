"""Experiment tracking around Lightning's loggers (CSV, W&B).

When a run starts: every logger gets the resolved config with secrets removed; a W&B run also
gets the tags ``teacher:`` / ``student:`` / ``loss:`` / ``alpha:``. When it ends: W&B gets the final
metrics as summary values ``final/<benchmark>/<stage>/<metric>`` and a table ``final/metrics``,
and the run is closed — Lightning's WandbLogger would otherwise reuse the still-open run in the
next job of a multirun in the same process.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from dear.utils.repro import scrub, scrub_override

# Tag name → config path; W&B tags hold at most 64 characters.
TAG_FIELDS = {"teacher": "teacher.model", "student": "student.model", "loss": "loss.rank", "alpha": "alpha.value"}
MAX_TAG = 64


def run_tags(cfg) -> list[str]:
    """``["teacher:llama2-13b-rankllama-teacher", "student:Llama-3.1-8B", "loss:pointce", "alpha:0.1"]``
    for the fields the config has (model ids and paths cut to their last part)."""
    tags = []
    for name, path in TAG_FIELDS.items():
        value = OmegaConf.select(cfg, path, default=None)
        if value is not None:
            tags.append(f"{name}:{str(value).rstrip('/').rsplit('/', 1)[-1]}"[:MAX_TAG])
    return tags


def start(loggers: list[Logger], cfg) -> None:
    """Log the resolved config (secrets removed) to every logger and tag W&B runs."""
    params = scrub(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    for logger in loggers:
        if isinstance(logger, WandbLogger) and rank_zero_only.rank == 0:
            with _scrubbed_argv():  # W&B records the command line when the run starts
                run = logger.experiment
            run.tags = tuple(dict.fromkeys([*(run.tags or ()), *run_tags(cfg)]))
        logger.log_hyperparams(params)


@contextmanager
def _scrubbed_argv():
    """``sys.argv`` with secret override values replaced, restored afterwards (child processes
    that Lightning launches reuse the real one)."""
    argv = list(sys.argv)
    sys.argv[:] = [scrub_override(a) for a in argv]
    try:
        yield
    finally:
        sys.argv[:] = argv


def final_table(results: dict[str, dict[str, dict[str, float]]]) -> tuple[list[str], list[list]]:
    """{benchmark: {stage: {metric: value}}} → (columns, rows): one row per benchmark and stage,
    ``None`` where a stage lacks a metric."""
    metrics = list(dict.fromkeys(m for stages in results.values() for row in stages.values() for m in row))
    rows = [[bench, stage, *(row.get(m) for m in metrics)]
            for bench, stages in results.items() for stage, row in stages.items()]
    return ["benchmark", "stage", *metrics], rows


def log_final(loggers: list[Logger], results: dict[str, dict[str, dict[str, float]]]) -> None:
    """The final metrics of every benchmark and stage → W&B summary values and table."""
    columns, rows = final_table(results)
    summary = {f"final/{bench}/{stage}/{metric}": value for bench, stages in results.items()
               for stage, row in stages.items() for metric, value in row.items()}
    for logger in loggers:
        if isinstance(logger, WandbLogger) and rank_zero_only.rank == 0:
            logger.experiment.summary.update(summary)
            logger.log_table("final/metrics", columns=columns, data=rows)


def finish(loggers: list[Logger]) -> None:
    """Close this job's W&B run (a no-op without a WandbLogger or an open run)."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()
