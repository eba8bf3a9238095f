"""Linear probe: separates separable features, not random ones; deterministic with a seed."""

from __future__ import annotations

import pytest
import torch

from det_forget.audit import ProbeResult, balanced_accuracy, linear_probe


def _features(n: int, dim: int, shift: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    targets = torch.zeros(n, dtype=torch.bool)
    targets[: n // 5] = True  # forgotten classes are the minority, as in an audit
    x = torch.randn(n, dim, generator=gen)
    x[targets, 0] += shift
    return x, targets


def test_probe_separates_separable_features():
    x, y = _features(500, 16, shift=6.0, seed=0)
    r = linear_probe(x, y, seed=0)
    assert r.balanced_accuracy > 0.97 and r.auc > 0.99
    assert r.test_positives == r.test_negatives == 50  # half of the smaller group, balanced
    assert r.train_samples == 400 and r.feature_dim == 16


def test_probe_finds_nothing_in_random_features():
    x, _ = _features(600, 16, shift=0.0, seed=1)
    y = torch.rand(600, generator=torch.Generator().manual_seed(2)) < 0.3
    r = linear_probe(x, y, seed=0)
    assert abs(r.balanced_accuracy - 0.5) < 0.1 and abs(r.auc - 0.5) < 0.1


def test_probe_is_deterministic_and_seed_changes_split():
    x, y = _features(300, 8, shift=1.0, seed=3)
    a, b = linear_probe(x, y, seed=5), linear_probe(x, y, seed=5)
    assert a == b
    assert ProbeResult.from_dict(a.to_dict()) == a
    assert linear_probe(x, y, seed=6) != a


def test_probe_rejects_bad_input():
    x, y = _features(50, 4, shift=1.0, seed=0)
    with pytest.raises(ValueError, match="matching"):
        linear_probe(x, y[:10])
    with pytest.raises(ValueError, match="test_fraction"):
        linear_probe(x, y, test_fraction=1.0)
    with pytest.raises(ValueError, match="at least 2"):
        linear_probe(x, torch.zeros(50, dtype=torch.bool))


def test_balanced_accuracy_ignores_class_imbalance():
    targets = torch.tensor([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    always_negative = torch.zeros(10, dtype=torch.long)
    assert balanced_accuracy(always_negative, targets) == 0.5
    assert balanced_accuracy(targets, targets) == 1.0
