"""Forgetting tasks: which classes each task forgets, resolved from a config.

Every task type (detection, classification, face) resolves its tasks here: class names
or ids (:func:`resolve_classes`), explicit lists, one task, or a class order cut into
tasks (:func:`build_tasks`), all through :func:`tasks_from_config`.
"""

from __future__ import annotations

import difflib
import numbers
import random
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..evaluation.metrics import ClassGroups

__all__ = ["ForgetTask", "build_tasks", "resolve_classes", "tasks_from_config"]


@dataclass(frozen=True)
class ForgetTask:
    """One forgetting request in a sequence.

    Attributes:
        index: 0-based position in the sequence.
        forget: classes to forget now.
        retain: classes still to keep (never forgotten so far).
        old: classes forgotten by earlier tasks.
        missing: retain classes that have no training data.
    """

    index: int
    forget: tuple[Hashable, ...]
    retain: tuple[Hashable, ...]
    old: tuple[Hashable, ...] = ()
    missing: tuple[Hashable, ...] = ()

    @property
    def forgotten(self) -> tuple[Hashable, ...]:
        """Every class forgotten once this task is done (this task's and earlier ones)."""
        return tuple(self.forget) + tuple(self.old)

    def groups(self) -> ClassGroups:
        """Disjoint metric groups (missing classes are taken out of retain)."""
        missing = set(self.missing)
        return ClassGroups(
            forget=self.forget,
            retain=tuple(c for c in self.retain if c not in missing),
            old=self.old,
            missing=tuple(c for c in self.retain if c in missing),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description."""
        return {
            "index": self.index,
            "forget": list(self.forget),
            "retain": list(self.retain),
            "old": list(self.old),
            "missing": list(self.missing),
        }


def build_tasks(
    classes: Sequence[Hashable],
    *,
    explicit: Sequence[Sequence[Hashable]] | None = None,
    task_sizes: Sequence[int] | None = None,
    seed: int | None = None,
    missing: Sequence[Hashable] = (),
) -> list[ForgetTask]:
    """Build a sequence of forgetting tasks.

    Args:
        classes: every class the model knows.
        explicit: the forget classes of each task, in order. Exclusive with task_sizes.
        task_sizes: sizes of consecutive tasks taken from the class order (the classes
            shuffled with ``seed``, or as given when ``seed`` is None).
        seed: shuffle seed for the class order (Python's ``random.Random``, so the
            order does not depend on torch's RNG state).
        missing: retain classes that have no training data.

    Returns:
        The tasks, each with its forget, retain and old classes.

    Raises:
        ValueError: unknown or repeated classes, an empty task, or a sequence that would
            forget every class (nothing left to retain).
    """
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ValueError("classes contains duplicates")
    known = set(classes)
    if (explicit is None) == (task_sizes is None):
        raise ValueError("give exactly one of explicit= or task_sizes=")
    if explicit is None:
        order = list(classes)
        if seed is not None:
            random.Random(seed).shuffle(order)
        sizes = [int(s) for s in task_sizes]  # type: ignore[union-attr]
        if any(s <= 0 for s in sizes):
            raise ValueError(f"task sizes must be positive, got {sizes}")
        if sum(sizes) > len(order):
            raise ValueError(f"task sizes {sizes} need {sum(sizes)} classes, only {len(order)}")
        explicit, start = [], 0
        for s in sizes:
            explicit.append(order[start : start + s])
            start += s
    unknown_missing = [c for c in missing if c not in known]
    if unknown_missing:
        raise ValueError(f"missing classes {unknown_missing} are not among the classes")
    tasks: list[ForgetTask] = []
    forgotten: list[Hashable] = []
    for i, forget in enumerate(explicit):
        forget = list(forget)
        if not forget:
            raise ValueError(f"task {i} forgets no class (empty forget set)")
        unknown = [c for c in forget if c not in known]
        if unknown:
            raise ValueError(f"task {i}: unknown classes {unknown}; known classes: {classes}")
        again = [c for c in forget if c in forgotten or forget.count(c) > 1]
        if again:
            raise ValueError(f"task {i}: classes {again} are forgotten more than once")
        forgotten_now = forgotten + forget
        retain = tuple(c for c in classes if c not in forgotten_now)
        if not retain:
            raise ValueError(
                f"task {i} would forget every class; at least one class must be retained"
            )
        miss_in_forget = [c for c in forget if c in missing]
        if miss_in_forget:
            raise ValueError(f"task {i}: classes {miss_in_forget} are both forgotten and missing")
        tasks.append(
            ForgetTask(
                index=i,
                forget=tuple(forget),
                retain=retain,
                old=tuple(forgotten),
                missing=tuple(c for c in retain if c in set(missing)),
            )
        )
        forgotten = forgotten_now
    return tasks


def _as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer (not a bool) or a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def resolve_classes(
    spec: str | int | Iterable[str | int],
    thing_classes: Sequence[str],
    dataset_name: str | None = None,
    *,
    what: str = "forget set",
    allow_empty: bool = False,
) -> list[int]:
    """Turn class names or contiguous ids into contiguous ids.

    Names are matched exactly first (a class literally named ``"3"`` wins over id 3), then
    case-insensitively when that names exactly one class; ints and digit strings are ids.

    Args:
        spec: one name or id, a comma-separated string of them, or an iterable of names,
            ints and digit strings (e.g. ``cfg.FORGET.CLASSES``).
        thing_classes: class names in contiguous-id order (detectron2 metadata).
        dataset_name: only used in error messages.
        what: what the classes are, for error messages (``"forget set"``, ...).
        allow_empty: return ``[]`` for an empty ``spec`` instead of raising.

    Returns:
        Contiguous ids, in the order given.

    Raises:
        ValueError: unknown name (the message lists the valid names and close matches),
            id out of range, a class given twice, or an empty ``spec``.
    """
    if isinstance(spec, str):
        items: list[Any] = [s.strip() for s in spec.split(",") if s.strip()]
    elif isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        items = [spec]
    else:
        items = list(spec)
    where = f" of dataset {dataset_name!r}" if dataset_name else ""
    if not items:
        if allow_empty:
            return []
        raise ValueError(
            f"empty {what}: give at least one class name or id{where} "
            f"(valid names: {list(thing_classes)})"
        )
    index = {name: i for i, name in enumerate(thing_classes)}
    folded: dict[str, list[int]] = {}
    for i, name in enumerate(thing_classes):
        folded.setdefault(name.casefold(), []).append(i)
    ids: list[int] = []
    given: dict[int, Any] = {}
    for item in items:
        if isinstance(item, str) and item.strip() in index:
            cid = index[item.strip()]
        elif isinstance(item, str) and len(folded.get(item.strip().casefold(), ())) == 1:
            cid = folded[item.strip().casefold()][0]
        else:
            cid = _as_int(item)
            if cid is None:
                name = str(item)
                close = difflib.get_close_matches(name, list(thing_classes), n=3, cutoff=0.6)
                hint = f"; did you mean {close}?" if close else ""
                raise ValueError(
                    f"unknown class {name!r} in the {what}{where}{hint} "
                    f"valid names: {list(thing_classes)}"
                )
            if not 0 <= cid < len(thing_classes):
                raise ValueError(
                    f"class id {cid} in the {what} is out of range{where}: valid ids are "
                    f"0..{len(thing_classes) - 1}"
                )
        if cid in given:
            raise ValueError(
                f"class {thing_classes[cid]!r} (id {cid}) is given twice in the {what} "
                f"(as {given[cid]!r} and {item!r})"
            )
        given[cid] = item
        ids.append(cid)
    return ids


def tasks_from_config(
    cfg, class_names: Sequence[str], dataset_name: str | None = None
) -> list[ForgetTask]:
    """The forgetting tasks a config asks for, with classes as contiguous ids.

    ``FORGET.TASKS`` (explicit lists) wins over ``FORGET.CLASSES`` (one task), which wins
    over ``FORGET.TASK_SIZES`` (cut from the class order shuffled with
    ``FORGET.CLASS_ORDER_SEED``). ``FORGET.MISSING_CLASSES`` are retained classes without
    training data.

    Args:
        cfg: a config with the ``FORGET`` node.
        class_names: the model's classes in contiguous-id order.
        dataset_name: named in error messages.

    Returns:
        The tasks.

    Raises:
        ValueError: unknown class names, an empty forget set, every class forgotten.
    """
    f = cfg.FORGET
    all_ids = list(range(len(class_names)))
    missing = resolve_classes(
        list(f.MISSING_CLASSES), class_names, dataset_name, what="missing classes", allow_empty=True
    )
    if len(f.TASKS):
        explicit = [
            resolve_classes(list(t), class_names, dataset_name, what=f"forget set of task {i}")
            for i, t in enumerate(f.TASKS)
        ]
        return build_tasks(all_ids, explicit=explicit, missing=missing)
    if len(f.CLASSES):
        explicit = [resolve_classes(list(f.CLASSES), class_names, dataset_name)]
        return build_tasks(all_ids, explicit=explicit, missing=missing)
    if len(f.TASK_SIZES):
        return build_tasks(
            all_ids, task_sizes=list(f.TASK_SIZES), seed=f.CLASS_ORDER_SEED, missing=missing
        )
    where = f" of {dataset_name}" if dataset_name else ""
    raise ValueError(
        "empty forget set: set FORGET.CLASSES (one task), FORGET.TASKS (a list of class "
        f"lists) or FORGET.TASK_SIZES; classes{where}: {list(class_names)}"
    )
