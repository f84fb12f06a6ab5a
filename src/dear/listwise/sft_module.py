"""Listwise SFT (DeAR-L): a LoRA adapter named ``listwise`` on an instruction model, causal-LM loss on the response.

With ``pointwise_adapter`` (a Stage-1 DeAR-P LoRA on the same base) that adapter is loaded frozen beside it on one
base; only ``listwise`` trains and is exported. Stage-1 ``score`` heads are not loaded.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from dear.errors import ConfigError
from dear.listwise.exported import EXPORT_META, export_settings
from dear.listwise.sft_data import IGNORE
from dear.models.adapters import adapter_base, add_lora, is_adapter_dir
from dear.models.loading import load_tokenizer, load_trainable, record_base, resolve_model_path
from dear.utils.io import atomic_write_json
from dear.utils.plain import to_plain
from dear.utils.state import trainable_state

ADAPTER = "listwise"
STAGE1 = "pointwise"


def load_student(
    model: str,
    lora: dict,
    pointwise_adapter: str | None = None,
    dtype: str = "auto",
    gradient_checkpointing: bool = False,
):
    """A ``PeftModelForCausalLM`` with a trainable ``listwise`` LoRA (+ a frozen ``pointwise`` one)."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(model)
    base = load_trainable(
        AutoModelForCausalLM,
        path,
        dtype=dtype,
        gradient_checkpointing=gradient_checkpointing,
        input_require_grads=True,
    )
    net = add_lora(base, lora, "CAUSAL_LM", adapter_name=ADAPTER)
    if pointwise_adapter:
        _check_shared_base(path, pointwise_adapter)
        net.load_adapter(
            resolve_model_path(pointwise_adapter), adapter_name=STAGE1, is_trainable=False
        )
        net.set_adapter(ADAPTER)
    return net


def _check_shared_base(base_path: str, adapter: str) -> None:
    adapter_dir = resolve_model_path(adapter)
    if not is_adapter_dir(adapter_dir):
        config = Path(adapter_dir) / "adapter_config.json"
        raise FileNotFoundError(
            f"student.pointwise_adapter: {config} not found (a PEFT adapter dir is expected)"
        )
    base = adapter_base(adapter_dir)
    if resolve_model_path(base) != base_path:
        raise ValueError(
            f"student.pointwise_adapter was trained on {base!r}, not on student.model "
            f"{base_path!r}: the two adapters can only share a base they were both trained on"
        )


class ListwiseSFTModule(L.LightningModule):
    """``lora``: LoraConfig fields (paper: r 16, lora_alpha 8); AdamW, linear warm-up, then ``scheduler``.
    ``reranker`` and ``generation`` configure ``export_reranker``."""

    def __init__(
        self,
        model: str,
        lora: dict,
        pointwise_adapter: str | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.1,
        scheduler: str = "cosine",
        dtype: str = "auto",
        gradient_checkpointing: bool = False,
        reranker=None,
        generation: dict | None = None,
    ):
        super().__init__()
        lora, generation = to_plain(lora), to_plain(generation or {})
        # Plain containers only: checkpoints must load with torch.load(weights_only=True) on resume.
        self.save_hyperparameters(
            {
                "model": model,
                "lora": lora,
                "pointwise_adapter": pointwise_adapter,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_ratio": warmup_ratio,
                "scheduler": scheduler,
                "dtype": dtype,
                "gradient_checkpointing": gradient_checkpointing,
                "generation": generation,
            }
        )
        self.tokenizer = load_tokenizer(model)
        # from_pretrained returns eval mode, and Lightning keeps the modes it finds: LoRA dropout needs train.
        self.model = load_student(
            model, lora, pointwise_adapter, dtype, gradient_checkpointing
        ).train()
        self.reranker, self.generation = reranker, generation
        self.strict_loading = (
            False  # checkpoints hold the trainable tensors only (on_save_checkpoint)
        )

    @classmethod
    def from_student(
        cls,
        student: dict,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.1,
        scheduler: str = "cosine",
        reranker=None,
        generation: dict | None = None,
    ):
        """The module for a ``conf/student/*_instruct`` option (export in its dtype unless ``generation`` sets one)."""
        student = to_plain(student)
        names = ("lora", "pointwise_adapter", "dtype", "gradient_checkpointing")
        unknown = sorted(set(student) - {"model", *names})
        if unknown:
            raise ConfigError(
                f"student: unknown field(s) {unknown} for the listwise SFT module (expected model, "
                f"{', '.join(names)}; the optimiser's settings are module.lr, module.weight_decay, "
                "module.warmup_ratio)"
            )
        generation = {"dtype": student.get("dtype", "auto"), **to_plain(generation or {})}
        return cls(
            student["model"],
            **{k: student[k] for k in names if k in student},
            lr=lr,
            weight_decay=weight_decay,
            warmup_ratio=warmup_ratio,
            scheduler=scheduler,
            reranker=reranker,
            generation=generation,
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over response tokens of (B, L) batches; logits only from the first response position
        (``logits_to_keep``: prompt logits would dominate memory). Same loss as ``labels=`` (tested)."""
        labels = batch["labels"]
        answered = labels != IGNORE
        if not bool(answered.any()):
            raise ValueError("a batch without response tokens: every label is -100")
        first = max(int(answered.float().argmax(-1)[answered.any(-1)].min()), 1)
        # positions first-1 … L-1 predict tokens first … L-1 and one past
        keep = labels.size(1) - first + 1
        logits = (
            self.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                logits_to_keep=keep,
            )
            .logits[:, :-1]
            .float()
        )
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), labels[:, first:].reshape(-1), ignore_index=IGNORE
        )

    def training_step(self, batch, batch_idx):
        loss = self(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0))
        return loss

    def validation_step(self, batch, batch_idx):
        self.log(
            "val/loss",
            self(batch),
            prog_bar=True,
            sync_dist=True,
            batch_size=batch["input_ids"].size(0),
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only trainable tensors: the frozen base is reloaded from the hub, not checkpointed."""
        checkpoint["state_dict"] = trainable_state(self, checkpoint["state_dict"])

    def configure_optimizers(self):
        from transformers import get_scheduler

        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(self.hparams.warmup_ratio * total)
        schedule = get_scheduler(
            self.hparams.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def export(self, directory: str | Path) -> Path:
        """Save the ``listwise`` adapter, tokenizer and resolved settings (``module.yaml``) flat into ``directory``."""
        directory = Path(directory)
        self.model.save_pretrained(directory, selected_adapters=[ADAPTER])
        for f in (directory / ADAPTER).iterdir():  # PEFT nests named adapters; flatten
            f.replace(directory / f.name)
        (directory / ADAPTER).rmdir()
        record_base(directory, self.hparams.model)
        self.tokenizer.save_pretrained(directory)
        OmegaConf.save(OmegaConf.create(to_plain(dict(self.hparams))), directory / "module.yaml")
        settings = (
            export_settings(self.reranker, self.generation) if self.reranker is not None else None
        )
        if settings is not None:  # how to run it: listwise=export reads this
            atomic_write_json(directory / EXPORT_META, settings)
        return directory

    def export_reranker(self, directory: str | Path):
        """The listwise stage running the adapter exported to ``directory``."""
        from dear.listwise.backends.hf import TransformersBackend

        if self.reranker is None:
            raise ValueError(
                "module.reranker is not set: configure the listwise reranker used to evaluate the export"
            )
        return self.reranker(backend=TransformersBackend(str(directory), **self.generation))
