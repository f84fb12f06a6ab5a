"""The first-id diagnostics over a run's listwise.details.jsonl: a passage-blind model and one that reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dear.errors import DataError
from dear.listwise.first_id_stats import main, summary, window_probs


def write_run(path, windows: list[list[float] | None], stage: str = "listwise") -> str:
    path.mkdir(exist_ok=True)
    lines = [
        json.dumps({"qid": str(q), "windows": [{} if p is None else {"first_id_probs": p}]})
        for q, p in enumerate(windows)
    ]
    (path / f"{stage}.details.jsonl").write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_fixed_position_prior_and_a_reading_model(tmp_path, capsys):
    prior = list(np.linspace(1, 0.1, 5) / np.linspace(1, 0.1, 5).sum())
    blind = write_run(
        tmp_path / "blind", [prior] * 4 + [[0.5, 0.5]]
    )  # the short window is left out
    rng = np.random.default_rng(0)
    reading = write_run(tmp_path / "reading", [list(rng.dirichlet(np.ones(5))) for _ in range(40)])
    s = summary(window_probs(blind))
    assert s["windows"] == 4 and s["size"] == 5 and s["first_choice"] == {"[1]": 4}
    assert s["spearman_vs_input"] == pytest.approx(1.0) and s["spread"] == pytest.approx(0.0)
    assert s["p_first_choice"] == pytest.approx(prior[0])
    r = summary(window_probs(reading))
    assert abs(r["spearman_vs_input"]) < 0.3 and r["spread"] > 0.1 and len(r["first_choice"]) > 1
    assert main([blind, reading]) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith("| run | windows | first choice |")
        and "| [1] 4/4 | 0.36 | 1.00 | 0.0000 |" in out
    )


def test_a_generated_run_is_refused_naming_the_line(tmp_path, capsys):
    run = write_run(tmp_path / "generated", [[0.6, 0.4], None])
    with pytest.raises(
        DataError, match=r"listwise.details.jsonl:2: a window without 'first_id_probs'"
    ):
        window_probs(run)
    assert main([run, str(tmp_path / "missing")]) == 2
    assert "listwise.scoring=first_id" in capsys.readouterr().err


def test_a_training_runs_start_is_read_beside_its_adapter(tmp_path, capsys):
    """A training run's benchmark directory holds both stages; --stage names them, one row each."""
    run = tmp_path / "noveleval"
    write_run(run, [[0.1, 0.7, 0.1, 0.1]] * 3, stage="listwise_init")
    write_run(run, [[0.6, 0.2, 0.1, 0.1]] * 3)
    assert summary(window_probs(run, "listwise_init"))["first_choice"] == {"[2]": 3}
    assert main([str(run), "--stage", "listwise_init", "listwise"]) == 0
    out = capsys.readouterr().out
    assert f"| {run} (listwise_init) | 3 × 4 | [2] 3/3 | 0.70 |" in out
    assert f"| {run} (listwise) | 3 × 4 | [1] 3/3 | 0.60 |" in out
    assert main([str(run), "--stage", "zero_shot"]) == 2
    assert "zero_shot.details.jsonl" in capsys.readouterr().err
