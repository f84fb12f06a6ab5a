"""Listwise SFT (DeAR-L): a LoRA adapter named ``listwise`` on an instruction model, causal-LM loss on the response.

With ``pointwise_adapter`` (a Stage-1 DeAR-P LoRA on the same base) that adapter is loaded frozen beside it on one
base; only ``listwise`` trains and is exported. Stage-1 ``score`` heads are not loaded.

``rank_loss_weight`` > 0 adds FIRST's ranking loss (Reddy et al., 2024: the answer's language-model loss plus 10 ×
a rank-weighted RankNet on the first identifier): each window id's log-probability as the answer's first
(``{marker} [k]``, summed over the id's tokens, exactly what ``listwise.scoring=first_id`` ranks by) is pushed into the
target order. The ids' shared tokens come from the training pass's cache; each id's own tokens are one extra pass of
a few tokens per id over it.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from dear.distill.losses import rank_weighted_ranknet
from dear.errors import ConfigError
from dear.listwise.answer_scores import tail_logprobs
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
        rank_loss_weight: float = 0.0,
    ):
        super().__init__()
        if rank_loss_weight < 0:
            raise ConfigError(f"module.rank_loss_weight must be >= 0, got {rank_loss_weight}")
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
                "rank_loss_weight": rank_loss_weight,
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
        rank_loss_weight: float = 0.0,
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
            rank_loss_weight=rank_loss_weight,
        )

    def forward(self, batch: dict) -> torch.Tensor:
        """The training loss (``losses(batch)["loss"]``)."""
        return self.losses(batch)["loss"]

    def losses(self, batch: dict, with_rank: bool | None = None) -> dict[str, torch.Tensor]:
        """``lm``: mean cross-entropy over response tokens of (B, L) batches, logits only from the first response
        position (``logits_to_keep``: prompt logits would dominate memory; same loss as ``labels=``, tested). With
        ``rank_loss_weight`` > 0 (or ``with_rank`` true, whatever the weight) also ``rank`` (FIRST's loss, mean over the
        rows with ranking targets) and ``rank_top1`` (the rows whose highest-scored id is the target's first);
        ``loss``: lm + weight × rank."""
        labels = batch["labels"]
        answered = labels != IGNORE
        if not bool(answered.any()):
            raise ValueError("a batch without response tokens: every label is -100")
        first = max(int(answered.float().argmax(-1)[answered.any(-1)].min()), 1)
        # positions first-1 … L-1 predict tokens first … L-1 and one past
        keep = labels.size(1) - first + 1
        weight = self.hparams.rank_loss_weight
        ranked = weight > 0 if with_rank is None else with_rank
        out = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            logits_to_keep=keep,
            use_cache=ranked,
        )
        logits = out.logits[:, :-1].float()
        lm = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), labels[:, first:].reshape(-1), ignore_index=IGNORE
        )
        if not ranked:
            return {"loss": lm, "lm": lm}
        targets = batch.get("rank") or []
        rows = [b for b, t in enumerate(targets) if t is not None]
        if not rows:
            raise ValueError(
                "module.rank_loss_weight > 0, but no example of this batch has ranking targets: the data must be "
                "rendered with its prompt (data.prompt) and each answer be that prompt's ranking line of the whole "
                "window, without reasoning (dear.listwise.sft_data.rank_targets)"
            )
        layers = [(layer[0], layer[1]) for layer in out.past_key_values]
        pad_id = self.tokenizer.pad_token_id or 0
        rank, top1 = [], []
        for b in rows:
            target = targets[b]
            # the prompt and the ids' shared tokens; the kept logits start at position first-1, and position
            # prefix-1 predicts each id's first own token
            prefix = int(answered[b].float().argmax()) + target["head"]
            following = out.logits[b, prefix - first].float().log_softmax(-1)
            scores = tail_logprobs(
                self.model,
                [(k[b : b + 1, :, :prefix], v[b : b + 1, :, :prefix]) for k, v in layers],
                following,
                target["tails"],
                pad_id,
            )
            ranks = torch.tensor(target["ranks"], device=scores.device)
            rank.append(rank_weighted_ranknet(scores, ranks))
            top1.append(float(ranks[int(scores.argmax())] == 0))
        rank_loss = torch.stack(rank).mean()
        return {
            "loss": lm + weight * rank_loss,
            "lm": lm,
            "rank": rank_loss,
            "rank_top1": torch.tensor(sum(top1) / len(top1), device=lm.device),
        }

    def training_step(self, batch, batch_idx):
        parts = self.losses(batch)
        size = batch["input_ids"].size(0)
        self.log("train/loss", parts["loss"], prog_bar=True, batch_size=size)
        if "rank" in parts:
            self.log_dict(
                {f"train/{k}": parts[k].detach() for k in ("lm", "rank")}, batch_size=size
            )
        return parts["loss"]

    def validation_step(self, batch, batch_idx):
        parts = self.losses(batch)
        size = batch["input_ids"].size(0)
        self.log("val/loss", parts["loss"], prog_bar=True, sync_dist=True, batch_size=size)
        if "rank" in parts:
            self.log_dict(
                {f"val/{k}": parts[k] for k in ("lm", "rank", "rank_top1")},
                sync_dist=True,
                batch_size=size,
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
