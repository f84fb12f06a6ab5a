"""Stage-1 losses over groups of scores: (B, m) student scores, labels and teacher logits.

Labels are graded relevance per document (the usual group is ``[1, 0, ..., 0]``: the positive
first). Every loss returns the mean over queries in the batch, so α trades off comparable
magnitudes whatever the group size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def point_ce(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PointCE (paper eq. 4): binary cross-entropy of σ(s) against relevant (label > 0) or not,
    summed over the group's documents, averaged over queries."""
    targets = (labels > 0).to(scores.dtype)
    return F.binary_cross_entropy_with_logits(scores, targets, reduction="none").sum(-1).mean()


def ranknet(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """RankNet (paper eq. 5): Σ over pairs (i, j) with label_i > label_j of log(1 + e^(s_j − s_i)),
    averaged over queries."""
    better = labels.unsqueeze(-1) > labels.unsqueeze(-2)  # (B, m, m): i above j
    diffs = scores.unsqueeze(-1) - scores.unsqueeze(-2)  # s_i − s_j
    pair_losses = F.softplus(-diffs) * better  # log(1 + e^(s_j − s_i)) where i should win
    return pair_losses.sum(dim=(-1, -2)).mean()


def softmax_ce(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the group softmax with the positive at index 0 (the released DeAR code's
    ``softmax_ce``, also the localized-contrastive loss of RankLLaMA/Tevatron)."""
    target = torch.zeros(scores.size(0), dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores, target)


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, tau: float, direction: str = "teacher_student") -> torch.Tensor:
    """τ² · KL between temperature-softened group distributions, averaged over queries.

    ``teacher_student``: KL(softmax(t/τ) ‖ softmax(s/τ)) — the released DeAR code and classic
    Hinton distillation. ``student_teacher``: KL(P_s ‖ P_t) as paper eq. 7 writes it.
    """
    log_s = F.log_softmax(student / tau, dim=-1)
    log_t = F.log_softmax(teacher.to(student.dtype) / tau, dim=-1)
    if direction == "teacher_student":
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)
    elif direction == "student_teacher":
        kl = (log_s.exp() * (log_s - log_t)).sum(-1)
    else:
        raise ValueError(f"loss.direction must be 'teacher_student' or 'student_teacher', got {direction!r}")
    return tau**2 * kl.mean()


RANK_LOSSES = {"pointce": point_ce, "ranknet": ranknet, "softmax_ce": softmax_ce}


@dataclass
class DistillLoss:
    """Total = (1 − α) · rank_loss + α · KD (paper eq. 8). With α = 0 the teacher is never read."""

    rank: str = "pointce"
    alpha: float = 0.1
    tau: float = 2.0
    direction: str = "teacher_student"

    def __post_init__(self):
        if self.rank not in RANK_LOSSES:
            raise ValueError(f"loss.rank must be one of {sorted(RANK_LOSSES)}, got {self.rank!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    @property
    def needs_teacher(self) -> bool:
        return self.alpha > 0

    def __call__(self, scores, labels, teacher=None) -> dict[str, torch.Tensor]:
        """→ {"loss", "rank", "kd"}; ``teacher`` (B, m) is required when α > 0."""
        rank = RANK_LOSSES[self.rank](scores, labels)
        if not self.needs_teacher:
            return {"loss": rank, "rank": rank.detach(), "kd": torch.zeros((), device=scores.device)}
        if teacher is None:
            raise ValueError(f"alpha={self.alpha} needs teacher logits for every group")
        kd = kd_kl(scores, teacher, self.tau, self.direction)
        return {"loss": (1 - self.alpha) * rank + self.alpha * kd, "rank": rank.detach(), "kd": kd.detach()}
