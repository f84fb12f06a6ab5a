"""One base model in memory carrying several PEFT adapters (DeAR's Stage-1 and Stage-2 LoRAs), each stage seeing it
through its own view.

The base is loaded once as an ``AutoModelForCausalLM``; adapters stay unmerged and a view activates its own before
every forward pass. ``sequence_classifier`` stands in for ``load_sequence_classifier`` (the adapter's own ``score``
head, pad id 0), ``causal_lm`` for ``load_causal_lm``. Every adapter must share the base (else a ConfigError naming
both), revision, dtype and device. Unmerged adapters cost the LoRA products on every pass: the price of one copy of
the weights.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from dear.errors import ConfigError
from dear.models.adapters import adapter_base, is_adapter_dir
from dear.models.loading import load_tokenizer, pick_device, pick_dtype, resolve_model_path
from dear.models.provenance import note_model

# The one-logit head of a Stage-1 adapter: PEFT saves a modules_to_save copy without the adapter's
# name (older versions kept ``.modules_to_save.<name>``).
CLASSIFIER_HEADS = {"score", "classifier"}  # what PEFT adds to a SEQ_CLS adapter's modules_to_save
SCORE_KEY = re.compile(r"(?:^|\.)score(?:\.modules_to_save\.[^.]+)?\.(weight|bias)$")


@dataclass(frozen=True)
class _Attached:
    name: str  # the PEFT adapter name (the stage's role: pointwise, listwise)
    adapter: str  # the adapter dir
    base: str  # its base_model_name_or_path, as written


class SharedBase:
    """One base for every stage handed this object (``shared=``): the first adapter loads it, later ones must match."""

    def __init__(self):
        self.net = None  # the PeftModel over the causal LM, once the first adapter arrives
        self.key: tuple | None = (
            None  # (base path, revision, dtype, device) the base was loaded with
        )
        self.attached: list[_Attached] = []
        self.active: str | None = None

    # -- what the stages call, in place of load_sequence_classifier / load_causal_lm --------------

    def sequence_classifier(self, model: str, name: str = "pointwise", **options):
        """(tokenizer, ``ClassifierView``) for a Stage-1 adapter; ``options`` as ``load_pretrained``'s
        (``merge`` is ignored: adapters stay unmerged)."""
        adapter_dir = _adapter_dir(name, model, options.get("adapter"))
        # before loading anything: an adapter without one fails here
        head = _score_head(adapter_dir)
        attached, tokenizer = self._attach(name, adapter_dir, model, **options)
        _, _, dtype, device = self.key
        return tokenizer, ClassifierView(self, attached.name, head.to(device=device, dtype=dtype))

    def causal_lm(self, model: str, name: str = "listwise", **options):
        """(tokenizer, ``CausalLMView``) for a Stage-2 adapter; ``options`` as ``sequence_classifier``'s."""
        adapter_dir = _adapter_dir(name, model, options.get("adapter"))
        attached, tokenizer = self._attach(name, adapter_dir, model, **options)
        return tokenizer, CausalLMView(self, attached.name)

    def activate(self, name: str) -> None:
        """Make ``name`` the adapter every forward pass uses (a no-op when it already is)."""
        if self.active != name:
            self.net.set_adapter(name, inference_mode=True)
            self.active = name

    @property
    def adapters(self) -> dict[str, str]:
        """{adapter name: adapter dir}, in the order they were attached."""
        return {a.name: a.adapter for a in self.attached}

    # -- loading ------------------------------------------------------------------------------------

    def _attach(
        self,
        role: str,
        adapter_dir: str,
        model: str,
        adapter: str | None = None,
        revision: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        merge: bool = True,  # load_pretrained's option; a shared base keeps adapters unmerged
    ) -> tuple[_Attached, object]:
        from peft import PeftConfig, PeftModel
        from transformers import AutoModelForCausalLM

        written = adapter_base(adapter_dir)
        base = resolve_model_path(model) if adapter is not None else resolve_model_path(written)
        dev = pick_device(device)
        key = (base, revision, pick_dtype(dtype, dev), dev)
        self._check_base(role, adapter_dir, written, base, key)
        name = self._unique(role)
        config = PeftConfig.from_pretrained(adapter_dir)
        # Attached to a causal LM whatever its task: a classifier's head is read apart (_score_head); other
        # modules_to_save (a Stage-2 lm_head) stay and PEFT swaps them in with their adapter.
        saved = [m for m in config.modules_to_save or [] if m not in CLASSIFIER_HEADS]
        config.task_type, config.modules_to_save, config.inference_mode = None, saved or None, True
        if self.net is None:
            base_net = AutoModelForCausalLM.from_pretrained(base, revision=revision, dtype=key[2])
            net = PeftModel(base_net, config, adapter_name=name).to(dev)
        else:
            net = self.net
            net.add_adapter(name, config)
        result = net.load_adapter(adapter_dir, adapter_name=name, is_trainable=False)
        if result.missing_keys:
            raise ConfigError(
                f"shared base: the {role} adapter {adapter_dir} does not fit the base {base} "
                f"(missing {result.missing_keys[:3]})"
            )
        self.net, self.key = net.to(dev).eval(), self.key or key
        note_model(f"{role}:{adapter_dir}", base, self.net, adapter_dir)
        self.active = None
        self.activate(name)  # whichever adapter was active before, the new one's layers now exist
        attached = _Attached(name, adapter_dir, written)
        self.attached.append(attached)
        tok_source = (
            adapter_dir if (Path(adapter_dir) / "tokenizer_config.json").is_file() else base
        )
        return attached, load_tokenizer(tok_source, revision if tok_source == base else None)

    def _check_base(self, role: str, adapter_dir: str, written: str, base: str, key: tuple) -> None:
        if self.key is None:
            return
        first = self.attached[0]
        if not _same_model(base, self.key[0]):
            raise ConfigError(
                f"shared base: the {role} adapter {adapter_dir} was trained on {written!r}, the "
                f"{first.name} adapter {first.adapter} on {first.base!r}: adapters can only share "
                "the base they were both trained on (pipeline.shared_base=false loads two models)"
            )
        labels = ("revision", "dtype", "device")
        for label, have, want in zip(labels, self.key[1:], key[1:]):
            if have != want:
                raise ConfigError(
                    f"shared base: the {role} adapter {adapter_dir} asks for {label} {want}, the "
                    f"{first.name} adapter {first.adapter} loaded the base with {have}: "
                    f"set both stages' {label} alike"
                )

    def _unique(self, role: str) -> str:
        names = {a.name for a in self.attached}
        n, name = 1, role
        while name in names:
            n += 1
            name = f"{role}_{n}"
        return name


def _adapter_dir(role: str, model: str, adapter: str | None) -> str:
    """The adapter dir a stage names (``adapter``, else ``model`` itself), or a ConfigError."""
    adapter_dir = resolve_model_path(adapter if adapter is not None else model)
    if not is_adapter_dir(adapter_dir):
        raise ConfigError(
            f"shared base: the {role} model {adapter or model!r} is not a PEFT adapter dir "
            "(no adapter_config.json); only adapters can share one base"
        )
    return adapter_dir


def _score_head(adapter_dir: str) -> torch.nn.Linear:
    """A Stage-1 adapter's one-logit head (on the CPU, in the adapter's dtype)."""
    from peft.utils import load_peft_weights

    weights = {
        SCORE_KEY.search(k).group(1): v
        for k, v in load_peft_weights(adapter_dir, device="cpu").items()
        if SCORE_KEY.search(k)
    }
    if "weight" not in weights:
        raise ConfigError(
            f"shared base: {adapter_dir} carries no score head (a Stage-1 adapter saves it as "
            "modules_to_save); only a DeAR-P adapter scores pairs on a shared base"
        )
    weight = weights["weight"]
    head = torch.nn.Linear(
        weight.shape[1], weight.shape[0], bias="bias" in weights, dtype=weight.dtype
    )
    head.load_state_dict(weights)
    return head.eval().requires_grad_(False)


def _same_model(a: str, b: str) -> bool:
    """Two resolved model names that load the same weights (a local dir by any path to it)."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


class _View:
    """The shared model as one adapter sees it."""

    def __init__(self, shared: SharedBase, name: str):
        self.shared, self.adapter_name = shared, name

    @property
    def causal(self):
        """The transformers causal LM under the PEFT wrapper (its LoRA layers follow ``activate``)."""
        return self.shared.net.get_base_model()

    def parameters(self):
        return self.shared.net.parameters()

    def eval(self):
        return self


class _Backbone:
    """The shared decoder stack, called with the view's adapter active."""

    def __init__(self, view: ClassifierView):
        self.view = view

    def __call__(self, *args, **kwargs):
        self.view.shared.activate(self.view.adapter_name)
        net = self.view.causal
        return getattr(net, net.base_model_prefix)(*args, **kwargs)


class ClassifierView(_View):
    """What ``dear.rerank.pooling`` needs of ``LlamaForSequenceClassification``, on the shared base."""

    base_model_prefix = "backbone"

    def __init__(self, shared: SharedBase, name: str, score: torch.nn.Linear):
        super().__init__(shared, name)
        self.score = score
        self.backbone = _Backbone(self)
        self.config = copy.deepcopy(self.causal.config)
        if self.config.pad_token_id is None:
            self.config.pad_token_id = 0  # as load_sequence_classifier (the DeAR reference's rule)
        self.config.num_labels = 1

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs):
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, **kwargs
        ).last_hidden_state
        index = (
            torch.arange(input_ids.shape[1], device=input_ids.device)
            * (input_ids != self.config.pad_token_id)
        ).argmax(-1)
        pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), index]
        return SimpleNamespace(logits=self.score(pooled))


class CausalLMView(_View):
    """The shared base as a causal LM with the view's adapter active on every call."""

    @property
    def config(self):
        return self.causal.config

    @property
    def generation_config(self):
        return self.causal.generation_config

    def __call__(self, *args, **kwargs):
        self.shared.activate(self.adapter_name)
        return self.causal(*args, **kwargs)

    def generate(self, *args, **kwargs):
        self.shared.activate(self.adapter_name)
        return self.causal.generate(*args, **kwargs)
