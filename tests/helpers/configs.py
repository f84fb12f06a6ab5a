"""Compose the project's Hydra configs in-process, as the entry points do."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dear.config import CONF_DIR, register_resolvers

register_resolvers()


def compose_cfg(primary: str, overrides: list[str]):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(primary, overrides=["paths.output_dir=/tmp/dear-compose", *overrides])


def compose_resolved(primary: str, overrides: list[str]):
    cfg = compose_cfg(primary, overrides)
    # Resolve everything except mandatory '???' values a user must supply.
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
