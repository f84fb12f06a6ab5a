"""Loading HF checkpoints: hub ids, local dirs, PEFT adapters, packaged and tiny models; for
inference (eval mode, adapters merged) or for training (gradient checkpointing, 4-bit bases)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dear.errors import DataError
from dear.models.adapters import adapter_base, attach_adapter, is_adapter_dir
from dear.models.gguf import dequantized_dir
from dear.models.packaged import PREFIX, packaged_model
from dear.models.provenance import note_model, note_tokenizer


def resolve_model_path(name: str) -> str:
    """A model name → what ``from_pretrained`` reads: ``pypi:`` names (never imported) and ``*.gguf`` files → a
    dequantized or packaged model dir, ``tiny:<arch>-<task>[-h<hidden>][-l<layers>]`` → a tiny random model."""
    if name.startswith(PREFIX):
        path = packaged_model(name)
        return dequantized_dir(path, cache_root()) if path.suffix == ".gguf" else str(path)
    if name.startswith("tiny:"):
        return _tiny_model(name[len("tiny:") :])
    if name.endswith(".gguf"):
        return dequantized_dir(name, cache_root())
    if _looks_local(name) and not Path(name).expanduser().exists():
        raise DataError(
            f"{name}: model directory not found (a local path; hub ids look like 'org/name')"
        )
    return name


def record_base(directory: str | Path, name: str) -> None:
    """Name the base of the adapter saved in ``directory`` as configured, ``name``, where this package resolved it to
    a directory of its own: PEFT writes that directory (a ``pypi:`` model's, a dequantized ``.gguf`` under
    ``$DEAR_CACHE_DIR``, a ``tiny:`` model's), which exists only where the adapter was trained, so an export moved to
    another machine or cache would not load. A ``.gguf`` is written as its absolute path. Hub ids and model
    directories resolve to themselves and are left as PEFT wrote them."""
    from dear.utils.io import atomic_write_json, read_json

    config = Path(directory) / "adapter_config.json"
    if not config.is_file():
        return
    resolved = resolve_model_path(name)
    data = read_json(config)
    if resolved == name or data.get("base_model_name_or_path") != resolved:
        return  # a name that is its own directory, or not the directory PEFT wrote: leave it
    if name.endswith(".gguf") and not name.startswith(PREFIX):
        name = str(Path(name).expanduser().resolve())
    data["base_model_name_or_path"] = name
    atomic_write_json(config, data)


def _looks_local(name: str) -> bool:
    """A path rather than a hub id (absolute, ``./``, ``../``, ``~``, or several ``/``): reported as missing."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def cache_root() -> Path:
    """Where built models live: ``$DEAR_CACHE_DIR``, else the repository's ``.cache``."""
    from dear.utils.paths import ROOT

    return Path(os.environ.get("DEAR_CACHE_DIR", ROOT / ".cache"))


def _tiny_model(spec: str) -> str:
    from dear.models.tiny import build_tiny

    arch, task, *sizes = spec.split("-") + ([] if "-" in spec else ["causal"])
    keys = {"h": "hidden", "l": "layers"}
    if any(s[:1] not in keys or not s[1:].isdigit() for s in sizes):
        raise DataError(
            f"tiny:{spec}: expected tiny:<arch>-<task>[-h<hidden>][-l<layers>], e.g. tiny:llama-causal-h64"
        )
    return build_tiny(
        cache_root() / "tiny" / spec, arch, task, **{keys[s[0]]: int(s[1:]) for s in sizes}
    )


def base_and_adapter(model: str, adapter: str | None = None) -> tuple[str, str | None]:
    """(base model path, adapter path or None); a PEFT adapter dir ``model`` brings its own (resolved) base."""
    path = resolve_model_path(model)
    if adapter is None and is_adapter_dir(path):
        return resolve_model_path(adapter_base(path)), path
    return path, adapter


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes bf16 natively (CUDA, or an AVX512-BF16/AMX CPU unless ``DEAR_CPU_BF16=0``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or os.environ.get("DEAR_CPU_BF16", "1") == "0":
        return False
    return bool(
        torch.backends.mkldnn.is_available()
        and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    )


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Weights' dtype. ``auto``: bf16 on GPU, fp32 on CPU (computing under bf16 autocast where native)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def cpu_bf16(device: torch.device, dtype: str = "auto") -> bool:
    """Whether a scorer computes in CPU bf16 autocast: ``auto`` on a CPU with native bf16."""
    return device.type == "cpu" and dtype == "auto" and native_bf16(device)


def compute_autocast(device: torch.device, dtype: str = "auto"):
    """A scorer's inference context: bf16 autocast on GPU (any ``dtype``) and where ``cpu_bf16``; else none."""
    from contextlib import nullcontext

    if device.type == "cuda" or cpu_bf16(device, dtype):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def load_tokenizer(path: str, revision: str | None = None, name: str | None = None):
    """A tokenizer with an explicit pad token (EOS if none) and right padding; ``name``: for repro.json."""
    from transformers import AutoTokenizer

    resolved = resolve_model_path(path)
    tok = AutoTokenizer.from_pretrained(resolved, revision=revision)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    note_tokenizer(name or path, resolved, tok)
    return tok


def load_sequence_classifier(model: str, **options):
    """(tokenizer, model) for a one-logit ``AutoModelForSequenceClassification``; ``options``
    (``adapter``, ``revision``, ``dtype``, ``device``, ``merge``) as ``load_pretrained``."""
    from transformers import AutoModelForSequenceClassification

    return load_pretrained(
        AutoModelForSequenceClassification, model, fill_pad_id=True, num_labels=1, **options
    )


def load_pretrained(
    auto_cls,
    model: str,
    adapter: str | None = None,
    revision: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    merge: bool = True,
    fill_pad_id: bool = False,
    **kwargs,
):
    """(tokenizer, model in eval mode): a checkpoint, PEFT adapter dir (with its base), ``tiny:``/``pypi:`` name or
    ``adapter`` on ``model``, merged unless ``merge=False``; the tokenizer comes from the adapter dir when it has one.
    ``fill_pad_id``: a missing pad id becomes 0 as in the DeAR reference (classifiers pool by it)."""
    path, adapter = base_and_adapter(model, adapter)
    dev = pick_device(device)
    tok_source = (
        adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else path
    )
    tokenizer = load_tokenizer(
        tok_source,
        revision if tok_source == path else None,
        name=model if tok_source == path else tok_source,
    )
    net = auto_cls.from_pretrained(path, revision=revision, dtype=pick_dtype(dtype, dev), **kwargs)
    if fill_pad_id:
        _fill_pad_id(net)
    if adapter:
        net = attach_adapter(net, adapter, merge)
    net = net.to(dev).eval()
    note_model(model, path, net, adapter)
    return tokenizer, net


def load_causal_lm(model: str, **options):
    """(tokenizer, model) for an ``AutoModelForCausalLM``; ``options`` as ``load_pretrained``."""
    from transformers import AutoModelForCausalLM

    return load_pretrained(AutoModelForCausalLM, model, **options)


def load_trainable(
    auto_cls,
    path: str,
    revision: str | None = None,
    dtype: str = "auto",
    quantization: dict | None = None,
    gradient_checkpointing: bool = False,
    fill_pad_id: bool = False,
    input_require_grads: bool = False,
    **kwargs,
):
    """A model to train at ``dtype`` (``auto``: bf16 with a GPU); ``quantization``: a 4-bit base for QLoRA;
    non-re-entrant ``gradient_checkpointing``; ``fill_pad_id`` as ``load_pretrained``. Callers add adapters."""
    kwargs = {**kwargs, "revision": revision, "dtype": pick_dtype(dtype, pick_device("auto"))}
    if quantization:
        from transformers import BitsAndBytesConfig

        q = dict(quantization)
        if isinstance(q.get("bnb_4bit_compute_dtype"), str):
            q["bnb_4bit_compute_dtype"] = getattr(torch, q["bnb_4bit_compute_dtype"])
        kwargs["quantization_config"] = BitsAndBytesConfig(**q)
    resolved = resolve_model_path(path)
    net = auto_cls.from_pretrained(resolved, **kwargs)
    note_model(path, resolved, net, device=False)  # the trainer places it
    if fill_pad_id:
        _fill_pad_id(net)
    if quantization:
        from peft import prepare_model_for_kbit_training

        net = prepare_model_for_kbit_training(
            net, use_gradient_checkpointing=gradient_checkpointing
        )
    elif gradient_checkpointing:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if input_require_grads:
            net.enable_input_require_grads()
    return net


def _fill_pad_id(net) -> None:
    if net.config.pad_token_id is None:
        net.config.pad_token_id = (
            0  # as the DeAR reference: the classifier then skips id 0 (see rerank.pooling)
        )
