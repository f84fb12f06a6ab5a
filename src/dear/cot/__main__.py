"""Generate DeAR-COT data from Stage-1 candidates (see conf/cot.yaml):

    python -m dear.cot candidates.path=run.trec candidates.docs=collection.tsv candidates.queries=queries.tsv
    python -m dear.cot candidates.path=retrieve_results.json endpoint=local_vllm name=dear_cot_llama70b

Re-running the same command resumes: queries already in the output are skipped.
"""

from __future__ import annotations

import json

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from dear.cli import entry_point, run
from dear.config import CONF_DIR, prepare_environment, register_resolvers

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="cot", version_base="1.3")
@entry_point
def main(cfg: DictConfig) -> None:
    prepare_environment(cfg)
    rankings = instantiate(cfg.candidates)
    summary = instantiate(cfg.generator).run(rankings, cfg.output)
    print(json.dumps(summary))


if __name__ == "__main__":
    run(main)
