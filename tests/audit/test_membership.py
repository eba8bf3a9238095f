"""Membership inference: the rank AUC (ties included), thresholds, scores from logits."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from det_forget.audit import (
    ATTACKS,
    MembershipResult,
    auc_standard_error,
    best_threshold,
    membership_inference,
    membership_scores,
    rank_auc,
    threshold_attack,
)


def _pairwise_auc(pos, neg) -> float:
    """The definition: P(pos > neg) + 0.5 P(pos == neg), over every pair."""
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_perfectly_separated_scores_give_one_and_zero():
    assert rank_auc([3.0, 4.0, 5.0], [0.0, 1.0, 2.0]) == 1.0
    assert rank_auc([0.0, 1.0, 2.0], [3.0, 4.0, 5.0]) == 0.0
    assert rank_auc([math.inf], [-math.inf, 1e30]) == 1.0


def test_identical_distributions_give_one_half():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4000, generator=gen)
    b = torch.randn(4000, generator=gen)
    assert abs(rank_auc(a, b) - 0.5) < 0.02
    assert rank_auc(a, a) == 0.5  # the same samples on both sides: every pair is mirrored


def test_ties_count_one_half():
    assert rank_auc([1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5
    assert rank_auc([1.0, 2.0], [1.0]) == 0.75
    gen = torch.Generator().manual_seed(1)
    pos = torch.randint(0, 4, (37,), generator=gen).float()
    neg = torch.randint(0, 4, (23,), generator=gen).float()
    assert rank_auc(pos, neg) == pytest.approx(_pairwise_auc(pos.tolist(), neg.tolist()))


def test_auc_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="empty"):
        rank_auc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        rank_auc([float("nan")], [1.0])


def test_standard_error_shrinks_with_samples():
    small, large = auc_standard_error(0.5, 100, 100), auc_standard_error(0.5, 1000, 1000)
    assert large < small
    assert large == pytest.approx(0.0129, abs=5e-4)
    assert auc_standard_error(1.0, 10, 10) == 0.0


def test_best_threshold_is_realisable():
    acc, t = best_threshold([2.0, 3.0, 3.0], [0.0, 1.0, 3.0])
    # t = 2: all members in, one non-member in (the 3.0 tie cannot be split).
    assert t == 2.0 and acc == pytest.approx((1.0 + 2 / 3) / 2)
    acc, t = best_threshold([0.0], [1.0])
    assert acc == 0.5 and t == math.inf


def test_scores_follow_loss_and_confidence():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([0, 0, 2])
    s = membership_scores(logits, labels)
    assert s["loss"][0] > s["loss"][2] > s["loss"][1]  # right & sure > unsure > wrong & sure
    assert s["confidence"][0] == pytest.approx(s["confidence"][1])  # label-free
    assert s["confidence"][2] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="matching"):
        membership_scores(logits, labels[:2])


def test_membership_inference_detects_overfitting_and_not_chance():
    gen = torch.Generator().manual_seed(0)
    n, k = 300, 5
    labels = torch.randint(0, k, (n,), generator=gen)
    member_logits = torch.randn(n, k, generator=gen)
    member_logits[torch.arange(n), labels] += 4.0  # memorised: low loss on members
    nonmember_logits = torch.randn(n, k, generator=gen)
    nonmember_logits[torch.arange(n), labels] += 1.0
    leaky = membership_inference(member_logits, labels, nonmember_logits, labels)
    assert list(leaky) == list(ATTACKS)
    assert leaky["loss"].auc > 0.9 and leaky["loss"].best_balanced_accuracy > 0.8
    assert leaky["loss"].members == leaky["loss"].nonmembers == n
    fair = membership_inference(
        nonmember_logits[:150], labels[:150], nonmember_logits[150:], labels[150:]
    )
    assert abs(fair["loss"].auc - 0.5) < 3 * fair["loss"].auc_std_error + 0.02


def test_result_round_trips_through_json_dict():
    r = threshold_attack("loss", [0.0], [1.0])
    doc = r.to_dict()
    assert doc["threshold"] is None  # inf is not JSON
    back = MembershipResult.from_dict(doc)
    assert back == r and back.advantage == 0.5


def test_sigmoid_scores_use_the_target_logit_only():
    logits = torch.tensor([[3.0, -2.0], [3.0, 5.0]])
    labels = torch.tensor([0, 0])
    s = membership_scores(logits, labels, sigmoid=True)
    # Same target logit: same loss, whatever the other class scores (no softmax coupling).
    assert s["loss"][0] == pytest.approx(s["loss"][1])
    assert s["loss"][0] == pytest.approx(-torch.nn.functional.softplus(torch.tensor(-3.0)).item())
    assert s["confidence"][1] == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())
