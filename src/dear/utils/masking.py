"""Secrets kept out of everything a run writes: Hydra's ``.hydra/*.yaml``, log records, error
messages (``repro.json`` and logger configs go through ``dear.utils.repro.scrub`` already).

A secret is a value ``scrub`` would hide: under a key that names one (``api_key``, ``token``,
``password``...), a value shaped like a key (``sk-…``, ``hf_…``) under any key — e.g. a key typed
into ``endpoint.api_key_env``, which should name a variable — or a password inside a URL
(``http://user:key@host``). Every literal secret found in the config or the overrides is then
replaced wherever it appears in text, whatever the surrounding format (literals of at least
``MIN_LITERAL`` characters: a 3-letter password would mask every word that contains it; shorter
ones are still hidden in ``config.yaml`` and ``overrides.yaml``, which are rewritten by key).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from hydra.types import RunMode
from omegaconf import OmegaConf

from dear.utils.io import atomic_write_text
from dear.utils.repro import _URL_PASSWORD, REDACTED, scrub, scrub_override

MIN_LITERAL = 6
_TOKEN_ANYWHERE = re.compile(r"(?<![A-Za-z0-9])(?:sk-|hf_|ghp_|xox[abp]-|wandb_)[A-Za-z0-9_-]{16,}")


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


def mask_hydra_job(cfg, hydra_cfg) -> set[str]:
    """For the running Hydra job (``cfg``: its config, ``hydra_cfg``: ``HydraConfig.get()``):
    rewrite ``.hydra/{config,hydra,overrides}.yaml`` (Hydra writes them before the task function
    runs) and the sweep's ``multirun.yaml`` without secrets, and mask them in every log handler's
    records. → the secrets found (to mask error messages)."""
    overrides = list(hydra_cfg.overrides.task)
    container = OmegaConf.to_container(cfg, resolve=False)  # as Hydra saved it: interpolations kept
    secrets = secrets_in(container) | override_secrets(overrides)
    if not secrets:
        return secrets
    if hydra_cfg.output_subdir is not None:
        saved = Path(hydra_cfg.runtime.output_dir) / str(hydra_cfg.output_subdir)
        _rewrite(saved / "config.yaml", OmegaConf.to_yaml(scrub(container)), secrets)
        _rewrite(saved / "overrides.yaml", OmegaConf.to_yaml([scrub_override(o) for o in overrides]), secrets)
        _rewrite(saved / "hydra.yaml", None, secrets)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        _rewrite(Path(hydra_cfg.sweep.dir) / "multirun.yaml", None, secrets)
    log_filter = MaskSecrets(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(log_filter)
    return secrets


def _rewrite(path: Path, text: str | None, secrets: set[str]) -> None:
    """Replace an existing file by ``text`` (None: its own text), secrets masked."""
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        new = mask(old if text is None else text, secrets)
        if new != old:
            atomic_write_text(path, new)
