"""Every YAML file under conf/ composes (and its interpolations resolve) in some primary config."""

from __future__ import annotations

from pathlib import Path

import pytest

from dear.config import CONF_DIR, register_resolvers
from tests.helpers.configs import compose_resolved

register_resolvers()
PRIMARY = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
OPTIONS = sorted(p.relative_to(CONF_DIR) for p in CONF_DIR.rglob("*.yaml") if p.parent != CONF_DIR)


@pytest.mark.parametrize("primary", PRIMARY)
def test_primary_config_composes(primary):
    assert compose_resolved(primary, [])


@pytest.mark.parametrize("option", OPTIONS, ids=str)
def test_every_option_composes(option: Path):
    group = "/".join(option.parent.parts)
    name = option.stem
    errors = []
    for primary in PRIMARY:
        for override in (
            f"{group}={name}",
            f"+{group}={name}",
        ):  # a group in the defaults, or added
            try:
                compose_resolved(primary, [override])
                return
            except Exception as e:  # noqa: BLE001 - collected and reported below
                errors.append(f"{primary} {override}: {type(e).__name__}: {e}")
    pytest.fail(f"{option} composes in no primary config:\n" + "\n".join(errors))


def test_overrides_reach_objects():
    cfg = compose_resolved(
        "evaluate", ["benchmark=noveleval", "pipeline=pointwise", "pointwise=dear_8b_ce"]
    )
    assert cfg["benchmark"]["_target_"].endswith("PooledBM25Benchmark")
    scorer = cfg["pipeline"]["stages"]["pointwise"]["reranker"]["scorer"]
    assert scorer["model"] == "abdoelsayed/dear-8b-reranker-ce-v1"
    assert scorer["template"]["query_max_len"] == 32 and scorer["template"]["doc_max_len"] == 193
    assert scorer["pooling"] == "reference" and scorer["template"]["join"] == "reference"


def test_listwise_export_takes_single_settings_as_its_comment_says():
    """``listwise=export``: ``backend.*`` and ``prompt.*`` override one setting each without ``+``; every backend
    key is a ``TransformersBackend`` option and every prompt key a ``ListwisePrompt`` field (null: the run's)."""
    import dataclasses
    import inspect

    from dear.listwise.backends.hf import TransformersBackend
    from dear.listwise.prompts import ListwisePrompt

    cfg = compose_resolved(
        "evaluate",
        [
            "pipeline=listwise",
            "listwise=export",
            "listwise.path=RUN",
            "listwise.backend.num_beams=4",
            "listwise.backend.dtype=float32",
            "listwise.prompt.max_words=100",
            "listwise.constrained=true",
            "listwise.scoring=first_id",
        ],
    )["listwise"]
    assert cfg["backend"]["num_beams"] == 4 and cfg["backend"]["dtype"] == "float32"
    assert cfg["prompt"]["max_words"] == 100 and cfg["constrained"] is True
    assert cfg["scoring"] == "first_id"
    assert set(cfg["backend"]) <= set(inspect.signature(TransformersBackend).parameters)
    assert set(cfg["prompt"]) <= {f.name for f in dataclasses.fields(ListwisePrompt)}
