"""The learning-rate schedule of a forgetting task, the same for every task type.

Each task restarts it: an optional linear warm-up, then either a cosine decay to
``min_factor`` x the base learning rate or a constant rate (``FORGET.LR_SCHEDULE``,
``FORGET.MIN_LR_FACTOR``). Detection wraps it in a ``LambdaLR``; classification sets the
rate of its step loop from it.
"""

from __future__ import annotations

import math

__all__ = ["LR_SCHEDULES", "lr_factor"]

#: Values of ``FORGET.LR_SCHEDULE``.
LR_SCHEDULES = ("cosine", "constant")


def lr_factor(
    step: int,
    steps: int,
    *,
    schedule: str = "cosine",
    min_factor: float = 0.01,
    warmup_iters: int = 0,
    warmup_factor: float = 0.1,
) -> float:
    """The factor on the base learning rate at ``step`` (0-based) of a ``steps``-step task.

    Args:
        step: step within the task.
        steps: steps of the task.
        schedule: ``"cosine"`` or ``"constant"``.
        min_factor: where the cosine ends.
        warmup_iters: steps of linear warm-up from ``warmup_factor`` (at most half the
            task).
        warmup_factor: the factor at step 0 of the warm-up.

    Returns:
        The factor.

    Raises:
        ValueError: an unknown schedule or a factor outside [0, 1].
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"FORGET.LR_SCHEDULE must be one of {LR_SCHEDULES}, got {schedule!r}")
    if not 0.0 <= min_factor <= 1.0:
        raise ValueError(f"FORGET.MIN_LR_FACTOR must be in [0, 1], got {min_factor}")
    warmup = min(int(warmup_iters), steps // 2)
    if step < warmup:
        return warmup_factor + (1 - warmup_factor) * step / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(steps - warmup, 1)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
