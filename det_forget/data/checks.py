"""Data checked before training: every problem named by file and entry, up front.

A forgetting run samples only some of its images per step, so an image listed in the
annotations but missing on disk used to crash a run minutes in, from inside a DataLoader
worker, or pass unnoticed if never drawn. These checks run when a task's data is built:
each image the forget and retain views will use must exist and have a readable image
header, and every annotation must name a known class. Loading a registered dataset goes
through :func:`load_dataset` so an empty or broken annotations file says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DatasetError", "check_images", "load_dataset"]

#: Problems listed in one error at most (the count of the rest is given).
_MAX_LISTED = 10


class DatasetError(ValueError):
    """A dataset that cannot be trained on; the message names the files and entries."""


def load_dataset(name: str) -> list[dict[str, Any]]:
    """``DatasetCatalog.get(name)`` with its failures and an empty dataset named.

    Raises:
        DatasetError: the annotations cannot be read, have no categories, or list no
            image.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    try:
        dicts = DatasetCatalog.get(name)
    except KeyError as e:
        if name not in DatasetCatalog.list():
            raise  # an unregistered name: detectron2's message lists the registered ones
        source = MetadataCatalog.get(name).get("json_file", None)
        where = f" ({source})" if source else ""
        # e.g. an annotation whose category_id is not in "categories"
        raise DatasetError(
            f"cannot load dataset {name!r}{where}: {e.args[0] if e.args else e}"
        ) from e
    except (ValueError, OSError, AssertionError) as e:
        source = MetadataCatalog.get(name).get("json_file", None)
        where = f" ({source})" if source else ""
        hint = ""
        if isinstance(e, ValueError) and "empty sequence" in str(e):
            hint = ": the annotations file has no categories"
        raise DatasetError(
            f"cannot load dataset {name!r}{where}{hint}: {type(e).__name__}: {e}"
        ) from e
    if not dicts:
        source = MetadataCatalog.get(name).get("json_file", None)
        raise DatasetError(
            f"dataset {name!r} has no images" + (f" (annotations file {source})" if source else "")
        )
    return dicts


def _header_problem(path: str) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
    except FileNotFoundError:
        return "does not exist"
    except (UnidentifiedImageError, OSError) as e:
        return f"is not a readable image ({e})"
    if width <= 0 or height <= 0:
        return f"has an empty size {width}x{height}"
    return None


def check_images(
    dicts: Iterable[Mapping[str, Any]],
    num_classes: int,
    dataset_name: str = "",
) -> int:
    """Every image of ``dicts`` exists and opens; every annotation has a known class.

    Args:
        dicts: detectron2 dataset dicts (contiguous ``category_id``).
        num_classes: classes of the dataset.
        dataset_name: named in the error.

    Returns:
        The number of distinct images checked.

    Raises:
        DatasetError: listing each missing or unreadable image and each annotation with
            an unknown class, with its ``file_name`` and ``image_id``.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for d in dicts:
        path = str(d.get("file_name", ""))
        entry = f"image_id {d.get('image_id')!r}"
        if not path:
            problems.append(f"{entry}: no file_name")
            continue
        for a in d.get("annotations", ()):
            c = a.get("category_id")
            if not isinstance(c, int) or not 0 <= c < num_classes:
                problems.append(f"{path} ({entry}): annotation with unknown category {c!r}")
        if path in seen:
            continue
        seen.add(path)
        problem = _header_problem(path) if os.path.exists(path) else "does not exist"
        if problem:
            problems.append(f"{path} ({entry}) {problem}")
    if problems:
        where = f" of dataset {dataset_name!r}" if dataset_name else ""
        listed = problems[:_MAX_LISTED]
        more = len(problems) - len(listed)
        head = "a problem" if len(problems) == 1 else f"{len(problems)} problems"
        raise DatasetError(
            f"{head} in the training images{where}: {listed[0]}"
            + "".join(f"\n  {p}" for p in listed[1:])
            + (f"\n  ... and {more} more" if more else "")
        )
    return len(seen)
