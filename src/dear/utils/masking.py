"""Secrets kept out of everything a run writes: ``.hydra/*.yaml``, log records, error messages (``repro.json`` and
logger configs use ``dear.utils.repro.scrub``).

A secret is what ``scrub`` hides (by key name, key-shaped value, URL password); each literal from the config or
overrides is masked wherever it appears, those shorter than ``MIN_LITERAL`` only by key in ``config.yaml`` /
``overrides.yaml``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from hydra.types import RunMode
from omegaconf import OmegaConf

from dear.utils.io import atomic_write_text
from dear.utils.ranks import rank_world
from dear.utils.repro import _URL_PASSWORD, REDACTED, SECRET_SHAPE, scrub, scrub_override

HYDRA_DIR = ".hydra"  # where Hydra keeps a job's config (its default ``hydra.output_subdir``)

MIN_LITERAL = 6
_TOKEN_ANYWHERE = re.compile(rf"(?<![A-Za-z0-9]){SECRET_SHAPE}")


def secrets_in(obj, key: str = "") -> set[str]:
    """Every literal secret inside plain containers (dicts, lists, strings)."""
    if isinstance(obj, dict):
        return set().union(*(secrets_in(v, str(k)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return set().union(*(secrets_in(v, key) for v in obj))
    if not isinstance(obj, str) or not obj:
        return set()
    found = {m.group(2) for m in _URL_PASSWORD.finditer(obj)} | set(_TOKEN_ANYWHERE.findall(obj))
    if scrub(obj, key) == REDACTED:
        found.add(obj)
    return found


def override_secrets(overrides: list[str]) -> set[str]:
    """Secrets in ``key.path=value`` overrides (judged by the last key segment, as ``scrub_override``)."""
    found = set()
    for text in overrides:
        key, sep, value = text.partition("=")
        found |= secrets_in(value, key.rsplit(".", 1)[-1].lstrip("+~") if sep else "")
    return found


def mask(text: str, secrets: set[str] | frozenset[str] = frozenset()) -> str:
    """``text`` with every known secret (longest first) and anything shaped like one replaced by ``***``."""
    for secret in sorted((s for s in secrets if len(s) >= MIN_LITERAL), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _TOKEN_ANYWHERE.sub(REDACTED, text)
    return _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)


class MaskSecrets(logging.Filter):
    """A log filter that masks secrets in each record's final message (the job's ``.log`` file)."""

    def __init__(self, secrets: set[str]):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask(record.getMessage(), self.secrets), ()
        return True


def job_secrets(cfg, hydra_cfg) -> set[str]:
    """The secrets of the running Hydra job (``cfg``: its config, ``hydra_cfg``: ``HydraConfig.get()``)."""
    container = OmegaConf.to_container(cfg, resolve=False)  # as Hydra saves it: interpolations kept
    return secrets_in(container) | override_secrets(list(hydra_cfg.overrides.task))


def save_hydra_job(cfg, hydra_cfg, secrets: set[str]) -> None:
    """Hydra's ``.hydra/*.yaml`` (and ``multirun.yaml``) without secrets, and masking log handlers; written here when
    ``hydra.output_subdir: null`` (nothing is written before the entry point checks the run dir), else rewritten.
    Global-zero process only."""
    overrides = [scrub_override(o) for o in hydra_cfg.overrides.task]
    config = OmegaConf.to_yaml(scrub(OmegaConf.to_container(cfg, resolve=False)))
    if hydra_cfg.output_subdir is None:
        if rank_world()[0] == 0:
            saved = Path(hydra_cfg.runtime.output_dir) / HYDRA_DIR
            hydra_yaml = OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg}))
            for name, text in (
                ("config.yaml", config),
                ("hydra.yaml", hydra_yaml),
                ("overrides.yaml", OmegaConf.to_yaml(overrides)),
            ):
                atomic_write_text(saved / name, mask(text, secrets))
    elif secrets:
        saved = Path(hydra_cfg.runtime.output_dir) / str(hydra_cfg.output_subdir)
        _rewrite(saved / "config.yaml", config, secrets)
        _rewrite(saved / "overrides.yaml", OmegaConf.to_yaml(overrides), secrets)
        _rewrite(saved / "hydra.yaml", None, secrets)
    if not secrets:
        return
    if hydra_cfg.mode == RunMode.MULTIRUN:
        _rewrite(Path(hydra_cfg.sweep.dir) / "multirun.yaml", None, secrets)
    log_filter = MaskSecrets(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(log_filter)


def _rewrite(path: Path, text: str | None, secrets: set[str]) -> None:
    """Replace an existing file by ``text`` (None: its own text), secrets masked."""
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        new = mask(old if text is None else text, secrets)
        if new != old:
            atomic_write_text(path, new)
