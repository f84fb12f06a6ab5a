"""Experiment tracking around Lightning's loggers (CSV, W&B): at start every logger gets the resolved config without
secrets, W&B runs the tags ``teacher:``/``student:``/``loss:``/``alpha:``; at the end W&B gets the final metrics
(summary ``final/<benchmark>/<stage>/<metric>``, table ``final/metrics``) and the run is closed, else WandbLogger
would reuse it in the next job of a multirun."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from dear.utils.repro import scrub, scrub_override

# Tag name → config path; W&B tags hold at most 64 characters.
TAG_FIELDS = {
    "teacher": "teacher.model",
    "student": "student.model",
    "loss": "loss.rank",
    "alpha": "alpha.value",
}
MAX_TAG = 64


def run_tags(cfg) -> list[str]:
    """``["teacher:…", "student:…", "loss:pointce", "alpha:0.1"]`` from the config (models by last path part)."""
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
    """``sys.argv`` with secret override values replaced, then restored (Lightning's child processes reuse it)."""
    argv = list(sys.argv)
    sys.argv[:] = [scrub_override(a) for a in argv]
    try:
        yield
    finally:
        sys.argv[:] = argv


def final_table(results: dict[str, dict[str, dict[str, float]]]) -> tuple[list[str], list[list]]:
    """{benchmark: {stage: {metric: value}}} → (columns, rows), one row per benchmark and stage, None where missing."""
    metrics = list(
        dict.fromkeys(m for stages in results.values() for row in stages.values() for m in row)
    )
    rows = [
        [bench, stage, *(row.get(m) for m in metrics)]
        for bench, stages in results.items()
        for stage, row in stages.items()
    ]
    return ["benchmark", "stage", *metrics], rows


def log_final(loggers: list[Logger], results: dict[str, dict[str, dict[str, float]]]) -> None:
    """The final metrics of every benchmark and stage → W&B summary values and table."""
    columns, rows = final_table(results)
    summary = {
        f"final/{bench}/{stage}/{metric}": value
        for bench, stages in results.items()
        for stage, row in stages.items()
        for metric, value in row.items()
    }
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
