"""Penalties on the change of full weights, for the baselines that train without LoRA.

``neg_grad_l1``, ``reciprocal_l1`` (Poppi et al.'s retain-free "w/ L1 regularization"
ablations) and ``bounded_retain_l1`` put an L1 penalty on ``W - W_0``; the continual
baselines L2* and EWC* penalise the change quadratically (EWC weighted by a diagonal
Fisher estimate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["WeightAnchor", "estimate_fisher", "task_anchor"]


class WeightAnchor:
    """A frozen copy of a model's trainable weights at the start of a task.

    Args:
        model: the model; its parameters with ``requires_grad`` are anchored.
    """

    def __init__(self, model: nn.Module) -> None:
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError("WeightAnchor: the model has no trainable parameters")
        self.reference = {n: p.detach().clone() for n, p in self.params.items()}
        self.fisher: dict[str, torch.Tensor] | None = None

    def l1(self) -> torch.Tensor:
        """``sum |W - W_0|`` over anchored parameters."""
        return torch.stack(
            [(p - self.reference[n]).abs().sum() for n, p in self.params.items()]
        ).sum()

    def l2(self) -> torch.Tensor:
        """``sum (W - W_0)^2``."""
        return torch.stack(
            [(p - self.reference[n]).pow(2).sum() for n, p in self.params.items()]
        ).sum()

    def ewc(self) -> torch.Tensor:
        """``sum F * (W - W_0)^2`` with the Fisher set by :meth:`set_fisher`."""
        if self.fisher is None:
            raise RuntimeError("WeightAnchor.ewc() needs set_fisher() first")
        return torch.stack(
            [
                (self.fisher[n] * (p - self.reference[n]).pow(2)).sum()
                for n, p in self.params.items()
            ]
        ).sum()

    def set_fisher(self, fisher: dict[str, torch.Tensor]) -> None:
        """Use ``fisher`` (one tensor per anchored parameter) for :meth:`ewc`."""
        missing = sorted(set(self.params) - set(fisher))
        if missing:
            raise ValueError(f"Fisher estimate lacks parameters {missing[:5]}")
        self.fisher = {n: fisher[n].detach() for n in self.params}


def estimate_fisher(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    max_batches: int | None = None,
) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher: mean squared gradient of ``loss_fn`` per parameter.

    Args:
        model: the model as it is before the task.
        batches: data to estimate on (retain data).
        loss_fn: ``loss_fn(model, batch)`` -> scalar loss.
        max_batches: stop after this many batches.

    Returns:
        ``{param name: tensor}`` for every trainable parameter.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    for batch in batches:
        if max_batches is not None and count >= max_batches:
            break
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach() ** 2
        count += 1
    model.zero_grad(set_to_none=True)
    if count == 0:
        raise ValueError("estimate_fisher: no batches")
    return {n: f / count for n, f in fisher.items()}


def task_anchor(
    method: str,
    model: nn.Module,
    fisher_batches: Callable[[], Iterable] | None = None,
    loss_fn: Callable[[nn.Module, object], torch.Tensor] | None = None,
) -> WeightAnchor | None:
    """The anchor a method's task starts from (registry ``anchor``), or None.

    Every task type builds it here: ``"weights"`` anchors the trainable weights as they
    are now (after earlier tasks), ``"fisher"`` adds a diagonal Fisher estimate on retain
    data.

    Args:
        method: ``FORGET.METHOD``.
        model: the model being trained.
        fisher_batches: returns the retain batches to estimate the Fisher on (EWC only).
        loss_fn: ``loss_fn(model, batch)`` -> retain loss (EWC only).
    """
    from .methods import get_method

    kind = get_method(method).anchor
    if not kind:
        return None
    anchor = WeightAnchor(model)
    if kind == "fisher":
        if fisher_batches is None or loss_fn is None:
            raise ValueError(f"method {method!r} needs retain batches to estimate the Fisher")
        anchor.set_fisher(estimate_fisher(model, fisher_batches(), loss_fn))
    return anchor
