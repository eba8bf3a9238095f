import math

import pytest

from det_forget.forgetting.schedule import lr_factor


def test_cosine_with_warmup_restarts_at_each_task():
    steps = 10
    factors = [lr_factor(t, steps, warmup_iters=2, warmup_factor=0.1) for t in range(steps)]
    assert factors[0] == pytest.approx(0.1) and factors[1] == pytest.approx(0.55)
    assert factors[2] == pytest.approx(1.0)  # warm-up done: the cosine starts at the top
    # then decays monotonically towards the floor, never below it
    assert all(a > b for a, b in zip(factors[2:], factors[3:]))
    expected_last = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 7 / 8))
    assert factors[-1] == pytest.approx(expected_last)


def test_constant_and_min_factor_and_errors():
    assert [lr_factor(t, 5, schedule="constant") for t in range(5)] == [1.0] * 5
    assert lr_factor(100, 101, min_factor=0.001) == pytest.approx(0.001, abs=5e-4)
    # the warm-up never takes more than half a task
    assert lr_factor(2, 4, warmup_iters=100) == 1.0
    with pytest.raises(ValueError, match="LR_SCHEDULE"):
        lr_factor(0, 5, schedule="step")
    with pytest.raises(ValueError, match="MIN_LR_FACTOR"):
        lr_factor(0, 5, min_factor=2.0)
