"""Stage-1 losses over groups: (B, m) student scores, labels (graded, usually ``[1, 0, ..., 0]``) and teacher logits.

Every loss is a **mean** as in the released DeAR code (``rank_loss.py``, ``modeling.py``), so α weighs comparable
magnitudes whatever the group size. Rank losses (``DistillLoss.rank``):
- ``ranknet``: the reference's RankNet: BCE-with-logits of s_i − s_j against σ(y_i − y_j) over pairs i < j.
- ``ranknet_eq5``: paper eq. 5, log(1 + e^(s_j − s_i)) over the pairs with y_i > y_j.
- ``softmax_ce``: the reference's default ``loss_type`` (positive at index 0).
- ``pointce``: paper eq. 4, binary cross-entropy per document.

``rank_weighted_ranknet`` is FIRST's listwise-SFT ranking loss on one window's id scores (Stage 2, not a
``DistillLoss`` option).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def point_ce(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PointCE (paper eq. 4): BCE of σ(s) against label > 0, averaged over all B·m documents."""
    return F.binary_cross_entropy_with_logits(scores, (labels > 0).to(scores.dtype))


def ranknet(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference's RankNet: mean BCE(σ(s_i − s_j), σ(y_i − y_j)) over pairs i < j (soft targets: 0.73 for
    positive-over-negative, 0.5 for equal labels)."""
    upper = torch.triu(
        torch.ones(scores.size(-1), scores.size(-1), dtype=torch.bool, device=scores.device), 1
    )
    # (B, m(m−1)/2): s_i − s_j, i < j
    diffs = (scores.unsqueeze(-1) - scores.unsqueeze(-2))[:, upper]
    targets = torch.sigmoid(
        (labels.unsqueeze(-1) - labels.unsqueeze(-2))[:, upper].to(scores.dtype)
    )
    return F.binary_cross_entropy_with_logits(diffs, targets)


def ranknet_eq5(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """RankNet as paper eq. 5: log(1 + e^(s_j − s_i)) averaged over pairs with label_i > label_j."""
    better = labels.unsqueeze(-1) > labels.unsqueeze(-2)  # (B, m, m): i above j
    diffs = scores.unsqueeze(-1) - scores.unsqueeze(-2)  # s_i − s_j
    return F.softplus(-diffs)[better].mean()


def rank_weighted_ranknet(scores: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """FIRST's ranking loss (Reddy et al., 2024): RankNet over every pair of a target order, each pair weighted by
    1 / (r_i + r_j) (1-based target ranks, so pairs near the top weigh most), averaged over pairs as
    ``BCEWithLogitsLoss(weight=...)``. ``scores`` (m,), ``ranks`` (m,) 0-based target positions."""
    above = ranks.unsqueeze(-1) < ranks.unsqueeze(-2)  # (m, m): i ranked above j
    diffs = scores.unsqueeze(-1) - scores.unsqueeze(-2)  # s_i − s_j
    weights = 1.0 / (ranks.unsqueeze(-1) + ranks.unsqueeze(-2) + 2).to(scores.dtype)
    return (weights * F.softplus(-diffs))[above].mean()


def softmax_ce(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the group softmax, positive at index 0 (the released DeAR ``softmax_ce``)."""
    target = torch.zeros(scores.size(0), dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores, target)


def kd_kl(
    student: torch.Tensor, teacher: torch.Tensor, tau: float, direction: str = "teacher_student"
) -> torch.Tensor:
    """τ² · KL of temperature-softened group distributions, mean over queries: ``teacher_student`` KL(softmax(t/τ) ‖
    softmax(s/τ)) as the released code; ``student_teacher`` KL(P_s ‖ P_t) as paper eq. 7."""
    log_s = F.log_softmax(student / tau, dim=-1)
    log_t = F.log_softmax(teacher.to(student.dtype) / tau, dim=-1)
    if direction == "teacher_student":
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)
    elif direction == "student_teacher":
        kl = (log_s.exp() * (log_s - log_t)).sum(-1)
    else:
        raise ValueError(
            f"loss.direction must be 'teacher_student' or 'student_teacher', got {direction!r}"
        )
    return tau**2 * kl.mean()


RANK_LOSSES = {
    "pointce": point_ce,
    "ranknet": ranknet,
    "ranknet_eq5": ranknet_eq5,
    "softmax_ce": softmax_ce,
}


@dataclass
class DistillLoss:
    """Total = (1 − α) · rank_loss + α · KD (paper eq. 8). With α = 0 the teacher is never read."""

    rank: str = "ranknet"
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
            return {
                "loss": rank,
                "rank": rank.detach(),
                "kd": torch.zeros((), device=scores.device),
            }
        if teacher is None:
            raise ValueError(f"alpha={self.alpha} needs teacher logits for every group")
        kd = kd_kl(scores, teacher, self.tau, self.direction)
        return {
            "loss": (1 - self.alpha) * rank + self.alpha * kd,
            "rank": rank.detach(),
            "kd": kd.detach(),
        }
