"""What every entry point does with our own errors: one line on stderr, exit status 2.

    @hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
    @entry_point
    def main(cfg): ...

Our own errors are ``DataError`` (bad input: the message names file:line or the config field)
and config errors (OmegaConf's, Hydra's ``instantiate``); anything else is a bug and keeps its
traceback. ``HYDRA_FULL_ERROR=1`` (or ``--verbose`` for ``python -m dear.report``) shows the
traceback for ours too. ``@entry_point`` also keeps secrets out of the job's files and messages
(``dear.utils.masking``). It sits under ``@hydra.main``: Hydra would print a traceback for any
exception its task function raises, so the message is printed here and the process exits.
"""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager

from dear.errors import DataError
from dear.utils.masking import mask, mask_hydra_job

EXIT_USER_ERROR = 2


def our_error(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain (``raise … from``, or raised while handling) that is ours:
    a DataError first (it names the place), else a config error; None for anything else."""
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
    return None


def one_line(exc: BaseException, secrets=frozenset()) -> str:
    """``exc``'s message on one line, secrets masked; config errors get the traceback hint."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    hint = "" if isinstance(exc, DataError) else " (HYDRA_FULL_ERROR=1 for the traceback)"
    return mask(text, secrets) + hint


@contextmanager
def user_errors(verbose: bool = False, secrets=frozenset()):
    """Inside the block, our own errors end the process with one line (unless ``verbose``)."""
    try:
        yield
    except Exception as e:
        ours = our_error(e)
        if ours is None or verbose:
            raise
        print(f"error: {one_line(ours, secrets)}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None


def entry_point(task):
    """Wrap a Hydra task function: secrets masked in what Hydra wrote, our errors as one line."""

    @functools.wraps(task)
    def run(cfg):
        from hydra.core.hydra_config import HydraConfig

        secrets = mask_hydra_job(cfg, HydraConfig.get())
        with user_errors(os.environ.get("HYDRA_FULL_ERROR") == "1", secrets):
            return task(cfg)

    return run
