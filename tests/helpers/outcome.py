"""What a finished training run ended on, to compare a resumed run with an uninterrupted one."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from safetensors.torch import load_file

from dear.utils.checkpoints import load_checkpoint


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not k.startswith("sec_")}
    return value


def run_outcome(run: Path, metrics_dir: Path | None = None) -> tuple[dict, dict, dict, dict]:
    """(metrics.json of ``metrics_dir`` (default: the run dir) without timings, the exported adapter's
    tensors, the final last.ckpt's weights, {(column, step): value} of csv/metrics.csv, a step's last
    row winning: a resumed run appends the steps it redoes)."""
    logged = {}
    with open(run / "csv" / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for column in ("train/loss", "train/kd", "val/nDCG@10"):
                if row.get(column):
                    logged[column, int(row["step"])] = float(row[column])
    return (
        without_timings(json.loads(((metrics_dir or run) / "metrics.json").read_text())),
        load_file(run / "export" / "adapter_model.safetensors"),
        load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"],
        logged,
    )


TOPICS = [
    "llama",
    "edison",
    "coffee",
    "volcano",
    "violin",
    "glacier",
    "comet",
    "tulip",
    "falcon",
    "desert",
    "piano",
    "harbor",
    "saturn",
    "cactus",
    "marble",
    "tundra",
]


def write_topic_jsonl(path: Path) -> Path:
    """FlagEmbedding rows: 16 queries, each with its topic's passage and 5 others as negatives."""
    rows = [
        {
            "query": f"tell me about the {t}",
            "pos": [f"a passage about the {t} and its history"],
            "neg": [f"a passage about the {o}" for o in TOPICS if o != t][i % 8 : i % 8 + 5],
        }
        for i, t in enumerate(TOPICS)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
