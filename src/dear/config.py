"""Hydra/OmegaConf glue shared by the entry points and the tests."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from dear.utils.paths import ROOT

CONF_DIR = ROOT / "conf"


def register_resolvers() -> None:
    """``${dear_root:}`` → the repository root, so relative defaults work from any cwd."""
    if not OmegaConf.has_resolver("dear_root"):
        OmegaConf.register_new_resolver("dear_root", lambda: str(ROOT))


def prepare_environment(cfg) -> None:
    """Process-wide settings every entry point applies before touching data or models."""
    from dear.data.irds import use_home
    from dear.utils.quiet import quiet_known_noise

    quiet_known_noise()
    paths = cfg.paths
    use_home(paths.get("ir_datasets_home"), paths.get("ir_datasets_mirror"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

