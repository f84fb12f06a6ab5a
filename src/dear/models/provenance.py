"""What identifies a loaded model or tokenizer, recorded in ``repro.json`` (``loaded``).

A model: its hub commit, else a fingerprint of its local files (names and sizes, contents of small ones), with its
adapter's, dtype and device class. A tokenizer: a hash of everything deciding token ids (vocabulary, special tokens,
chat template, padding side, maximum length).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from dear.utils.repro import note_loaded

# files up to 1 MiB (configs, tokenizer files) are hashed whole; larger ones by name and size
_SMALL = 1 << 20


def device_class(device: torch.device | str) -> str:
    """``cpu``, or ``cuda:<device name>`` (the GPU model, not its index)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def files_fingerprint(path: str | Path) -> str | None:
    """A hash of a local model directory (None: not a local directory)."""
    root = Path(path)
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(root)}\0{size}\0".encode())
        if size <= _SMALL:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _commit(path: str, net=None) -> str | None:
    """The hub commit: transformers' record on the config, else the snapshot directory's name."""
    commit = getattr(getattr(net, "config", None), "_commit_hash", None)
    if commit:
        return commit
    parts = Path(path).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def model_facts(path: str, net, adapter: str | None = None, device: bool = True) -> dict:
    """``device``: record where the weights are (False for a model to train: the trainer places it)."""
    first = next(iter(net.parameters()), None)
    facts = {
        "path": path,
        "revision": _commit(path, net),
        "files": files_fingerprint(path),
        "class": type(net).__name__,
        "dtype": str(first.dtype).removeprefix("torch.") if first is not None else None,
    }
    if device:
        facts["device"] = device_class(first.device) if first is not None else None
    if adapter:
        facts["adapter"] = {"path": adapter, "files": files_fingerprint(adapter)}
    return facts


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = (
        backend.to_str()
        if backend is not None
        else json.dumps(sorted(tokenizer.get_vocab().items()))
    )
    extra = {
        "class": type(tokenizer).__name__,
        "special": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
        "chat_template": getattr(tokenizer, "chat_template", None),
        "padding_side": tokenizer.padding_side,
        "model_max_length": min(int(tokenizer.model_max_length), 2**62),
    }
    return hashlib.sha256(
        (body + json.dumps(extra, sort_keys=True, default=str)).encode()
    ).hexdigest()[:16]


def note_model(name: str, path: str, net, adapter: str | None = None, device: bool = True) -> None:
    note_loaded("model", name, model_facts(path, net, adapter, device))


def note_tokenizer(name: str, path: str, tokenizer) -> None:
    note_loaded(
        "tokenizer",
        name,
        {
            "path": path,
            "revision": _commit(path),
            "vocab_size": len(tokenizer),
            "fingerprint": tokenizer_fingerprint(tokenizer),
        },
    )
