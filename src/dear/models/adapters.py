"""PEFT adapters: recognising an adapter dir and its base, attaching one for inference, adding a trainable LoRA."""

from __future__ import annotations

from pathlib import Path

from dear.errors import DataError, json_object
from dear.utils.io import read_json


def is_adapter_dir(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str) -> str:
    """An adapter dir's ``base_model_name_or_path`` (unresolved); a ``pypi:`` name must be a known packaged model."""
    from dear.models.packaged import PREFIX, packaged_model

    file = Path(path) / "adapter_config.json"
    base = json_object(read_json(file), str(file)).get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise DataError(
            f"{file}: base_model_name_or_path: expected the base model's name, found {base!r}"
        )
    if base.startswith(PREFIX):
        packaged_model(base, f"{file}: base_model_name_or_path")
    return base


def attach_adapter(net, adapter: str, merge: bool = True):
    """``net`` with the PEFT ``adapter`` dir loaded on top, merged into the weights unless ``merge=False``."""
    from peft import PeftModel

    net = PeftModel.from_pretrained(net, adapter)
    return net.merge_and_unload() if merge else net


def add_lora(net, lora: dict, task_type: str, adapter_name: str = "default"):
    """``net`` wrapped with a trainable LoRA (``lora``: peft ``LoraConfig`` fields)."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        net, LoraConfig(task_type=task_type, **dict(lora)), adapter_name=adapter_name
    )
