"""What every entry point does with our own errors: one line on stderr, exit status 2 (docs/reliability.md).

    @hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
    @entry_point(results=True)
    def main(cfg): ...

    if __name__ == "__main__":
        run(main)

Ours are ``DataError``, config errors (OmegaConf's, Hydra's via ``run``) and ``OSError`` naming a file; anything else
keeps its traceback (``HYDRA_FULL_ERROR=1``: ours too). ``@entry_point`` also masks secrets in the job's files and
messages, with ``results=True`` refuses a finished run's directory and marks a good run finished, and in a multirun
goes on after a failed job (the sweep exits 2).
"""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from dear.errors import DataError
from dear.utils.masking import mask, save_hydra_job

EXIT_USER_ERROR = 2
_VERBOSE_ENV = "DEAR_FULL_ERROR"  # the user's HYDRA_FULL_ERROR, kept while ``run`` sets Hydra's


class JobFailed(DataError):
    """A multirun job's error, already printed: Hydra marks the job failed and goes on."""


def our_error(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain that is ours (DataError, else config error, else OSError naming a file), or None."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for kinds in (DataError, (OmegaConfBaseException, HydraException)):
        found = next((e for e in chain if isinstance(e, kinds)), None)
        if found is not None:
            return found
    return next((e for e in chain if isinstance(e, OSError) and e.filename), None)


def one_line(exc: BaseException, secrets=frozenset()) -> str:
    """``exc``'s message on one line, secrets masked; config errors get the traceback hint."""
    lines = [
        line.strip()
        for line in str(exc).split("Config search path:")[0].splitlines()
        if line.strip()
    ]
    text = "".join(line + (" " if line.endswith((":", ".")) else "; ") for line in lines).rstrip(
        "; "
    )
    text = text or type(exc).__name__
    hint = (
        "" if isinstance(exc, (DataError, OSError)) else " (HYDRA_FULL_ERROR=1 for the traceback)"
    )
    return mask(text, secrets) + hint


def verbose_errors() -> bool:
    """Whether the user asked for tracebacks (``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get(_VERBOSE_ENV, os.environ.get("HYDRA_FULL_ERROR")) == "1"


@contextmanager
def user_errors(verbose: bool = False, secrets=frozenset(), job: str | None = None):
    """Our own errors end the process with one line (unless ``verbose``); a multirun ``job``'s raise ``JobFailed``."""
    try:
        yield
    except Exception as e:
        ours = our_error(e)
        if ours is None or verbose:
            raise
        message = str(ours) if isinstance(ours, JobFailed) else one_line(ours, secrets)
        if job:
            message = mask(f"[{job}] {message}", secrets)
        print(f"error: {message}", file=sys.stderr, flush=True)
        if job:
            raise JobFailed(message) from None
        raise SystemExit(EXIT_USER_ERROR) from None


def entry_point(task=None, *, results: bool = False):
    """Wrap a Hydra task function (see the module docstring); ``results``: its results must never be changed later."""
    if task is None:
        return functools.partial(entry_point, results=results)

    @functools.wraps(task)
    def job(cfg):
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from dear.utils.masking import job_secrets
        from dear.utils.repro import mark_finished, refuse_finished, scrub_override

        hydra_cfg = HydraConfig.get()
        secrets = job_secrets(cfg, hydra_cfg)
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        overrides = " ".join(scrub_override(o) for o in hydra_cfg.overrides.task)
        name = f"#{hydra_cfg.job.num} {overrides}".strip() if multirun else None
        run_dir = Path(hydra_cfg.runtime.output_dir)
        with user_errors(verbose_errors(), secrets, name):
            if results:
                refuse_finished(run_dir)
            save_hydra_job(cfg, hydra_cfg, secrets)
            value = task(cfg)
            if results:
                mark_finished(run_dir)
            return value

    return job


def run(main) -> None:
    """Call a ``@hydra.main`` function so Hydra's own errors are one line too and a sweep with failed jobs exits 2."""
    os.environ.setdefault(_VERBOSE_ENV, "1" if os.environ.get("HYDRA_FULL_ERROR") == "1" else "0")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its multi-line report
    with user_errors(verbose_errors()):
        main()
