"""Config containers → plain Python values."""

from __future__ import annotations

from collections.abc import Mapping


def to_plain(value):
    """OmegaConf containers (also nested in mappings or lists) as plain, resolved Python containers."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
