"""Every config key is read somewhere, and the READ_BY tables agree with the registry.

A key that is defined but never read makes a config lie: setting it changes nothing. The
search runs over the Python code that uses configs: ``det_forget/`` outside the files
that define the keys, and ``tools/`` (the entry points read a few keys, e.g.
``CLS.FACE.FAR``). A key counts as read when its last two components are read as
attributes (``cfg.FORGET.PROTOTYPE.BOUND`` reads ``PROTOTYPE.BOUND``), or its last
component is read from a variable (``lc.RANK``, with ``lc = cfg.FORGET.LORA``) or appears
as a string (``lc["TARGET_MODULES"]``). Assignments and docstrings do not count. Two keys
with the same last component read through variables (``lc.ALPHA``, ``f.SPARSITY.ALPHA``)
are told apart only by review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from detectron2.config import get_cfg

from det_forget.classification.config import READ_BY as CLS_READ_BY
from det_forget.classification.config import get_classification_cfg
from det_forget.config import add_forget_config
from det_forget.config.forgetting import READ_BY as FORGET_READ_BY
from det_forget.forgetting.methods import METHODS, TASK_TYPES

REPO = Path(__file__).resolve().parents[2]
# Where keys are defined (assigned), not read.
DEFINITIONS = {
    "det_forget/config/forgetting.py",
    "det_forget/config/vit.py",
    "det_forget/config/detr.py",
    "det_forget/classification/config.py",
}


def _leaf_keys(node, prefix: str) -> list[str]:
    keys = []
    for name, value in node.items():
        if isinstance(value, dict):
            keys += _leaf_keys(value, f"{prefix}.{name}")
        else:
            keys.append(f"{prefix}.{name}")
    return keys


def _config_keys() -> list[str]:
    detection = add_forget_config(get_cfg())
    keys = _leaf_keys(detection.FORGET, "FORGET")
    keys += _leaf_keys(detection.MODEL.VIT, "MODEL.VIT")
    keys += _leaf_keys(detection.MODEL.DETR, "MODEL.DETR")
    keys += ["SOLVER.BACKBONE_MULTIPLIER"]
    keys += _leaf_keys(get_classification_cfg().CLS, "CLS")
    return keys


def _names_read() -> set[str]:
    """``"PARENT.LEAF"`` of attribute chains read, and bare ``"LEAF"`` names read from a
    variable or written as a string."""
    names: set[str] = set()
    files = [*(REPO / "det_forget").rglob("*.py"), *(REPO / "tools").glob("*.py")]
    for path in files:
        if path.relative_to(REPO).as_posix() in DEFINITIONS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                parent = node.value
                names.add(
                    f"{parent.attr}.{node.attr}" if isinstance(parent, ast.Attribute) else node.attr
                )
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    return names


NAMES_READ = _names_read()


@pytest.mark.parametrize("key", _config_keys())
def test_key_is_read(key):
    parent, leaf = key.split(".")[-2:]
    assert f"{parent}.{leaf}" in NAMES_READ or leaf in NAMES_READ, (
        f"{key} is defined but nothing outside the config definitions reads it: "
        "delete it, or read it"
    )


def test_read_by_names_existing_keys_and_task_types():
    detection, classification = add_forget_config(get_cfg()), get_classification_cfg()
    for key, readers in {**FORGET_READ_BY, **CLS_READ_BY}.items():
        assert readers and set(readers) <= set(TASK_TYPES), key
        cfg = classification if key.startswith("CLS.") else detection
        node = cfg
        for part in key.split("."):
            assert part in node, f"READ_BY names {key}, which is not a config key"
            node = node[part]


def test_qkv_and_no_retain_keys_follow_the_registry():
    """Read where a method with q/k/v adapters (no_retain, neg_grad_lora) runs, and only
    there; NO_RETAIN.EPS also by the full-weight reciprocal_l1 (every task type)."""
    qkv = set().union(*(m.task_types for m in METHODS.values() if m.adapters == "qkv"))
    for key in ("FORGET.LORA.QKV_MODULES", "FORGET.LORA.QKV_PARTS", "FORGET.NO_RETAIN.L1_WEIGHT"):
        assert FORGET_READ_BY[key] == qkv, key
    b_l1 = [m for m in METHODS.values() if "loss_lora_b_l1" in m.terms]
    assert set().union(*(m.task_types for m in b_l1)) == qkv
    reciprocal = [m for m in METHODS.values() if "loss_forget_reciprocal" in m.terms]
    assert set().union(*(m.task_types for m in reciprocal)) == set(TASK_TYPES)
    assert "FORGET.NO_RETAIN.EPS" not in FORGET_READ_BY
