"""``check_values``: refuse values no run can use, before anything is built or written.

yacs checks a value's type, not its range: ``SOLVER.IMS_PER_BATCH 0`` used to surface after
the model and data were built, as detectron2's bare ``AssertionError``, and a NaN learning
rate only as a NaN loss. Each rule here names the key, the value and what is allowed, as a
:class:`~det_forget.errors.ConfigValueError` (one line from the tools, a dialog in the app).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..errors import ConfigValueError
from ..forgetting.deep import DEEP_MODES

__all__ = ["check_values"]

# key -> (test, what is allowed). Keys a config lacks are skipped (classification configs
# have no SOLVER, detection configs no CLS).
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "SOLVER.IMS_PER_BATCH": (lambda v: v >= 1, "at least 1"),
    "SOLVER.BASE_LR": (lambda v: math.isfinite(v) and v > 0, "a positive finite number"),
    "SOLVER.WEIGHT_DECAY": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "SOLVER.WARMUP_ITERS": (lambda v: v >= 0, "0 or more"),
    "DATALOADER.NUM_WORKERS": (lambda v: v >= 0, "0 or more"),
    "TEST.DETECTIONS_PER_IMAGE": (lambda v: v >= 1, "at least 1"),
    "FORGET.MAX_ITER": (lambda v: v >= 1, "at least 1"),
    "FORGET.DATA_RATIO": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "FORGET.LORA.RANK": (lambda v: v >= 1, "at least 1"),
    "FORGET.LORA.ALPHA": (
        lambda v: math.isfinite(v) and v >= 0,
        "0 (the method's own) or a positive number",
    ),
    "FORGET.LORA.DROPOUT": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "FORGET.SPARSITY.ALPHA": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "FORGET.EARLY_STOP.SELECT": (
        lambda v: v in ("", "val_score"),
        "'' (stop when forgotten) or 'val_score' (best validation score)",
    ),
    "FORGET.DEEP.MODE": (lambda v: v in DEEP_MODES, f"one of {list(DEEP_MODES)}"),
    "FORGET.DEEP.WEIGHT": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "FORGET.DEEP.PROBE_LR": (lambda v: math.isfinite(v) and v > 0, "a positive finite number"),
    "FORGET.DEEP.PROBE_STEPS": (lambda v: v >= 1, "at least 1"),
}


def _get(cfg: Any, key: str) -> tuple[bool, Any]:
    node = cfg
    for part in key.split("."):
        if not hasattr(node, part):
            return False, None
        node = getattr(node, part)
    return True, node


def check_values(cfg: Any) -> None:
    """Raise :class:`ConfigValueError` for the first value outside its allowed range.

    Args:
        cfg: a detectron2 or classification config with det_forget's keys.
    """
    for key, (ok, allowed) in _RULES.items():
        present, value = _get(cfg, key)
        if not present:
            continue
        try:
            good = bool(ok(value))
        except TypeError:
            good = False
        if not good:
            raise ConfigValueError(f"{key} {value!r} cannot be used: it must be {allowed}")
