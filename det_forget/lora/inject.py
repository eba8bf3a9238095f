"""Put LoRA layers into any model by module name, and act on all of them at once."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from torch import nn

from .config import LoraConfig
from .layer import FULL_PART, LoraLinear

__all__ = [
    "InjectionReport",
    "inject_lora",
    "lora_layers",
    "match_module_name",
    "mark_only_lora_trainable",
    "merge_adapters",
    "unmerge_adapters",
    "merge_and_reset_adapters",
    "reset_adapters",
    "disabled_adapters",
    "unload_adapters",
    "lora_parameters",
    "count_parameters",
]

logger = logging.getLogger(__name__)


def match_module_name(name: str, patterns: list[str] | str) -> bool:
    """Whether a dotted module name matches suffix patterns or a ``"re:"`` regex.

    Args:
        name: a name from ``model.named_modules()``.
        patterns: a list of dotted suffixes (whole components), a single suffix, or a
            string ``"re:<regex>"`` that must match the whole name.
    """
    if isinstance(patterns, str):
        if patterns.startswith("re:"):
            return re.fullmatch(patterns[3:], name) is not None
        patterns = [patterns]
    return any(name == p or name.endswith("." + p) for p in patterns)


@dataclass
class InjectionReport:
    """What :func:`inject_lora` did."""

    wrapped: dict[str, tuple[str, ...]] = field(default_factory=dict)
    trainable_params: int = 0
    total_params: int = 0

    @property
    def trainable_share(self) -> float:
        """Trainable parameters / all parameters (adapters included)."""
        return self.trainable_params / max(self.total_params, 1)

    def summary(self) -> str:
        """One line for the log."""
        return (
            f"LoRA on {len(self.wrapped)} layers, trainable {self.trainable_params:,} / "
            f"{self.total_params:,} params ({100 * self.trainable_share:.2f}%)"
        )


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def inject_lora(model: nn.Module, config: LoraConfig) -> InjectionReport:
    """Wrap matching ``nn.Linear`` layers with :class:`LoraLinear`, in place.

    Afterwards only adapter parameters have ``requires_grad=True``.

    Args:
        model: any ``nn.Module``; it must not carry adapters already.
        config: which layers (``target_modules``, ``qkv_modules``, ``exclude_modules``)
            and the adapter shape.

    Returns:
        An :class:`InjectionReport` naming every wrapped layer and its parts.

    Raises:
        ValueError: the model already has adapters, a pattern matched a layer that is not
            ``nn.Linear``, or nothing matched at all (the message lists linear layers).
    """
    existing = [n for n, _ in lora_layers(model)]
    if existing:
        raise ValueError(f"model already has LoRA adapters (e.g. {existing[0]!r})")
    plan: dict[str, tuple[str, ...]] = {}
    for name, module in model.named_modules():
        if not name or match_module_name(name, config.exclude_modules):
            continue
        is_qkv = bool(config.qkv_modules) and match_module_name(name, config.qkv_modules)
        is_full = bool(config.target_modules) and match_module_name(name, config.target_modules)
        if not (is_qkv or is_full):
            continue
        if not isinstance(module, nn.Linear):
            raise ValueError(
                f"LoRA target {name!r} is a {type(module).__name__}, not nn.Linear; "
                "narrow target_modules/qkv_modules or add it to exclude_modules"
            )
        plan[name] = tuple(config.qkv_parts) if is_qkv else (FULL_PART,)
    if not plan:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(
            f"no layer matched target_modules={config.target_modules!r} / "
            f"qkv_modules={config.qkv_modules!r}; linear layers in this model include "
            f"{linear[:8]}"
        )
    for name, parts in plan.items():
        base = model.get_submodule(name)
        _set_submodule(
            model,
            name,
            LoraLinear(
                base,
                rank=config.rank,
                alpha=config.alpha,
                dropout=config.dropout,
                parts=parts,
                init=config.init,
            ),
        )
    mark_only_lora_trainable(model)
    trainable, total = count_parameters(model)
    report = InjectionReport(wrapped=plan, trainable_params=trainable, total_params=total)
    logger.info(report.summary())
    return report


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoraLinear]]:
    """``(name, layer)`` for every :class:`LoraLinear` in ``model``, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, LoraLinear):
            yield name, module


def lora_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` for every adapter matrix (``lora_A.*`` / ``lora_B.*``)."""
    for name, p in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            yield name, p


def mark_only_lora_trainable(model: nn.Module) -> None:
    """Freeze every parameter except the adapter matrices."""
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_A." in name or ".lora_B." in name)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def _require_layers(model: nn.Module) -> list[LoraLinear]:
    layers = [m for _, m in lora_layers(model)]
    if not layers:
        raise ValueError("model has no LoRA adapters; call inject_lora first")
    return layers


def merge_adapters(model: nn.Module) -> None:
    """Merge every adapter into its base weight (reversible with :func:`unmerge_adapters`)."""
    for layer in _require_layers(model):
        layer.merge()


def unmerge_adapters(model: nn.Module) -> None:
    """Undo :func:`merge_adapters`."""
    for layer in _require_layers(model):
        layer.unmerge()


def merge_and_reset_adapters(model: nn.Module) -> None:
    """Fold every adapter into the weights and start fresh ones (between continual tasks)."""
    for layer in _require_layers(model):
        layer.merge_and_reset()


def reset_adapters(model: nn.Module) -> None:
    """Re-initialise every adapter (A as its layer's ``init``, B zero) without touching weights."""
    for layer in _require_layers(model):
        layer.reset_lora_parameters()


@contextlib.contextmanager
def disabled_adapters(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` as if it had no adapters (the "before forgetting" model).

    Merged adapters are unmerged for the duration and merged back afterwards.
    """
    layers = _require_layers(model)
    state = [(layer.disabled, layer.merged) for layer in layers]
    try:
        for layer in layers:
            layer.unmerge()
            layer.disabled = True
        yield model
    finally:
        for layer, (disabled, merged) in zip(layers, state):
            layer.disabled = disabled
            if merged:
                layer.merge()


def unload_adapters(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace every :class:`LoraLinear` by its base ``nn.Linear``, in place.

    Args:
        model: a model with adapters.
        merge: fold the adapters into the weights first (the merged model); with
            ``False`` the adapters are dropped and the base model comes back.

    Returns:
        ``model``, now with plain linear layers: same parameter names and count as before
        injection, so stock code (``DefaultPredictor``) loads its state dict.
    """
    for name, layer in list(lora_layers(model)):
        if merge:
            layer.merge()
        else:
            layer.unmerge()
        _set_submodule(model, name, layer.base_layer)
    return model
