"""Fit diagnostics of a listwise run on its own windows: a real tiny train.py run, its start and its checkpoint."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from dear.errors import DataError
from dear.listwise.window_fit import blind, main, window_fit
from tests.helpers.cli import run

# Three passages a window: FIRST's pair weights 1/(r_i + r_j + 2) over (0,1), (0,2), (1,2), each × softplus(0).
BLIND_3 = math.log(2) * (1 / 3 + 1 / 4 + 1 / 5) / 3


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """The built-in synthetic task without reasoning (ranking-line answers), 12 steps with FIRST's loss."""
    out = tmp_path_factory.mktemp("window_fit") / "run"
    proc = run(
        "train.py",
        "--config-name",
        "train_listwise",
        "evaluation=null",
        "data.train.reasoning=false",
        "data.train.n_queries=48",
        "data.val.n_queries=16",
        "data.batch_size=8",
        "module.rank_loss_weight=10",
        "module.lr=1e-2",
        "module.scheduler=constant",
        "trainer.max_steps=12",
        f"hydra.run.dir={out}",
        env={"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_blind_values_are_those_of_equal_scores():
    rows = [{"rank": {"ranks": [2, 0, 1]}}, {"rank": {"ranks": [1, 0]}}]
    loss, chance = blind(rows)
    assert loss == pytest.approx((BLIND_3 + math.log(2) / 3) / 2)
    assert chance == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert blind(rows[:1])[0] == pytest.approx(
        float(
            (
                torch.tensor([1 / 3, 1 / 4, 1 / 5]) * torch.nn.functional.softplus(torch.zeros(3))
            ).mean()
        )
    )


def test_the_start_and_the_checkpoint_on_the_runs_own_windows(fitted, capsys):
    results = window_fit(fitted)
    train, val = results["train"], results["val"]
    assert (train["n"], val["n"]) == (48, 16)
    assert train["blind"] == pytest.approx(BLIND_3) and train["chance"] == pytest.approx(1 / 3)
    # 12 steps of FIRST's loss move the checkpoint off the start on the windows it trained on
    assert train["checkpoint"]["rank"] < train["start"]["rank"] - 0.005
    assert 0 <= train["checkpoint"]["first"] <= 48 and 0 <= val["start"]["first"] <= 16
    # the same windows, scored again, give the same figures; --limit keeps the first N training windows
    assert main([str(fitted), "--limit", "8"]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].startswith("| windows | n | rank loss: blind | start | checkpoint |")
    assert table[2].startswith(f"| train | 8 | {BLIND_3:.4f} |")
    assert table[3].startswith(f"| val | 16 | {BLIND_3:.4f} | {val['start']['rank']:.4f} |")


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    return stopped.value.code


def test_bad_runs_fail_in_one_line(fitted, tmp_path, capsys):
    assert exit_code([str(tmp_path)]) == 2
    assert "export/config.yaml: not found" in capsys.readouterr().err
    assert exit_code([str(fitted), "--checkpoint", "missing.ckpt"]) == 2
    assert "missing.ckpt: checkpoint not found" in capsys.readouterr().err
    # answers with reasoning have no ranking targets
    copy = tmp_path / "reasoning"
    shutil.copytree(fitted, copy)
    cfg = OmegaConf.load(copy / "export" / "config.yaml")
    cfg.data.train.reasoning = cfg.data.val.reasoning = True
    OmegaConf.save(cfg, copy / "export" / "config.yaml")
    with pytest.raises(DataError, match="train windows: no window has a ranking target"):
        window_fit(copy)
    with pytest.raises(SystemExit):
        main([str(fitted), "--limit", "0"])
