"""Verification metric (TAR at FAR) and accuracy helpers, on hand-computed cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from det_forget.classification.evaluate import (
    evaluate_per_class,
    tar_at_far,
    verification_pairs,
    verification_report,
)

GENUINE = torch.tensor([0.9, 0.8, 0.7, 0.4])
IMPOSTOR = torch.tensor([0.85, 0.6, 0.5, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3])


@pytest.mark.parametrize(
    "far, tar, threshold",
    [
        (0.0, 0.25, 0.85),  # no impostor may pass: only 0.9 > 0.85
        (0.1, 0.75, 0.6),  # one impostor (0.85) may pass: 0.9, 0.8, 0.7 > 0.6
        (0.15, 0.75, 0.6),  # floor(1.5) = 1 impostor
        (0.2, 0.75, 0.5),
        (0.5, 1.0, 0.1),
    ],
)
def test_tar_at_far_hand_computed(far, tar, threshold):
    got_tar, got_thr = tar_at_far(GENUINE, IMPOSTOR, far)
    assert got_tar == pytest.approx(tar)
    assert got_thr == pytest.approx(threshold)
    # The realised false-accept rate never exceeds the target.
    assert float((IMPOSTOR.double() > got_thr).double().mean()) <= far + 1e-12


def test_tar_at_far_accept_all_and_errors():
    assert tar_at_far(GENUINE, IMPOSTOR, 1.0)[0] == 1.0
    with pytest.raises(ValueError, match="far must be in"):
        tar_at_far(GENUINE, IMPOSTOR, 1.5)
    with pytest.raises(ValueError, match="at least one"):
        tar_at_far(GENUINE, IMPOSTOR[:0], 0.1)


def test_verification_report_hand_made_embeddings():
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8]])
    labels = torch.tensor([0, 0, 1, 1])
    genuine, impostor = verification_pairs(labels)
    assert genuine.tolist() == [[0, 1], [2, 3]]
    assert len(impostor) == 4
    # genuine similarities 0.6, 0.8; impostors 0.0, -0.6, 0.8, 0.28
    report = verification_report(emb, labels, fars=(0.0, 0.25, 0.5))
    assert report["TAR@FAR=0"] == pytest.approx(0.0)
    assert report["TAR@FAR=0.25"] == pytest.approx(100.0)
    assert report["TAR@FAR=0.5"] == pytest.approx(100.0)
    assert report["genuine_pairs"] == 2 and report["impostor_pairs"] == 4


class _Fixed(nn.Module):
    def forward(self, x):
        return x.flatten(1)


def test_evaluate_per_class_uses_logits_argmax():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [1.0, 0.0]]).view(4, 1, 1, 2)
    labels = torch.tensor([0, 1, 1, 1])
    acc = evaluate_per_class(_Fixed(), logits, labels, num_classes=2, batch_size=3)
    assert acc == {0: 100.0, 1: pytest.approx(100.0 / 3)}
