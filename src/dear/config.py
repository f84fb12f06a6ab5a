"""Hydra/OmegaConf glue shared by the entry points and the tests."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from dear.utils.paths import ROOT

CONF_DIR = ROOT / "conf"


def register_resolvers() -> None:
    """``${dear_root:}`` → the repository root, so relative defaults work from any cwd;
    ``${cpu_precision:}`` → Lightning's ``bf16-mixed`` on a CPU with native bf16
    (``dear.models.loading.native_bf16``), else ``32-true``."""
    if not OmegaConf.has_resolver("dear_root"):
        OmegaConf.register_new_resolver("dear_root", lambda: str(ROOT))
    if not OmegaConf.has_resolver("cpu_precision"):
        OmegaConf.register_new_resolver("cpu_precision", cpu_precision)


def cpu_precision() -> str:
    from dear.models.loading import native_bf16

    return "bf16-mixed" if native_bf16("cpu") else "32-true"


def prepare_environment(cfg) -> None:
    """Process-wide settings every entry point applies before touching data or models."""
    from dear.data.irds import use_home
    from dear.utils.quiet import quiet_known_noise

    quiet_known_noise()
    check_renamed(cfg)
    paths = cfg.paths
    use_home(paths.get("ir_datasets_home"), paths.get("ir_datasets_mirror"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def check_renamed(cfg) -> None:
    """A ConfigError naming the new spelling of a renamed option the command line chose (the
    options left in a renamed group set ``renamed: {old: new}``, e.g. conf/sft_student/)."""
    from dear.errors import ConfigError

    renamed = cfg.get("renamed")
    if renamed:
        said = "; ".join(f"{old} is now {new}" for old, new in renamed.items())
        raise ConfigError(f"renamed option: {said} (see the README)")
