"""The Stage-1 LightningModule: a LoRA student scored in groups (B·m pairs → (B, m) scores), trained on DistillLoss;
Lightning owns devices, precision and strategy. Checkpoints hold only trainable weights (adapters + score head)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import torch

from dear.distill.losses import DistillLoss
from dear.distill.student import base_net, load_student
from dear.models.loading import record_base
from dear.rerank.pointwise import EXPORT_META
from dear.utils.plain import to_plain
from dear.utils.resume import restore_loader_states
from dear.utils.state import trainable_state


class DistillModule(L.LightningModule):
    def __init__(
        self,
        student: dict,
        loss: DistillLoss,
        lr: float = 1e-4,
        weight_decay: float = 0.1,
        warmup_ratio: float = 0.1,
    ):
        super().__init__()
        self.student_cfg = to_plain(student)
        self.loss = loss
        self.lr, self.weight_decay, self.warmup_ratio = lr, weight_decay, warmup_ratio
        # The module owns the network; the student's kind scores it and describes its export.
        self.tokenizer, self.model, self.student = load_student(self.student_cfg)
        self.model.train()  # from_pretrained leaves eval mode (no dropout); Lightning keeps module modes
        self.strict_loading = False  # checkpoints carry trainable weights only
        self._val_scores: list[tuple[int, torch.Tensor]] = []

    @property
    def _net(self):
        """The HF model under the PEFT wrapper (LoRA layers are injected in place)."""
        return base_net(self.model)

    @property
    def pooling(self) -> str:
        return self.student.pooling

    def forward(self, batch: dict) -> torch.Tensor:
        """(N,) scores for N tokenised pairs (joined for a cross-encoder, apart for a bi-encoder)."""
        return self.student.scores(self.model, batch)

    def training_step(self, batch, batch_idx):
        scores = self(batch).view_as(batch["labels"])  # (B, m)
        parts = self.loss(scores, batch["labels"], batch.get("teacher"))
        if not torch.isfinite(parts["loss"]):
            raise FloatingPointError(
                f"step {self.global_step}: the loss is {parts['loss'].item()} (rank "
                f"{parts['rank'].item()}, kd {parts['kd'].item()}) on the groups of "
                f"{sorted({q for q, _ in batch.get('pairs', [])})}: "
                "lower module.lr or check the teacher"
            )
        B = scores.size(0)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, prog_bar=True, batch_size=B)
        return parts["loss"]

    def validation_step(self, batch, batch_idx):
        self._val_scores.append((int(batch["start"]), self(batch).float().cpu()))

    def on_validation_epoch_end(self):
        if not self._val_scores:
            return
        dm = self.trainer.datamodule
        flat = np.zeros(len(dm.val_pairs), dtype=np.float32)
        for start, scores in self._val_scores:
            flat[start : start + len(scores)] = scores.numpy()
        self._val_scores.clear()
        aggregate = dm.validation.evaluate(flat)
        self.log_dict({f"val/{k}": v for k, v in aggregate.items()}, prog_bar=True, sync_dist=False)

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        schedule = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_start(self):
        # estimated_stepping_batches builds the loader before the restore: set the epoch position now.
        restore_loader_states(self.trainer)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["state_dict"] = trainable_state(self, checkpoint["state_dict"])

    def export(self, directory: str | Path) -> Path:
        """Save the adapter + score head (or full model), tokenizer and scoring settings for ``from_export``."""
        directory = Path(directory)
        self.model.save_pretrained(directory)
        record_base(directory, self.student_cfg["model"])
        self.tokenizer.save_pretrained(directory)
        meta = {
            "kind": self.student.name,
            "base_model": self.student_cfg["model"],
            **self.student.export_meta(self.student_cfg, self.tokenizer),
        }
        (directory / EXPORT_META).write_text(json.dumps(meta, indent=2))
        return directory

    def export_reranker(self, directory: str | Path):
        """The pointwise stage scoring with the student exported to ``directory``."""
        from dear.rerank.pointwise import PointwiseReranker, scorer_from_export

        return PointwiseReranker(scorer_from_export(str(directory)))
