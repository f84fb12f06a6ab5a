"""Checkpoint state helpers shared by the Lightning modules."""

from __future__ import annotations

import torch

_WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def trainable_state(module: torch.nn.Module, state: dict) -> dict:
    """``state``'s trainable parameters of ``module``, ignoring FSDP / checkpointing / compile name prefixes."""

    def clean(name: str) -> str:
        for prefix in _WRAPPERS:
            name = name.replace(prefix, "")
        return name

    trainable = {clean(n) for n, p in module.named_parameters() if p.requires_grad}
    return {k: v for k, v in state.items() if clean(k) in trainable}
