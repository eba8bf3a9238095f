"""``check_ignored_keys``: refuse a config that sets a key its task type never reads.

A yacs config accepts every key it defines, whatever the model: without this check a
classification run with ``FORGET.JITTER_COPIES 8`` would train without jittered boxes and
say nothing. Which task types read which keys is declared next to the keys
(:data:`det_forget.config.forgetting.READ_BY`, ``READ_BY`` in
:mod:`det_forget.classification.config`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fvcore.common.config import CfgNode as CN

from .forgetting import READ_BY as FORGET_READ_BY

__all__ = ["check_ignored_keys", "read_by", "task_type_defaults"]


def read_by() -> dict[str, frozenset[str]]:
    """Every key (or node) only some task types read, with those task types."""
    from ..classification.config import READ_BY as CLS_READ_BY

    return {**FORGET_READ_BY, **CLS_READ_BY}


def task_type_defaults(task_type: str) -> CN:
    """The default config of ``task_type`` (what its yaml files merge onto).

    Detection (``rcnn``, ``detr``): detectron2's defaults plus :func:`add_forget_config`;
    classification and face: :func:`~det_forget.classification.config.get_classification_cfg`
    (which has its own defaults for some keys, e.g. early stopping every 25 steps).
    """
    if task_type in ("classification", "face"):
        from ..classification.config import get_classification_cfg

        return get_classification_cfg()
    from detectron2.config import get_cfg

    from . import add_forget_config

    return add_forget_config(get_cfg())


def check_ignored_keys(cfg: CN) -> None:
    """Raise if ``cfg`` moves a key from its task type's default where nothing reads it.

    Args:
        cfg: a detection or classification config (``FORGET`` node, and ``MODEL`` or
            ``CLS``).

    Raises:
        ValueError: names each such key, its value and default, and the task types that
            read it.
    """
    from ..forgetting.methods import task_type_of

    task_type = task_type_of(cfg)
    defaults = task_type_defaults(task_type)
    problems = []
    for name, readers in read_by().items():
        if task_type in readers:
            continue
        for key, value in _leaves(cfg, name):
            default = _lookup(defaults, key)
            if value != default:
                problems.append(
                    f"{key} = {value!r} (default {default!r}; read only by "
                    f"{', '.join(sorted(readers))})"
                )
    if problems:
        raise ValueError(
            f"this {task_type} config sets keys that {task_type} models ignore: "
            + "; ".join(problems)
            + ". Remove them (or use a task type that reads them)."
        )


def _lookup(cfg: Mapping[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _leaves(cfg: Mapping[str, Any], key: str) -> Iterator[tuple[str, Any]]:
    """``(full key, value)`` of the leaf ``key`` or of every leaf under the node ``key``;
    nothing when ``cfg`` does not have it."""
    try:
        node = _lookup(cfg, key)
    except KeyError:
        return
    if not isinstance(node, Mapping):
        yield key, node
        return
    for child in node:
        yield from _leaves(cfg, f"{key}.{child}")
