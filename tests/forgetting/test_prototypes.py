import math

import pytest
import torch

from det_forget.forgetting import (
    PrototypeAccumulator,
    compute_prototypes,
    prototype_kl,
    prototype_loss,
)


def test_prototypes_are_class_means_and_missing_classes_flagged():
    feats = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 2])
    protos, present = compute_prototypes(feats, labels, num_classes=3)
    assert protos.tolist() == [[2.0, 1.0], [0.0, 0.0], [5.0, 5.0]]
    assert present.tolist() == [True, False, True]


def test_accumulator_streams_batches():
    acc = PrototypeAccumulator(2, 1)
    acc.update(torch.tensor([[1.0], [2.0]]), torch.tensor([0, 1]))
    acc.update(torch.tensor([[3.0]]), torch.tensor([0]))
    protos, _ = acc.compute()
    assert protos.flatten().tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="features must be"):
        acc.update(torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_kl_by_hand():
    protos = torch.tensor([[0.0, 0.0]])  # softmax -> (0.5, 0.5)
    feats = torch.tensor([[math.log(3.0), 0.0]])  # softmax -> (0.75, 0.25)
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert prototype_kl(feats, torch.tensor([0]), protos).item() == pytest.approx(expected)
    assert prototype_kl(protos, torch.tensor([0]), protos).item() == pytest.approx(0.0, abs=1e-7)


def test_prototype_loss_bound_and_weights():
    protos = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    feats = torch.tensor([[math.log(3.0), 0.0]], requires_grad=True)
    kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    loss = prototype_loss(
        protos,
        forget_features=feats,
        forget_labels=torch.tensor([0]),
        retain_features=feats,
        retain_labels=torch.tensor([1]),
        bound=1.0,
        forget_weight=2.0,
        retain_weight=3.0,
    )
    assert loss.item() == pytest.approx(2.0 * (1.0 - kl) + 3.0 * kl)
    far = prototype_loss(
        protos, forget_features=feats, forget_labels=torch.tensor([0]), bound=kl / 2
    )
    assert far.item() == 0.0  # past the bound


def test_prototype_loss_skips_classes_without_prototype():
    protos = torch.zeros(2, 2)
    feats = torch.tensor([[5.0, 0.0]])
    loss = prototype_loss(
        protos,
        forget_features=feats,
        forget_labels=torch.tensor([1]),
        bound=10.0,
        present=torch.tensor([True, False]),
    )
    assert loss.item() == 0.0
