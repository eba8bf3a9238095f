"""The adapter configuration: which layers get LoRA, with what rank and scaling."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoraConfig", "QKV_PARTS", "LORA_INITS"]

#: Names of the three output slices of a fused ``qkv`` projection, in output order.
QKV_PARTS = ("q", "k", "v")
#: How A starts: ``"kaiming"`` (kaiming-uniform, ``a = sqrt(5)``: loralib, GS-LoRA) or
#: ``"gaussian"`` (normal with std ``1 / r``, PEFT's "gaussian": Poppi et al.'s Gaussian A).
LORA_INITS = ("kaiming", "gaussian")


@dataclass
class LoraConfig:
    """Where LoRA adapters go and how they are shaped.

    Module names are matched against ``model.named_modules()`` names. A pattern list
    is a list of suffixes: ``"mlp.fc1"`` matches ``"blocks.3.mlp.fc1"`` (whole dotted
    components only, so ``"fc1"`` does not match ``"xfc1"``). A single string starting
    with ``"re:"`` is a regular expression that must match the whole name.

    Args:
        rank: rank ``r`` of every adapter.
        alpha: scaling numerator; the update is ``(alpha / r) * B @ A``. GS-LoRA's
            reference uses ``alpha = 1`` with ``r = 8``.
        dropout: dropout on the adapter input during training (0 disables it).
        target_modules: ``nn.Linear`` layers to wrap with one adapter on the full output.
        qkv_modules: fused ``q|k|v`` ``nn.Linear`` layers (output ``3 * d``) to wrap with
            one adapter per slice in ``qkv_parts``.
        qkv_parts: which of ``"q"``, ``"k"``, ``"v"`` get an adapter in a fused layer.
        exclude_modules: patterns removed from the matches above.
        init: how A starts, one of :data:`LORA_INITS` (B always starts at zero).
        metadata: free-form task information saved with the adapter (classes, data used,
            metrics); not used for matching.
    """

    rank: int = 8
    alpha: float = 1.0
    dropout: float = 0.0
    target_modules: list[str] | str = field(default_factory=lambda: ["mlp.fc1", "mlp.fc2"])
    qkv_modules: list[str] | str = field(default_factory=list)
    qkv_parts: tuple[str, ...] = QKV_PARTS
    exclude_modules: list[str] | str = field(default_factory=list)
    init: str = "kaiming"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if int(self.rank) != self.rank or self.rank < 1:
            raise ValueError(f"LoraConfig.rank must be a positive integer, got {self.rank!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraConfig.dropout must be in [0, 1), got {self.dropout!r}")
        bad = [p for p in self.qkv_parts if p not in QKV_PARTS]
        if bad or not self.qkv_parts:
            raise ValueError(
                f"LoraConfig.qkv_parts must be a non-empty subset of {QKV_PARTS}, "
                f"got {tuple(self.qkv_parts)!r}"
            )
        if self.init not in LORA_INITS:
            raise ValueError(f"LoraConfig.init must be one of {LORA_INITS}, got {self.init!r}")
        self.rank = int(self.rank)
        self.qkv_parts = tuple(self.qkv_parts)

    @property
    def scaling(self) -> float:
        """The factor ``alpha / r`` applied to ``B @ A``."""
        return self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        d = dataclasses.asdict(self)
        d["qkv_parts"] = list(self.qkv_parts)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoraConfig:
        """Build from :meth:`to_dict` output; unknown keys are an error, not ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown LoraConfig keys {unknown}; valid keys: {sorted(names)}")
        return cls(**d)

    def to_json(self) -> str:
        """Pretty JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
