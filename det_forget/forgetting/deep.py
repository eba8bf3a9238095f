"""Deep forgetting: remove the forgotten classes from the features, not only from the decision.

GS-LoRA's losses act on the logits: a forgotten class stops being predicted, but a linear
probe on the features under the head still separates it from the retained classes (the
audit's probe, :func:`det_forget.audit.probe.linear_probe`). The terms here act on the
same features (``model.features``, the pre-logit embedding GS-LoRA++'s prototypes use)
and train the same adapters, so the parameter budget does not change. Two modes
(:data:`DEEP_MODES`):

* ``prototype_pull``: each forget-class feature is pulled toward the nearest prototype of
  a retained class (the per-class mean feature of the model at the task start, as
  GS-LoRA++ computes it): ``mean_i ||h_i - p_{k(i)}||^2 / D`` with
  ``k(i) = argmin_k ||h_i - p_k||`` over retained classes (chosen without gradient).
  Forget samples end up inside retained classes' clusters, where a hyperplane cannot cut
  them out.
* ``adversarial_probe``: a linear probe (forget classes vs retained, class-balanced
  logistic regression on standardised features, the audit probe's form) is trained online
  on detached features every step; the adapters are trained to confuse it on forget
  features, ``mean_i BCE(probe(h_i), 1/2) - log 2`` (zero when the probe answers 1/2).
  The confusion target, not the probe's loss maximised without bound: maximising it
  flips the probe's answer, which leaves the classes just as separable.

:class:`DeepForgetting` holds the mode, its weight and the online probe;
:class:`~det_forget.forgetting.objective.ForgettingObjective` adds its ``loss_deep`` term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import ConfigValueError

__all__ = [
    "DEEP_MODES",
    "DeepForgetting",
    "OnlineProbe",
    "nearest_prototype",
    "prototype_pull_loss",
    "probe_confusion_loss",
]

#: ``FORGET.DEEP.MODE`` values.
DEEP_MODES = ("prototype_pull", "adversarial_probe")


@torch.no_grad()
def nearest_prototype(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of ``prototypes`` ``(K, D)`` for each feature ``(N, D)``."""
    return torch.cdist(features.detach().float(), prototypes.float()).argmin(dim=1)


def prototype_pull_loss(forget_features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``mean_i ||h_i - p_{k(i)}||^2 / D``, ``p_{k(i)}`` the nearest of ``prototypes``.

    Args:
        forget_features: features of forget-class samples ``(N, D)`` (with gradient).
        prototypes: prototypes of the retained classes ``(K, D)``, ``K >= 1``.

    Returns:
        A scalar, 0 when every forget feature sits on a retained prototype.
    """
    if prototypes.ndim != 2 or prototypes.shape[0] == 0:
        raise ValueError(
            f"prototype_pull needs at least one retained-class prototype, got shape "
            f"{tuple(prototypes.shape)}"
        )
    if forget_features.numel() == 0:
        return forget_features.new_zeros(())
    prototypes = prototypes.to(forget_features.device, forget_features.dtype)
    targets = prototypes[nearest_prototype(forget_features, prototypes)]
    return F.mse_loss(forget_features, targets)


def probe_confusion_loss(logits: torch.Tensor) -> torch.Tensor:
    """``mean BCE(logits, 1/2) - log 2``: 0 when the probe answers 1/2, positive otherwise."""
    if logits.numel() == 0:
        return logits.new_zeros(())
    half = torch.full_like(logits, 0.5)
    return F.binary_cross_entropy_with_logits(logits, half) - math.log(2.0)


class OnlineProbe:
    """A forget-vs-retained linear probe fitted on the fly, on detached features.

    Each :meth:`update` standardises the batch (its own mean and std, as the audit's probe
    standardises with its fitting part), then takes ``steps`` Adam steps of class-balanced
    logistic regression. Its weights are not model parameters: they never reach the
    model's optimizer or its checkpoint.

    Args:
        dim: feature width.
        lr: Adam learning rate.
        steps: Adam steps per update.
        weight_decay: L2 coefficient (``||w||^2 / 2``), the audit probe's 1e-3.
    """

    def __init__(
        self, dim: int, *, lr: float = 1e-2, steps: int = 5, weight_decay: float = 1e-3
    ) -> None:
        self.weight = torch.zeros(dim, requires_grad=True)
        self.bias = torch.zeros((), requires_grad=True)
        self.steps = int(steps)
        self.weight_decay = float(weight_decay)
        self.optimizer = torch.optim.Adam([self.weight, self.bias], lr=lr)
        self.last_loss: float | None = None

    @staticmethod
    def _standardize(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        ref = ref.detach()
        return (x - ref.mean(dim=0)) / ref.std(dim=0).clamp_min(1e-6)

    def update(self, forget_features: torch.Tensor, retain_features: torch.Tensor) -> float:
        """Fit on one batch (detached); returns the probe's last balanced loss."""
        ref = torch.cat([forget_features, retain_features]).detach().float().cpu()
        pos = self._standardize(forget_features.detach().float().cpu(), ref)
        neg = self._standardize(retain_features.detach().float().cpu(), ref)
        loss = torch.zeros(())
        for _ in range(self.steps):
            self.optimizer.zero_grad()
            loss = (
                0.5
                * (
                    F.binary_cross_entropy_with_logits(
                        pos @ self.weight + self.bias, torch.ones(len(pos))
                    )
                    + F.binary_cross_entropy_with_logits(
                        neg @ self.weight + self.bias, torch.zeros(len(neg))
                    )
                )
                + 0.5 * self.weight_decay * (self.weight * self.weight).sum()
            )
            loss.backward()
            self.optimizer.step()
        self.last_loss = float(loss.detach())
        return self.last_loss

    def logits(self, features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """The probe's logits of ``features`` (gradient flows into them, not the probe),
        standardised with ``reference``'s batch statistics (detached)."""
        w = self.weight.detach().to(features.device, features.dtype)
        b = self.bias.detach().to(features.device, features.dtype)
        return self._standardize(features, reference.to(features.dtype)) @ w + b


@dataclass
class DeepForgetting:
    """The deep-forgetting term of one task (``FORGET.DEEP``).

    Args:
        mode: one of :data:`DEEP_MODES`.
        weight: factor on the term in the total loss.
        probe_lr: the online probe's Adam learning rate (``adversarial_probe``).
        probe_steps: its Adam steps per training step (``adversarial_probe``).
    """

    mode: str = "prototype_pull"
    weight: float = 1.0
    probe_lr: float = 1e-2
    probe_steps: int = 5
    probe: OnlineProbe | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in DEEP_MODES:
            raise ConfigValueError(
                f"FORGET.DEEP.MODE {self.mode!r} is not a deep-forgetting mode; valid: "
                f"{list(DEEP_MODES)}"
            )
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigValueError(
                f"FORGET.DEEP.WEIGHT {self.weight!r} cannot be used: it must be a finite "
                "number >= 0"
            )

    @classmethod
    def from_config(cls, cfg) -> DeepForgetting | None:
        """From ``cfg.FORGET.DEEP``; None when ``ENABLED`` is False (the default)."""
        d = cfg.FORGET.DEEP
        if not d.ENABLED:
            return None
        return cls(
            mode=d.MODE,
            weight=float(d.WEIGHT),
            probe_lr=float(d.PROBE_LR),
            probe_steps=int(d.PROBE_STEPS),
        )

    @property
    def needs_prototypes(self) -> bool:
        """Whether the trainer must give it retained-class prototypes."""
        return self.mode == "prototype_pull"

    def __call__(
        self,
        *,
        forget_features: torch.Tensor,
        retain_features: torch.Tensor | None = None,
        retain_prototypes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The weighted term. ``adversarial_probe`` first updates its probe (one side
        effect per call: call it once per training step).

        Args:
            forget_features: forget-class features ``(N_f, D)``, with gradient.
            retain_features: retained-class features ``(N_r, D)`` (``adversarial_probe``).
            retain_prototypes: retained-class prototypes ``(K, D)`` (``prototype_pull``).

        Returns:
            A scalar.
        """
        if self.mode == "prototype_pull":
            if retain_prototypes is None:
                raise ValueError("FORGET.DEEP.MODE 'prototype_pull' needs retain_prototypes")
            return self.weight * prototype_pull_loss(forget_features, retain_prototypes)
        if retain_features is None or len(retain_features) == 0:
            raise ValueError("FORGET.DEEP.MODE 'adversarial_probe' needs retain features")
        if self.probe is None:
            self.probe = OnlineProbe(
                forget_features.shape[1], lr=self.probe_lr, steps=self.probe_steps
            )
        self.probe.update(forget_features, retain_features)
        reference = torch.cat([forget_features, retain_features]).detach()
        return self.weight * probe_confusion_loss(self.probe.logits(forget_features, reference))
