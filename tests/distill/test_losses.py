"""Stage-1 losses against independent computations, including the sign of their gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dear.distill.losses import (
    DistillLoss,
    kd_kl,
    point_ce,
    rank_weighted_ranknet,
    ranknet,
    ranknet_eq5,
    softmax_ce,
)

torch.manual_seed(0)
S = torch.randn(3, 5, dtype=torch.float64)
T = torch.randn(3, 5, dtype=torch.float64)
Y = torch.tensor([[1.0, 0, 0, 0, 0], [2, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.float64)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_point_ce_is_the_mean_binary_cross_entropy_over_documents():
    terms = [
        -math.log(sigmoid(S[b, j].item()))
        if Y[b, j] > 0
        else -math.log(1 - sigmoid(S[b, j].item()))
        for b in range(3)
        for j in range(5)
    ]
    assert point_ce(S, Y).item() == pytest.approx(sum(terms) / len(terms))


def test_ranknet_is_the_references_soft_target_bce_over_pairs_i_below_j():
    terms = []
    for b in range(3):
        for i in range(5):
            for j in range(i + 1, 5):
                p, target = (
                    sigmoid(S[b, i].item() - S[b, j].item()),
                    sigmoid(Y[b, i].item() - Y[b, j].item()),
                )
                terms.append(-(target * math.log(p) + (1 - target) * math.log(1 - p)))
    assert ranknet(S, Y).item() == pytest.approx(sum(terms) / len(terms))


def test_ranknet_eq5_is_the_mean_over_label_ordered_pairs():
    terms = [
        math.log(1 + math.exp(S[b, j].item() - S[b, i].item()))
        for b in range(3)
        for i in range(5)
        for j in range(5)
        if Y[b, i] > Y[b, j]
    ]
    assert ranknet_eq5(S, Y).item() == pytest.approx(sum(terms) / len(terms))


def test_firsts_ranknet_weighs_each_ordered_pair_by_its_inverse_rank_sum():
    """FIRST: BCE-with-logits(s_i − s_j, 1) weighted 1 / (r_i + r_j) (1-based), mean over the pairs."""
    scores, ranks = S[0], torch.tensor([3, 0, 4, 1, 2])  # window position 1 is the target's first
    terms = [
        math.log(1 + math.exp(scores[j].item() - scores[i].item())) / (ranks[i] + ranks[j] + 2)
        for i in range(5)
        for j in range(5)
        if ranks[i] < ranks[j]
    ]
    assert rank_weighted_ranknet(scores, ranks).item() == pytest.approx(sum(terms) / len(terms))
    expected = F.binary_cross_entropy_with_logits(
        torch.tensor(
            [scores[i] - scores[j] for i in range(5) for j in range(5) if ranks[i] < ranks[j]]
        ),
        torch.ones(10, dtype=torch.float64),
        weight=torch.tensor(
            [
                1.0 / (ranks[i] + ranks[j] + 2)
                for i in range(5)
                for j in range(5)
                if ranks[i] < ranks[j]
            ],
            dtype=torch.float64,
        ),
    )
    assert rank_weighted_ranknet(scores, ranks).item() == pytest.approx(expected.item())
    # the target order scored in order loses less than reversed
    ordered = -ranks.double()
    assert rank_weighted_ranknet(ordered, ranks) < rank_weighted_ranknet(-ordered, ranks)


def test_losses_are_means_so_group_size_does_not_scale_them():
    """At m = 8 with all scores 0 the reference's RankNet is ~0.7 per pair, not a sum of 28."""
    zeros, labels = torch.zeros(2, 8), torch.zeros(2, 8)
    labels[:, 0] = 1
    # BCE(0.5, t) = log 2 for any t
    assert ranknet(zeros, labels).item() == pytest.approx(math.log(2))
    assert point_ce(zeros, labels).item() == pytest.approx(math.log(2))
    assert ranknet_eq5(zeros, labels).item() == pytest.approx(math.log(2))


def test_softmax_ce_matches_log_softmax_of_positive():
    expected = (
        -sum(math.log(math.exp(S[b, 0]) / sum(math.exp(x) for x in S[b])) for b in range(3)) / 3
    )
    assert softmax_ce(S, Y).item() == pytest.approx(expected)


def test_kd_matches_torch_kl_on_explicit_probabilities():
    tau = 2.0
    p_t, p_s = F.softmax(T / tau, -1), F.softmax(S / tau, -1)
    expected = tau**2 * F.kl_div(p_s.log(), p_t, reduction="batchmean")  # KL(P_t || P_s)
    assert kd_kl(S, T, tau).item() == pytest.approx(expected.item())
    # KL(P_s || P_t), paper eq. 7
    reverse = tau**2 * F.kl_div(p_t.log(), p_s, reduction="batchmean")
    assert kd_kl(S, T, tau, "student_teacher").item() == pytest.approx(reverse.item())
    assert kd_kl(T, T, tau).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("loss", [point_ce, ranknet, ranknet_eq5, softmax_ce])
def test_rank_losses_push_the_positive_up_and_negatives_down(loss):
    scores = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
    loss(scores, labels).backward()
    assert scores.grad[0, 0] < 0  # gradient descent raises the positive's score
    assert (scores.grad[0, 1:] > 0).all()  # and lowers every negative's


def test_kd_gradient_moves_student_toward_teacher():
    student = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    teacher = torch.tensor([[3.0, 0.0, -3.0]], dtype=torch.float64)
    kd_kl(student, teacher, tau=2.0).backward()
    assert student.grad[0, 0] < 0 < student.grad[0, 2]


def test_total_mixes_with_alpha_and_ignores_teacher_at_zero():
    mixed = DistillLoss("ranknet", alpha=0.3, tau=2.0)(S, Y, T)
    assert mixed["loss"].item() == pytest.approx(
        0.7 * ranknet(S, Y).item() + 0.3 * kd_kl(S, T, 2.0).item()
    )
    zero = DistillLoss("pointce", alpha=0.0)
    assert (
        zero(S, Y, T)["loss"].item()
        == zero(S, Y, -T)["loss"].item()
        == zero(S, Y, None)["loss"].item()
    )
    assert DistillLoss("pointce", alpha=1.0)(S, Y, T)["loss"].item() == pytest.approx(
        kd_kl(S, T, 2.0).item()
    )
    with pytest.raises(ValueError, match="needs teacher logits"):
        DistillLoss("pointce", alpha=0.5)(S, Y, None)
    with pytest.raises(ValueError, match="loss.rank must be one of"):
        DistillLoss("listnet")
