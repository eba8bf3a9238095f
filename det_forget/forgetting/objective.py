"""The forgetting objective: which loss terms each method combines, in one place.

Task code (a detectron2 meta-architecture, a classifier loop, a face head) computes the
per-sample losses it knows how to compute and hands them here; this module adds the
method's terms and returns the total plus every term by name, for logging. No task type
carries its own copy of the GS-LoRA / GS-LoRA++ / no-retain / baseline recipes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigValueError
from .deep import DeepForgetting
from .groups import ParamGroup, SparsityWarmup, build_groups, group_lasso, lora_b_l1
from .losses import (
    balanced_mean,
    bounded_forget_loss,
    negative_gradient_loss,
    reciprocal_forget_loss,
)
from .methods import ForgetMethod, get_method
from .prototypes import prototype_loss
from .regularizers import WeightAnchor

__all__ = ["ForgettingObjective"]


@dataclass
class ForgettingObjective:
    """Combine per-sample losses into a method's forgetting loss.

    Args:
        method: a ``FORGET.METHOD`` name (:data:`~det_forget.forgetting.methods.METHODS`).
        bound: BND of the bounded forget loss.
        forget_weight: beta on the bounded forget term.
        forget_weights: one beta per continual task (GS-LoRA's detection scripts give each
            task its own); when not empty, :meth:`use_task` sets ``forget_weight`` from it.
        ce_weight: factor on the forget loss inside ``ReLU(BND - w * L)``.
        per_class: per-class bounding (default) instead of the batch mean.
        per_object: bound every object's loss before averaging (``FORGET.LOSS.PER_OBJECT``).
        background_weight: weight of ``loss_forget_background`` (``FORGET.LOSS.
            BACKGROUND_WEIGHT``): the cross-entropy to background on forget objects, given
            as ``background_loss``; averaged per class when ``per_class``. 0: off. A
            method without forget data (``finetune``) has no forget objects and ignores it,
            as it ignores ``bound``.
        retain_weight: weight of the retain loss.
        sparsity: group-lasso weight schedule; ``groups`` are the adapter groups.
        groups: from :func:`~det_forget.forgetting.groups.build_groups`.
        prototype_bound / prototype_forget_weight / prototype_retain_weight: GS-LoRA++.
        no_retain_l1: lambda on ``||B||_1`` (no_retain).
        reciprocal_eps: guard of ``1 / CE``.
        baseline_l1 / baseline_l2 / baseline_ewc: weights of weight-change penalties.
        anchor: reference weights for those penalties.
        deep: the deep-forgetting term (``FORGET.DEEP``, :mod:`.deep`), added to any
            method with forget and retain data as ``loss_deep``; None (default): off.
    """

    method: str = "gs_lora"
    bound: float = 15.0
    forget_weight: float = 0.2
    forget_weights: tuple[float, ...] = ()
    ce_weight: float = 1.0
    per_class: bool = True
    per_object: bool = False
    background_weight: float = 0.0
    retain_weight: float = 1.0
    sparsity: SparsityWarmup | None = None
    groups: list[ParamGroup] | None = None
    prototype_bound: float = 18.0
    prototype_forget_weight: float = 0.01
    prototype_retain_weight: float = 0.0
    no_retain_l1: float = 1e-3
    reciprocal_eps: float = 1e-3
    baseline_l1: float = 1e-4
    baseline_l2: float = 1.0
    baseline_ewc: float = 100.0
    anchor: WeightAnchor | None = None
    deep: DeepForgetting | None = None

    def __post_init__(self) -> None:
        spec = get_method(self.method)
        terms = spec.terms
        if self.deep is not None and not (spec.uses_forget_data and spec.uses_retain_data):
            raise ConfigValueError(
                f"FORGET.DEEP.ENABLED needs a method that trains on forget and retain data "
                f"(its term moves forget features relative to retained ones); "
                f"FORGET.METHOD {self.method!r} trains on {spec.data} data only"
            )
        if "loss_group_lasso" in terms and (self.groups is None or self.sparsity is None):
            raise ValueError(f"method {self.method!r} needs groups and a sparsity schedule")
        if any(t.startswith("loss_weight_") for t in terms) and self.anchor is None:
            raise ValueError(f"method {self.method!r} needs a WeightAnchor")
        if self.background_weight < 0:
            raise ConfigValueError(
                f"FORGET.LOSS.BACKGROUND_WEIGHT must be >= 0, got {self.background_weight}"
            )
        self.forget_weights = tuple(float(w) for w in self.forget_weights)
        if self.forget_weights:
            self.forget_weight = self.forget_weights[0]

    def use_task(self, index: int) -> None:
        """Take task ``index``'s beta from :attr:`forget_weights` (no-op when it is empty).

        Raises:
            ConfigValueError: fewer values than tasks.
        """
        if not self.forget_weights:
            return
        if not 0 <= index < len(self.forget_weights):
            raise ConfigValueError(
                f"FORGET.LOSS.FORGET_WEIGHTS has {len(self.forget_weights)} values "
                f"{list(self.forget_weights)}; task {index} needs one (one value per task)"
            )
        self.forget_weight = self.forget_weights[index]

    @classmethod
    def from_config(
        cls, cfg, model: nn.Module, anchor: WeightAnchor | None = None
    ) -> ForgettingObjective:
        """Build from ``cfg.FORGET`` (see :func:`det_forget.config.add_forget_config`).

        Args:
            cfg: a config with the FORGET node.
            model: the model being trained: adapters are grouped from it, and for
                full-weight baselines a :class:`WeightAnchor` is taken when none is given.
            anchor: reference weights (e.g. with a Fisher estimate for EWC).
        """
        f = cfg.FORGET
        method = f.METHOD
        terms = get_method(method).terms
        groups = sparsity = None
        if "loss_group_lasso" in terms:
            groups = build_groups(model, f.SPARSITY.GROUPS, f.SPARSITY.BLOCK_REGEX)
            sparsity = SparsityWarmup(f.SPARSITY.ALPHA, f.SPARSITY.WARMUP_ITERS)
        if anchor is None and any(t.startswith("loss_weight_") for t in terms):
            anchor = WeightAnchor(model)
        return cls(
            method=method,
            bound=f.LOSS.BOUND,
            forget_weight=f.LOSS.FORGET_WEIGHT,
            forget_weights=tuple(f.LOSS.FORGET_WEIGHTS),
            ce_weight=f.LOSS.CE_WEIGHT,
            per_class=f.LOSS.PER_CLASS,
            per_object=f.LOSS.PER_OBJECT,
            background_weight=f.LOSS.BACKGROUND_WEIGHT,
            retain_weight=f.LOSS.RETAIN_WEIGHT,
            sparsity=sparsity,
            groups=groups,
            prototype_bound=f.PROTOTYPE.BOUND,
            prototype_forget_weight=f.PROTOTYPE.FORGET_WEIGHT,
            prototype_retain_weight=f.PROTOTYPE.RETAIN_WEIGHT,
            no_retain_l1=f.NO_RETAIN.L1_WEIGHT,
            reciprocal_eps=f.NO_RETAIN.EPS,
            baseline_l1=f.BASELINE.L1_WEIGHT,
            baseline_l2=f.BASELINE.L2_WEIGHT,
            baseline_ewc=f.BASELINE.EWC_WEIGHT,
            anchor=anchor,
            deep=DeepForgetting.from_config(cfg) if "DEEP" in f else None,
        )

    @property
    def spec(self) -> ForgetMethod:
        """The method's registry entry."""
        return get_method(self.method)

    @property
    def uses_retain_data(self) -> bool:
        """Whether the method needs a retain batch."""
        return self.spec.uses_retain_data

    @property
    def uses_forget_data(self) -> bool:
        """Whether the method needs a forget batch (retrain/finetune do not)."""
        return self.spec.uses_forget_data

    def __call__(
        self,
        *,
        step: int,
        model: nn.Module | None = None,
        forget_loss: torch.Tensor | None = None,
        forget_labels: torch.Tensor | None = None,
        retain_loss: torch.Tensor | None = None,
        background_loss: torch.Tensor | None = None,
        prototypes: torch.Tensor | None = None,
        prototype_present: torch.Tensor | None = None,
        forget_features: torch.Tensor | None = None,
        retain_features: torch.Tensor | None = None,
        retain_labels: torch.Tensor | None = None,
        retain_prototypes: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The method's loss terms, already weighted; ``sum(terms.values())`` is the total.

        Args:
            step: training step (for the sparsity warm-up).
            model: the model (for L1 on B).
            forget_loss: per-sample loss on forget samples ``(N_f,)``: cross-entropy for
                every method except ``random_labels``, where it is the cross-entropy to
                random labels (minimised).
            forget_labels: forget sample classes ``(N_f,)`` (per-class bounding).
            retain_loss: the retain loss, a scalar already averaged.
            background_loss: per-object cross-entropy to background ``(N_f,)``; needed
                when :attr:`background_weight` > 0.
            prototypes: ``(C, D)`` for GS-LoRA++; ``prototype_present`` marks valid rows.
            prototype_present: which prototype rows are valid.
            forget_features: features of forget samples for GS-LoRA++.
            retain_features: features of retain samples for GS-LoRA++.
            retain_labels: their classes.
            retain_prototypes: prototypes of the retained classes ``(K, D)`` (deep
                forgetting's ``prototype_pull``).

        Returns:
            ``{term name: weighted scalar}`` with the names of the method's registry
            ``terms``, plus ``loss_forget_background`` when :attr:`background_weight` > 0
            (methods with forget data) and ``loss_deep`` when :attr:`deep` is set.

        Raises:
            FloatingPointError: a term is NaN or infinite (names the term).
        """
        terms: dict[str, torch.Tensor] = {}
        for name in self.spec.terms:
            if name == "loss_retain":
                terms[name] = self.retain_weight * _required(retain_loss, name)
            elif name == "loss_forget_bounded":
                terms[name] = self.forget_weight * bounded_forget_loss(
                    _required(forget_loss, name),
                    forget_labels,
                    bound=self.bound,
                    weight=self.ce_weight,
                    per_class=self.per_class,
                    per_object=self.per_object,
                )
            elif name == "loss_forget_reciprocal":
                terms[name] = reciprocal_forget_loss(
                    _required(forget_loss, name), eps=self.reciprocal_eps
                )
            elif name == "loss_forget_negative":
                terms[name] = negative_gradient_loss(_required(forget_loss, name))
            elif name == "loss_forget_random_labels":
                terms[name] = _required(forget_loss, name).mean()
            elif name == "loss_group_lasso":
                alpha = self.sparsity.value(step)  # type: ignore[union-attr]
                terms[name] = alpha * group_lasso(self.groups)  # type: ignore[arg-type]
            elif name == "loss_prototype":
                terms[name] = prototype_loss(
                    _required(prototypes, name),
                    forget_features=forget_features,
                    forget_labels=forget_labels,
                    retain_features=retain_features,
                    retain_labels=retain_labels,
                    bound=self.prototype_bound,
                    forget_weight=self.prototype_forget_weight,
                    retain_weight=self.prototype_retain_weight,
                    present=prototype_present,
                )
            elif name == "loss_lora_b_l1":
                terms[name] = self.no_retain_l1 * lora_b_l1(_required(model, name))
            elif name == "loss_weight_l1":
                terms[name] = self.baseline_l1 * self.anchor.l1()  # type: ignore[union-attr]
            elif name == "loss_weight_l2":
                terms[name] = self.baseline_l2 * self.anchor.l2()  # type: ignore[union-attr]
            elif name == "loss_weight_ewc":
                terms[name] = self.baseline_ewc * self.anchor.ewc()  # type: ignore[union-attr]
        if self.background_weight > 0 and self.spec.uses_forget_data:
            terms["loss_forget_background"] = self.background_weight * balanced_mean(
                _required(background_loss, "loss_forget_background"),
                forget_labels,
                self.per_class,
            )
        if self.deep is not None:
            terms["loss_deep"] = self.deep(
                forget_features=_required(forget_features, "loss_deep"),
                retain_features=retain_features,
                retain_prototypes=retain_prototypes,
            )
        for name, value in terms.items():
            if not torch.isfinite(value).all():
                raise FloatingPointError(
                    f"forgetting loss term {name!r} is {value.item()} at step {step} "
                    f"(method {self.method!r}); lower the learning rate or check the data"
                )
        return terms


def _required(value, name: str):
    if value is None:
        raise ValueError(f"loss term {name!r} needs an input that was not given")
    return value
