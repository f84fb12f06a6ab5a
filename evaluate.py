"""Evaluate a first stage and reranking stages on one benchmark (see conf/evaluate.yaml).

python evaluate.py benchmark=scifact pipeline=pointwise
python evaluate.py benchmark=files benchmark.candidates=run.trec benchmark.qrels=qrels.txt
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from dear.cli import entry_point, run
from dear.config import build_stages, hydra_choices, prepare_environment, register_resolvers
from dear.eval.pipeline import run_pipeline, timed_load
from dear.report.against import write_against_paper
from dear.utils.repro import write_record

register_resolvers()


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
@entry_point(results=True)
def main(cfg: DictConfig) -> float:
    prepare_environment(cfg)
    out_dir = HydraConfig.get().runtime.output_dir
    benchmark = instantiate(cfg.benchmark)
    stages = build_stages(cfg.pipeline, instantiate)
    loaded = timed_load(benchmark)  # the inputs are read (and checked) before anything is written
    write_record(out_dir, cfg)
    result = run_pipeline(benchmark, stages, out_dir, loaded)
    print(f"\n## {benchmark.name}\n\n{result['table']}")
    against = write_against_paper(out_dir, result["metrics"], benchmark.name, cfg, hydra_choices())
    if against:
        print(against)
    last = list(result["metrics"].values())[-1]
    return last[benchmark.measures[-1]]  # the sweep objective: the last stage's last metric


if __name__ == "__main__":
    run(main)
