"""``FORGET.OPTIMIZER``: the optimizer name every task type reads, as a torch optimizer."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["OPTIMIZERS", "resolve_optimizer"]

#: Valid ``FORGET.OPTIMIZER`` values (matched case-insensitively).
OPTIMIZERS = ("AdamW", "Adam", "SGD")


def resolve_optimizer(
    name: str,
    *,
    weight_decay: float,
    momentum: float = 0.9,
) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The torch optimizer class ``name`` stands for and its keyword arguments (no lr).

    Args:
        name: a ``FORGET.OPTIMIZER`` value, one of :data:`OPTIMIZERS` in any case.
        weight_decay: weight decay (decoupled for AdamW, L2 in the gradient otherwise).
        momentum: SGD's momentum (the others ignore it).

    Returns:
        ``(optimizer class, kwargs)``; build with ``cls(params, lr=lr, **kwargs)``.

    Raises:
        ValueError: ``name`` is not an optimizer (the message lists the valid ones).
    """
    canonical = {n.lower(): n for n in OPTIMIZERS}.get(str(name).lower())
    if canonical == "AdamW":
        return torch.optim.AdamW, {"weight_decay": weight_decay}
    if canonical == "Adam":
        return torch.optim.Adam, {"weight_decay": weight_decay}
    if canonical == "SGD":
        return torch.optim.SGD, {"momentum": momentum, "weight_decay": weight_decay}
    raise ValueError(
        f"FORGET.OPTIMIZER {name!r} is not an optimizer; valid (any case): {list(OPTIMIZERS)}"
    )
