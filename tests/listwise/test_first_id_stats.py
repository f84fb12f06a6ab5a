"""The first-id diagnostics over a run's listwise.details.jsonl: a passage-blind model and one that reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dear.errors import DataError
from dear.listwise.first_id_stats import main, summary, window_probs


def write_run(path, windows: list[list[float] | None]) -> str:
    path.mkdir()
    lines = [
        json.dumps({"qid": str(q), "windows": [{} if p is None else {"first_id_probs": p}]})
        for q, p in enumerate(windows)
    ]
    (path / "listwise.details.jsonl").write_text("\n".join(lines) + "\n")
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
