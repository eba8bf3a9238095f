"""The config of one forgetting job from a loaded model's config and a few settings.

What an application (the desktop app, a notebook) asks for is "forget these classes of
this model with this method for N steps"; :func:`build_job_config` turns that into the
config :class:`det_forget.engine.ForgetJob` runs, and refuses what cannot run before any
model is built: an unknown class, an empty forget set, every class forgotten, a method
the model's task type does not run (the registry's message lists the ones it does), a key
the task type ignores (:func:`det_forget.config.check_ignored_keys`).

Where the adapters go is not set here: the method's registry entry places them
(:func:`det_forget.config.lora_config_from_cfg`).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import check_ignored_keys, check_values
from ..forgetting.methods import check_method, task_type_of
from ..forgetting.tasks import tasks_from_config
from .inference import class_names_of, forgetting_config

__all__ = ["build_job_config", "job_output_dir"]

#: Longest class-name part of a job folder name (file systems limit a name to 255 bytes).
_SLUG_LENGTH = 40


def job_output_dir(
    root: str | Path, classes: Sequence[str], *, now: _dt.datetime | None = None
) -> str:
    """A new folder name under ``root`` for a job forgetting ``classes``.

    ``forget_<YYYYmmdd-HHMMSS>_<classes>``, with ``_1``, ``_2`` … appended when that
    folder exists already; the folder itself is not created.

    Args:
        root: parent folder of the jobs.
        classes: the forget set (its names make the folder readable).
        now: the time stamp (default: now).

    Returns:
        The path, as a string.
    """
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", "_".join(classes))[:_SLUG_LENGTH]
    path = Path(root) / f"forget_{stamp}_{slug}"
    n = 1
    while path.exists():
        path = Path(root) / f"forget_{stamp}_{slug}_{n}"
        n += 1
    return str(path)


def build_job_config(
    base_cfg: Any,
    *,
    classes: Sequence[str],
    method: str,
    max_iter: int,
    data_ratio: float,
    output_dir: str | Path,
    weights: str | None = None,
    base_lr: float | None = None,
    class_names: Sequence[str] | None = None,
    extra_opts: Sequence[Any] = (),
) -> Any:
    """The config of a one-task forgetting job, ready for :class:`~det_forget.engine.ForgetJob`.

    Args:
        base_cfg: the loaded model's config (a plain detector config or a forgetting one;
            it is cloned, never changed).
        classes: the class names to forget (one task; ``FORGET.TASKS`` in ``extra_opts``
            gives a sequence instead).
        method: ``FORGET.METHOD``, a name of the method registry.
        max_iter: ``FORGET.MAX_ITER``, training steps.
        data_ratio: ``FORGET.DATA_RATIO``, share of each class's training images, in (0, 1].
        output_dir: ``OUTPUT_DIR`` of the job (see :func:`job_output_dir`).
        weights: ``MODEL.WEIGHTS`` to start from (default: the config's).
        base_lr: ``SOLVER.BASE_LR`` (default: the config's).
        class_names: the model's classes (default: those of the config's datasets,
            :func:`~det_forget.engine.inference.class_names_of`).
        extra_opts: more ``KEY VALUE`` overrides, merged last (as on ``train_net.py``'s
            command line; they may change the settings above, and are checked the same).

    Returns:
        A new config, not frozen, with ``MODEL.META_ARCHITECTURE: ForgettingDetector``.

    Raises:
        ValueError: an unknown class, an empty forget set, every class forgotten (by
            the task or, for a sequence, by all of its tasks), an
            unknown method or one the model's task type does not run
            (:class:`~det_forget.forgetting.methods.MethodNotSupportedError`), a setting
            out of range, an extra option that is not a valid ``KEY VALUE`` pair, or a
            key the task type ignores.
    """
    cfg = forgetting_config(base_cfg)
    settings: list[Any] = [
        "FORGET.CLASSES",
        list(dict.fromkeys(classes)),  # a class ticked twice is asked for once
        "FORGET.TASKS",
        [],
        "FORGET.TASK_SIZES",
        [],
        "FORGET.METHOD",
        str(method),
        "FORGET.MAX_ITER",
        int(max_iter),
        "FORGET.DATA_RATIO",
        float(data_ratio),
        "OUTPUT_DIR",
        str(output_dir),
    ]
    if weights:
        settings += ["MODEL.WEIGHTS", str(weights)]
    if base_lr is not None:
        settings += ["SOLVER.BASE_LR", float(base_lr)]
    cfg.merge_from_list(settings)
    extra = list(extra_opts)
    if len(extra) % 2:
        raise ValueError(f"extra options must be KEY VALUE pairs; got an odd number: {extra}")
    try:
        cfg.merge_from_list(extra)
    except (KeyError, AssertionError, ValueError) as e:
        raise ValueError(f"invalid option in {extra}: {e}") from e

    f = cfg.FORGET
    if len(f.TASK_SIZES):
        # FORGET.CLASSES (always set here) wins over TASK_SIZES: it would be ignored.
        raise ValueError(
            "FORGET.TASK_SIZES is not an option of a job on chosen classes; give the task "
            "sequence as FORGET.TASKS (lists of class names) instead"
        )
    names = class_names if class_names is not None else class_names_of(cfg)
    # The tasks as every run resolves them (a sequence in FORGET.TASKS from the extra
    # options wins over FORGET.CLASSES, as in tools/train_net.py): unknown classes, an
    # empty forget set and a sequence that forgets every class are refused here.
    tasks_from_config(cfg, names)
    if f.MAX_ITER <= 0:
        raise ValueError(f"FORGET.MAX_ITER must be a positive number of steps, got {f.MAX_ITER}")
    if not 0.0 < f.DATA_RATIO <= 1.0:
        raise ValueError(f"FORGET.DATA_RATIO must be in (0, 1], got {f.DATA_RATIO}")
    check_method(f.METHOD, task_type_of(cfg))
    check_ignored_keys(cfg)
    check_values(cfg)
    return cfg
