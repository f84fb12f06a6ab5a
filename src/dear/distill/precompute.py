"""Precompute the frozen teacher's logits for a training config, once (resumable).

    python -m dear.distill.precompute                       # the built-in default's teacher
    python -m dear.distill.precompute teacher=rankllama_13b data=msmarco

Takes the same config and overrides as ``train.py`` (so the cache it writes is exactly the one
training looks up); ``train.py`` runs this step itself when the cache is missing.
"""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from dear.cli import entry_point
from dear.config import CONF_DIR, prepare_environment, register_resolvers
from dear.utils.progress import log

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
@entry_point
def main(cfg: DictConfig) -> None:
    prepare_environment(cfg)
    datamodule = instantiate(cfg.data, kd_weight=1.0)  # the cache is wanted whatever alpha is
    datamodule.prepare_data()
    log(f"teacher cache complete: {datamodule.cache.dir}")


if __name__ == "__main__":
    main()
