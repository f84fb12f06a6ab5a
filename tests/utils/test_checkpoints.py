"""LastCheckpoint relies on two private checks of Lightning's training loop (no public API says
whether the loop validates after a batch or is inside a gradient accumulation): a Lightning
without them is refused by name when training starts, not discovered as an inexact resume."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dear.utils.checkpoints import LastCheckpoint


def trainer_with(epoch_loop) -> SimpleNamespace:
    return SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=epoch_loop, _data_fetcher=None))


def test_a_lightning_without_the_loops_private_checks_is_refused_by_name(tmp_path):
    callback = LastCheckpoint(str(tmp_path))
    with pytest.raises(
        RuntimeError,
        match=r"lack \['_should_check_val_fx'\]; dear.utils.checkpoints.LastCheckpoint",
    ):
        callback.on_train_start(
            trainer_with(SimpleNamespace(_should_accumulate=lambda: False)), None
        )


def test_the_installed_lightning_has_them():
    from lightning.pytorch.loops import _FitLoop, _TrainingEpochLoop

    assert all(hasattr(_TrainingEpochLoop, name) for name in LastCheckpoint._PRIVATE)
    assert "_data_fetcher" in _FitLoop.__init__.__code__.co_names or hasattr(
        _FitLoop, "_data_fetcher"
    )
