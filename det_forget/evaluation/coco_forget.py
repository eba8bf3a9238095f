"""COCO evaluation of a forgetting task: AP of the forget, retain, old and missing classes.

:class:`ForgetCOCOEvaluator` is detectron2's :class:`~detectron2.evaluation.COCOEvaluator`
plus a ``"forget"`` entry in its results (``AP_f``, ``AP_r``, ``AP_o``, ``AP_m``, their
AP50 versions, Drop and H-Mean) and a JSON report with the per-class table. With a forget
group it also reports where the forgotten objects went (:mod:`.object_fate`): for every
ground-truth object of a forgotten class, detected as its class, re-labelled as another class
(which one) or gone, at a score threshold (default 0.5) and IoU 0.5, per class and in total.

Protocol (see :data:`PROTOCOL`): **one** pycocotools ``COCOeval`` over the whole evaluation
set with every category, exactly what ``COCOEvaluator`` runs; the AP of each category is read
from ``COCOeval.eval["precision"]`` (area "all", the last ``maxDets``) and a group's AP is the
unweighted mean over its categories that have ground truth. The GS-LoRA reference evaluates
instead, per group, the subset of images that contain the group with only that group's boxes;
there, detections of a forgotten class on images without it are never counted, whereas here
they are false positives. Numbers of the two protocols are not directly comparable.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from tabulate import tabulate

from ..data.forget_retain import resolve_classes
from ..utils.io import atomic_write
from .metrics import CLASS_GROUPS, ClassGroups, aggregate_by_group, forgetting_summary
from .object_fate import (
    DEFAULT_IOU_THRESH,
    DEFAULT_SCORE_THRESH,
    FATES,
    ObjectFate,
    object_fates,
    summarize_fates,
)

__all__ = [
    "GROUP_SUFFIXES",
    "PROTOCOL",
    "REPORT_FORMAT",
    "ForgetCOCOEvaluator",
    "fate_thresholds",
    "load_before",
    "per_category_ap",
]

logger = logging.getLogger(__name__)

REPORT_FORMAT = "det_forget.forget_report/1"
"""``"format"`` field of the JSON report; bump the suffix on an incompatible change."""

PROTOCOL: dict[str, str] = {
    "name": "single_cocoeval_group_mean",
    "description": (
        "One pycocotools COCOeval over the whole evaluation set with all categories "
        "(AP@[.50:.95], area all, maxDets 100); per-category AP from eval['precision'] "
        "(entries of -1 excluded); a group's AP is the unweighted mean over its categories "
        "that have ground truth. The GS-LoRA reference instead evaluates a val subset per "
        "group (images containing the group, only that group's boxes), which does not count "
        "detections of a class on images without it; the two are not directly comparable."
    ),
}
"""How the numbers of a report are computed (written into every report)."""

GROUP_SUFFIXES: dict[str, str] = {"forget": "f", "retain": "r", "old": "o", "missing": "m"}
"""Group -> suffix of its metric names (``AP_f``, ``AP50_r``, ...)."""

PerClassAP = dict[str, dict[str, float | None]]

# Tasks whose categories are the dataset's thing classes (keypoints has only "person").
_FORGET_IOU_TYPES = ("bbox", "segm")


# --------------------------------------------------------------------------------------------
# Per-category AP
# --------------------------------------------------------------------------------------------


def _mean_percent(precision: np.ndarray) -> float | None:
    valid = precision[precision > -1]
    return float(np.mean(valid) * 100.0) if valid.size else None


def per_category_ap(coco_eval: Any, class_names: Sequence[str]) -> PerClassAP:
    """AP@[.50:.95] and AP50 of every category of an accumulated ``COCOeval``.

    Reads ``coco_eval.eval["precision"]`` (shape ``[T, R, K, A, M]``) at area range "all"
    and the last ``maxDets`` (100 by default), as detectron2's per-category table does.
    Entries of -1 (no ground truth) are excluded; a category without ground truth gets
    ``None``. A category with ground truth but no detection gets 0.

    Args:
        coco_eval: a pycocotools ``COCOeval`` after ``evaluate()`` and ``accumulate()``.
        class_names: one name per entry of ``coco_eval.params.catIds``, in that order.

    Returns:
        ``{name: {"AP": percent or None, "AP50": percent or None}}`` in ``class_names`` order.

    Raises:
        ValueError: ``coco_eval`` is not accumulated or ``class_names`` does not match it.
    """
    evaluation = getattr(coco_eval, "eval", None) or {}
    if "precision" not in evaluation:
        raise ValueError("coco_eval has no eval['precision']: call evaluate() and accumulate()")
    precision = np.asarray(evaluation["precision"])
    if precision.ndim != 5:
        raise ValueError(f"expected precision of shape [T, R, K, A, M], got {precision.shape}")
    if len(class_names) != precision.shape[2]:
        raise ValueError(
            f"{len(class_names)} class names for {precision.shape[2]} categories in coco_eval"
        )
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class names are not unique: {list(class_names)}")
    area = list(coco_eval.params.areaRngLbl).index("all")
    iou50 = np.flatnonzero(np.isclose(np.asarray(coco_eval.params.iouThrs), 0.5))
    out: PerClassAP = {}
    for k, name in enumerate(class_names):
        p = precision[:, :, k, area, -1]
        out[str(name)] = {
            "AP": _mean_percent(p),
            "AP50": _mean_percent(p[iou50[0]]) if iou50.size else None,
        }
    return out


# --------------------------------------------------------------------------------------------
# "Before" numbers
# --------------------------------------------------------------------------------------------


def _score(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _report_per_class(report: Mapping[str, Any], iou_type: str) -> list[Mapping[str, Any]]:
    try:
        return report["iou_types"][iou_type]["per_class"]
    except KeyError:
        raise ValueError(f"report has no per-class table for iou type {iou_type!r}") from None


def load_before(
    before: Mapping[Any, Any] | str | os.PathLike[str],
    class_names: Sequence[str],
    iou_type: str = "bbox",
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-class AP and AP50 before the task, keyed by class name.

    Args:
        before: a forget report (its path, or the loaded dict), a ``{class: AP}`` mapping,
            or a ``{class: {"AP": .., "AP50": ..}}`` mapping (what :func:`per_category_ap`
            returns); classes by name or contiguous id. A JSON file holding one of these
            mappings works too.
        class_names: the dataset's classes, in contiguous-id order.
        iou_type: which table of a report to read.

    Returns:
        ``(AP, AP50)`` dicts; classes without a finite score are left out (AP50 may be empty
        when ``before`` only has AP).

    Raises:
        FileNotFoundError: ``before`` is a path that does not exist.
        ValueError: unknown classes or an unusable report.
    """
    if isinstance(before, (str, os.PathLike)):
        path = Path(before)
        if not path.is_file():
            raise FileNotFoundError(f"'before' report {str(path)!r} does not exist")
        before = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(before, Mapping):
        raise ValueError(f"'before' must be a mapping or a report path, got {type(before)}")
    if "format" in before and "iou_types" in before:
        entries = {
            row["name"]: {"AP": row.get("AP"), "AP50": row.get("AP50")}
            for row in _report_per_class(before, iou_type)
        }
    else:
        entries = dict(before)
    ap: dict[str, float] = {}
    ap50: dict[str, float] = {}
    for key, value in entries.items():
        (cid,) = resolve_classes([key], class_names, what="'before' scores")
        name = class_names[cid]
        if isinstance(value, Mapping):
            a, a50 = _score(value.get("AP")), _score(value.get("AP50"))
        else:
            a, a50 = _score(value), None
        if a is not None:
            ap[name] = a
        if a50 is not None:
            ap50[name] = a50
    return ap, ap50


# --------------------------------------------------------------------------------------------
# Evaluator
# --------------------------------------------------------------------------------------------


def fate_thresholds(cfg: Any) -> dict[str, float]:
    """``fate_score_thresh`` / ``fate_iou_thresh`` keywords from ``FORGET.FATE_*`` (defaults
    when the config has no such keys)."""
    node = cfg.get("FORGET") if hasattr(cfg, "get") else None
    return {
        "fate_score_thresh": float(
            node.get("FATE_SCORE_THRESH", DEFAULT_SCORE_THRESH) if node else DEFAULT_SCORE_THRESH
        ),
        "fate_iou_thresh": float(
            node.get("FATE_IOU_THRESH", DEFAULT_IOU_THRESH) if node else DEFAULT_IOU_THRESH
        ),
    }


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _jsonable(value: Any) -> Any:
    """Replace non-finite floats by ``None`` (strict JSON) and tuples by lists."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


class ForgetCOCOEvaluator(COCOEvaluator):
    """``COCOEvaluator`` that also reports AP per forgetting group, Drop and H-Mean.

    After the usual COCO evaluation (pycocotools' matching, untouched), ``evaluate()`` adds
    ``results["forget"]`` (``results["forget_segm"]`` for masks): flat floats, NaN when
    undefined, so ``print_csv_format``, ``flatten_results_dict`` and ``EventStorage`` take it:

    * ``AP_f``, ``AP_r``, ``AP_o``, ``AP_m`` and ``AP50_*``: group means of per-class AP;
    * ``drop``, ``h_mean`` (and ``drop50``, ``h_mean50``): against the ``before`` numbers;
    * ``AP-<class>``, ``AP50-<class>``: per class;
    * with a forget group (bbox only): ``fate_objects`` (forgotten-class objects) and
      ``detected_pct``, ``relabelled_pct``, ``gone_pct``: their fates in percent (see
      :mod:`det_forget.evaluation.object_fate`); the report's ``"object_fate"`` section has
      the counts per class and which classes they were re-labelled as.

    The detailed report (per-class table with groups and before/after, group means,
    :func:`~det_forget.evaluation.metrics.forgetting_summary`, :data:`PROTOCOL`) is written
    atomically to ``<output_dir>/<report_name>`` by the main process, and the per-class
    table is logged. See the module docstring for the protocol.

    Args:
        dataset_name: registered detectron2 dataset (COCO json or convertible).
        groups: forget/retain/old/missing classes by name or contiguous id; ``None``: only
            per-class AP until :meth:`set_groups` is called.
        before: per-class AP before the task (see :func:`load_before`); ``None``: no Drop.
        tasks: as ``COCOEvaluator`` (``None``: inferred from the predictions).
        distributed: gather predictions from all ranks and evaluate on the main one.
        output_dir: where ``COCOEvaluator`` dumps predictions and the report is written;
            ``None``: no files.
        report_name: file name (or absolute path) of the report.
        max_dets_per_image: as ``COCOEvaluator``.
        use_fast_impl: as ``COCOEvaluator`` (falls back to pycocotools without ``_C``).
        allow_cached_coco: as ``COCOEvaluator``.
        fate_score_thresh: detections below this score do not count for object fate.
        fate_iou_thresh: IoU at which a detection overlaps a forgotten object.
    """

    def __init__(
        self,
        dataset_name: str,
        groups: ClassGroups | Mapping[str, Iterable[Hashable]] | None = None,
        *,
        before: Mapping[Any, Any] | str | os.PathLike[str] | None = None,
        tasks: Sequence[str] | None = None,
        distributed: bool = True,
        output_dir: str | None = None,
        report_name: str = "forget_report.json",
        max_dets_per_image: int | None = None,
        use_fast_impl: bool = True,
        allow_cached_coco: bool = True,
        fate_score_thresh: float = DEFAULT_SCORE_THRESH,
        fate_iou_thresh: float = DEFAULT_IOU_THRESH,
    ) -> None:
        super().__init__(
            dataset_name,
            tasks=tasks,
            distributed=distributed,
            output_dir=output_dir,
            max_dets_per_image=max_dets_per_image,
            use_fast_impl=use_fast_impl,
            allow_cached_coco=allow_cached_coco,
        )
        self._dataset_name = dataset_name
        self._report_name = report_name
        if not 0.0 <= fate_score_thresh <= 1.0:
            raise ValueError(f"fate_score_thresh must be in [0, 1], got {fate_score_thresh}")
        if not 0.0 < fate_iou_thresh <= 1.0:
            raise ValueError(f"fate_iou_thresh must be in (0, 1], got {fate_iou_thresh}")
        self._fate_score_thresh = float(fate_score_thresh)
        self._fate_iou_thresh = float(fate_iou_thresh)
        self._fates: list[ObjectFate] | None = None
        self._class_names, self._cat_id_to_name = self._categories()
        self._coco_evals: dict[str, Any] = {}
        self._last_per_class: dict[str, PerClassAP] = {}
        self._groups: ClassGroups | None = None
        self._before_source: str | None = None
        self._before: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
        self.set_groups(groups, before)

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        dataset_name: str,
        groups: ClassGroups | Mapping[str, Iterable[Hashable]] | None = None,
        output_dir: str | None = None,
        *,
        before: Mapping[Any, Any] | str | os.PathLike[str] | None = None,
    ) -> ForgetCOCOEvaluator:
        """Build the evaluator of a single forgetting task from a config.

        Without ``groups``, ``FORGET.CLASSES`` are the forget group, ``FORGET.MISSING_CLASSES``
        the missing group and every other class the retain group (continual runs set the
        groups of each task with :meth:`set_groups`).

        Args:
            cfg: detectron2 config with the ``FORGET`` node.
            dataset_name: dataset to evaluate.
            groups: explicit groups (override the config).
            output_dir: report directory; default ``<cfg.OUTPUT_DIR>/inference``.
            before: per-class AP before the task.

        Returns:
            The evaluator (bbox, plus segm when ``MODEL.MASK_ON``).
        """
        mask_on = bool(cfg.MODEL.get("MASK_ON", False)) if "MODEL" in cfg else False
        evaluator = cls(
            dataset_name,
            tasks=("bbox", "segm") if mask_on else ("bbox",),
            output_dir=output_dir or os.path.join(cfg.OUTPUT_DIR, "inference"),
            **fate_thresholds(cfg),
        )
        if groups is None:
            names = evaluator.class_names
            forget = resolve_classes(cfg.FORGET.CLASSES, names, dataset_name, allow_empty=True)
            missing = resolve_classes(
                cfg.FORGET.MISSING_CLASSES,
                names,
                dataset_name,
                what="missing classes",
                allow_empty=True,
            )
            if forget:
                groups = ClassGroups(
                    forget=tuple(forget),
                    retain=tuple(
                        c for c in range(len(names)) if c not in set(forget) | set(missing)
                    ),
                    missing=tuple(missing),
                )
        evaluator.set_groups(groups, before)
        return evaluator

    # ---------------------------------------------------------------------------- state

    @property
    def class_names(self) -> list[str]:
        """Class names in contiguous-id order."""
        return list(self._class_names)

    @property
    def groups(self) -> ClassGroups | None:
        """Current groups, by class name."""
        return self._groups

    @property
    def last_per_class(self) -> dict[str, PerClassAP]:
        """``{iou_type: per_category_ap}`` of the last ``evaluate()`` (main process).

        Pass ``last_per_class["bbox"]`` as ``before`` of the next task.
        """
        return copy.deepcopy(self._last_per_class)

    def set_groups(
        self,
        groups: ClassGroups | Mapping[str, Iterable[Hashable]] | None,
        before: Mapping[Any, Any] | str | os.PathLike[str] | None = None,
    ) -> None:
        """Set the class groups and the "before" numbers of the next evaluations.

        Args:
            groups: forget/retain/old/missing classes (names or contiguous ids), e.g.
                ``ForgetTask.groups()``; ``None`` for per-class AP only.
            before: per-class AP before the task (see :func:`load_before`); replaces the
                previous one, ``None`` clears it.

        Raises:
            TypeError: ``groups`` is neither a ``ClassGroups`` nor a mapping.
            ValueError: unknown classes, or a class in two groups.
        """
        if groups is None:
            self._groups = None
        else:
            if not isinstance(groups, (ClassGroups, Mapping)):
                raise TypeError(
                    "groups must be a ClassGroups or a {group: classes} mapping, got "
                    f"{type(groups).__name__} (tasks go in the tasks= keyword)"
                )
            members = groups.as_dict() if isinstance(groups, ClassGroups) else dict(groups)
            unknown = sorted(set(members) - set(CLASS_GROUPS))
            if unknown:
                raise ValueError(f"unknown class groups {unknown}; valid: {list(CLASS_GROUPS)}")
            by_name = {
                g: tuple(
                    self._class_names[c]
                    for c in resolve_classes(
                        list(members.get(g, ())),
                        self._class_names,
                        self._dataset_name,
                        what=f"{g} classes",
                        allow_empty=True,
                    )
                )
                for g in CLASS_GROUPS
            }
            self._groups = ClassGroups(**by_name)
        self.set_before(before)

    def set_before(self, before: Mapping[Any, Any] | str | os.PathLike[str] | None) -> None:
        """Set (or clear, with ``None``) the per-class AP before the task.

        Args:
            before: see :func:`load_before`.
        """
        self._before = {}
        if before is None:
            self._before_source = None
            return
        is_path = isinstance(before, (str, os.PathLike))
        self._before_source = str(before) if is_path else "mapping"
        for iou_type in _FORGET_IOU_TYPES:
            try:
                self._before[iou_type] = load_before(before, self._class_names, iou_type)
            except ValueError:
                # A report may hold only some iou types; a plain mapping serves every type.
                if iou_type == "bbox":
                    raise

    def _categories(self) -> tuple[list[str], dict[int, str]]:
        """Class names and COCO category id -> name, filling missing metadata.

        ``register_coco_instances`` sets ``thing_classes`` and the id mapping only when the
        dataset is first loaded; without the mapping ``COCOEvaluator`` would not translate
        predicted contiguous ids back to COCO ids. They are derived here from the json the
        way ``load_coco_json`` does (sorted category ids), so the values agree.
        """
        cat_ids = sorted(self._coco_api.getCatIds())
        json_names = [c["name"] for c in self._coco_api.loadCats(cat_ids)]
        meta = self._metadata
        if meta.get("thing_dataset_id_to_contiguous_id") is None:
            meta.thing_dataset_id_to_contiguous_id = {c: i for i, c in enumerate(cat_ids)}
        if meta.get("thing_classes") is None:
            meta.thing_classes = json_names
        names = list(meta.thing_classes)
        id_map = dict(meta.thing_dataset_id_to_contiguous_id)
        if sorted(id_map.values()) != list(range(len(names))):
            raise ValueError(
                f"dataset {self._dataset_name!r}: thing_dataset_id_to_contiguous_id does not "
                f"map onto 0..{len(names) - 1}"
            )
        return names, {int(c): names[i] for c, i in id_map.items()}

    # ---------------------------------------------------------------------------- evaluation

    def reset(self) -> None:
        super().reset()
        self._coco_evals = {}
        self._fates = None

    @property
    def last_fates(self) -> list[ObjectFate] | None:
        """Every forgotten-class object's fate in the last ``evaluate()`` (main process);
        ``None`` without a forget group."""
        return None if self._fates is None else list(self._fates)

    def _eval_predictions(self, predictions, img_ids=None):
        # COCOEvaluator rewrites the predictions' category ids to dataset ids in place; the
        # fates are counted first, on the contiguous ids detectron2 predicted.
        self._fates = self._object_fates(predictions, img_ids)
        return super()._eval_predictions(predictions, img_ids=img_ids)

    def _object_fates(
        self, predictions: Sequence[Mapping[str, Any]], img_ids: Sequence[int] | None
    ) -> list[ObjectFate] | None:
        """Fates of the forgotten-class objects on the predicted images (class names)."""
        if self._groups is None or not self._groups.forget:
            return None
        forget = set(self._groups.forget)
        wanted = None if img_ids is None else {int(i) for i in img_ids}
        fates: list[ObjectFate] = []
        for pred in predictions:
            image_id = int(pred["image_id"])
            if (wanted is not None and image_id not in wanted) or "instances" not in pred:
                continue
            anns = [
                a
                for a in self._coco_api.loadAnns(self._coco_api.getAnnIds(imgIds=[image_id]))
                if not a.get("iscrowd", 0)
            ]
            gt_classes = [self._cat_id_to_name[int(a["category_id"])] for a in anns]
            if not forget.intersection(gt_classes):
                continue
            gt_boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
            inst = pred["instances"]
            pred_boxes = [[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in inst)]
            fates += object_fates(
                gt_boxes,
                gt_classes,
                pred_boxes,
                [self._class_names[int(d["category_id"])] for d in inst],
                [float(d["score"]) for d in inst],
                forget,
                image_id=image_id,
                score_thresh=self._fate_score_thresh,
                iou_thresh=self._fate_iou_thresh,
            )
        return fates

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        # The only hook into COCOEvaluator's flow that sees the accumulated COCOeval: keep
        # it for the group metrics (None means "no detections at all").
        self._coco_evals[iou_type] = coco_eval
        return super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)

    def evaluate(self, img_ids: Sequence[int] | None = None):
        """Run ``COCOEvaluator.evaluate`` and add the forget metrics (main process).

        Args:
            img_ids: evaluate on these image ids only (default: the whole dataset).

        Returns:
            detectron2's results with ``"forget"`` (and ``"forget_segm"``) added; ``{}`` on
            other ranks.
        """
        self._coco_evals = {}
        self._fates = None
        results = super().evaluate(img_ids)
        if not results or not comm.is_main_process() or not self._coco_evals:
            return results
        sections: dict[str, Any] = {}
        self._last_per_class = {}
        for iou_type in _FORGET_IOU_TYPES:
            if iou_type not in self._coco_evals:
                continue
            flat, section, per_class = self._forget_results(
                iou_type, self._coco_evals[iou_type], img_ids
            )
            key = "forget" if iou_type == "bbox" else f"forget_{iou_type}"
            results[key] = flat
            self._results[key] = copy.deepcopy(flat)
            sections[iou_type] = section
            self._last_per_class[iou_type] = per_class
        fate = self._fate_section()
        if fate is not None and "forget" in results:
            total = fate["total"]
            extra = {"fate_objects": float(total["objects"])}
            extra.update({f"{f}_pct": _nan_if_none(total[f"{f}_pct"]) for f in FATES})
            results["forget"].update(extra)
            self._results["forget"].update(extra)
            self._log_fates(fate)
        if sections:
            self._write_report(sections, img_ids, fate)
        return results

    def _fate_section(self) -> dict[str, Any] | None:
        if self._fates is None or self._groups is None:
            return None
        return summarize_fates(
            self._fates,
            list(self._groups.forget),
            score_thresh=self._fate_score_thresh,
            iou_thresh=self._fate_iou_thresh,
        ).as_dict()

    def _log_fates(self, fate: Mapping[str, Any]) -> None:
        def row(name: str, c: Mapping[str, Any]) -> list[Any]:
            relabelled_as = ", ".join(f"{k} {v}" for k, v in c["relabelled_as"].items())
            return [name, c["objects"]] + [c[f"{f}_pct"] for f in FATES] + [relabelled_as or "-"]

        rows = [row(n, c) for n, c in fate["per_class"].items()] + [row("total", fate["total"])]
        table = tabulate(
            rows,
            headers=["forgotten class", "objects"] + [f"{f} %" for f in FATES] + ["relabelled as"],
            tablefmt="pipe",
            floatfmt=".1f",
            numalign="left",
            missingval="-",
        )
        self._logger.info(
            "Object fate of forgotten classes (score >= %.2f, IoU >= %.2f):\n%s",
            fate["score_thresh"],
            fate["iou_thresh"],
            table,
        )

    def _per_class(self, coco_eval: Any, img_ids: Sequence[int] | None) -> PerClassAP:
        if coco_eval is not None:
            names = [self._cat_id_to_name[int(c)] for c in coco_eval.params.catIds]
            found = per_category_ap(coco_eval, names)
            return {n: found.get(n, {"AP": None, "AP50": None}) for n in self._class_names}
        # No detection at all (COCOEvaluator skips COCOeval): AP is 0 where there is ground
        # truth, as COCOeval would give, and undefined elsewhere.
        out: PerClassAP = {}
        for cat_id, name in self._cat_id_to_name.items():
            anns = self._coco_api.getAnnIds(
                imgIds=list(img_ids) if img_ids is not None else [], catIds=[cat_id]
            )
            has_gt = any(not a.get("iscrowd", 0) for a in self._coco_api.loadAnns(anns))
            out[name] = {"AP": 0.0, "AP50": 0.0} if has_gt else {"AP": None, "AP50": None}
        return {n: out[n] for n in self._class_names}

    def _forget_results(
        self, iou_type: str, coco_eval: Any, img_ids: Sequence[int] | None
    ) -> tuple[dict[str, float], dict[str, Any], PerClassAP]:
        per_class = self._per_class(coco_eval, img_ids)
        after = {
            metric: {n: v[metric] for n, v in per_class.items() if v[metric] is not None}
            for metric in ("AP", "AP50")
        }
        before_ap, before_ap50 = self._before.get(iou_type, ({}, {}))
        before = {"AP": before_ap, "AP50": before_ap50}
        groups = self._groups

        flat: dict[str, float] = {}
        group_scores: dict[str, Any] = {}
        summaries: dict[str, Any] = {}
        for metric in ("AP", "AP50"):
            suffix = "" if metric == "AP" else "50"
            if groups is not None:
                group_scores[metric] = aggregate_by_group(after[metric], groups)
                for g, s in GROUP_SUFFIXES.items():
                    flat[f"{metric}_{s}"] = _nan_if_none(group_scores[metric][g])
                summaries[metric] = (
                    forgetting_summary(before[metric], after[metric], groups)
                    if before[metric]
                    else None
                )
                summary = summaries[metric] or {}
                flat[f"drop{suffix}"] = _nan_if_none(summary.get("drop"))
                flat[f"h_mean{suffix}"] = _nan_if_none(summary.get("h_mean"))
        for name, v in per_class.items():
            flat[f"AP-{name}"] = _nan_if_none(v["AP"])
            flat[f"AP50-{name}"] = _nan_if_none(v["AP50"])

        group_of = {}
        if groups is not None:
            group_of = {c: g for g, members in groups.as_dict().items() for c in members}
        rows = []
        for cid, name in enumerate(self._class_names):
            ap, ap50 = per_class[name]["AP"], per_class[name]["AP50"]
            b, b50 = before["AP"].get(name), before["AP50"].get(name)
            rows.append(
                {
                    "id": cid,
                    "name": name,
                    "group": group_of.get(name),
                    "AP": ap,
                    "AP50": ap50,
                    "AP_before": b,
                    "AP50_before": b50,
                    "delta_AP": ap - b if ap is not None and b is not None else None,
                }
            )
        self._log_table(iou_type, rows, flat)
        section = {
            "per_class": rows,
            "groups": group_scores or None,
            "summary": summaries or None,
            "metrics": flat,
            "evaluated": coco_eval is not None,
        }
        return flat, section, per_class

    def _log_table(
        self, iou_type: str, rows: list[dict[str, Any]], flat: Mapping[str, float]
    ) -> None:
        table = tabulate(
            [
                (r["name"], r["group"] or "-", r["AP"], r["AP50"], r["AP_before"], r["delta_AP"])
                for r in rows
            ],
            headers=["category", "group", "AP", "AP50", "AP before", "delta AP"],
            tablefmt="pipe",
            floatfmt=".3f",
            numalign="left",
            missingval="-",
        )
        summary_keys = [k for k in flat if "-" not in k]
        summary = tabulate(
            [[flat[k] for k in summary_keys]],
            headers=summary_keys,
            tablefmt="pipe",
            floatfmt=".3f",
            numalign="left",
        )
        self._logger.info(
            "Forget/retain %s AP (%s):\n%s\n%s", iou_type, PROTOCOL["name"], table, summary
        )

    def _write_report(
        self,
        sections: Mapping[str, Any],
        img_ids: Sequence[int] | None,
        fate: Mapping[str, Any] | None = None,
    ) -> None:
        if not self._output_dir:
            return
        report = {
            "format": REPORT_FORMAT,
            "dataset": self._dataset_name,
            "protocol": PROTOCOL,
            "num_images": len(img_ids) if img_ids is not None else len(self._coco_api.imgs),
            "classes": list(self._class_names),
            "class_groups": self._groups.as_dict() if self._groups is not None else None,
            "before_source": self._before_source,
            "iou_types": dict(sections),
            # None without a forget group; else thresholds, per_class and total (counts,
            # *_pct, relabelled_as), see det_forget.evaluation.object_fate.
            "object_fate": fate,
        }
        path = os.path.join(self._output_dir, self._report_name)
        with atomic_write(path) as f:
            json.dump(_jsonable(report), f, indent=2, allow_nan=False)
        self._logger.info("Forget report written to %s", path)
