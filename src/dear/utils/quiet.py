"""Quiet logs: the one place that drops what libraries print about correct behaviour, each by exact logger and text
(new warnings still show):
- transformers' LOAD REPORT listing only a new classification head MISSING from a headless checkpoint (the student
  trains it; a classifier checkpoint lacking its head still reports);
- bm25s' DEBUG logger at import; bitsandbytes' CPU-backend notice (4-bit is for GPUs here);
- Lightning's litlogger "Tip" and its ``LeafSpec`` deprecation; peft's own ``is_gradient_checkpointing`` deprecation."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
HEAD_PREFIXES = ("classifier.", "score.")


class FreshHeadReport(logging.Filter):
    """Drops a LOAD REPORT whose only rows are the classification head MISSING from a headless checkpoint."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_fresh_head_report(_ANSI.sub("", record.getMessage()))


def is_fresh_head_report(text: str) -> bool:
    """True for a load report (colours stripped) saying only that a headless checkpoint's new head is missing."""
    first, _, rest = text.partition("\n")
    source = first.partition(" LOAD REPORT from: ")[2].strip()
    if not source:
        return False
    rows = [
        [cell.strip() for cell in line.split("|")]
        for line in rest.split("\n\n")[0].splitlines()[2:]
    ]
    if not rows or any(
        len(r) < 2 or r[1] != "MISSING" or not r[0].startswith(HEAD_PREFIXES) for r in rows
    ):
        return False
    return not _has_classifier_head(Path(source))


def _has_classifier_head(checkpoint: Path) -> bool:
    """Whether the checkpoint was saved as a sequence classifier (True when unknown: keep the report)."""
    config = checkpoint / "config.json"
    if not config.is_file():
        return True
    architectures = json.loads(config.read_text()).get("architectures") or []
    return any(a.endswith("ForSequenceClassification") for a in architectures)


class _Drop(logging.Filter):
    """Drops records below ``level`` or whose message contains ``text``."""

    def __init__(self, text: str | None = None, level: int = logging.NOTSET):
        super().__init__()
        self.text, self.level = text, level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return False
        return self.text is None or self.text not in record.getMessage()


def quiet_known_noise() -> None:
    """Install the filters above (idempotent: a filter is added once per logger)."""
    filters = {
        "transformers.modeling_utils": FreshHeadReport(),
        "bm25s": _Drop(level=logging.INFO),
        "bitsandbytes.backends.cpu.ops": _Drop("kernels-community"),
        **{
            f"lightning.{part}.utilities.rank_zero": _Drop("💡 Tip: For seamless cloud logging")
            for part in ("pytorch", "fabric")
        },
    }
    for name, new in filters.items():
        logger = logging.getLogger(name)
        if not any(type(f) is type(new) for f in logger.filters):
            logger.addFilter(new)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings(
        "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
