"""Held-out AP_f and object fate of a detector, and its relearn time.

* :class:`HeldoutForgetAP` measures a detector on fixed held-out images that hold the
  forgotten classes, with the project's :class:`~det_forget.evaluation.coco_forget.
  ForgetCOCOEvaluator` (one ``COCOeval`` over every class on those images): AP_f, AP_r and
  where the forgotten objects went (:mod:`det_forget.evaluation.object_fate`).
* :func:`detector_relearn_time` fine-tunes a copy of a detector on ``shots`` training
  images holding each forgotten class (and ``retain_shots`` per retained class) with
  detectron2's own training losses (RPN + box head, the sum the detector returns in
  training mode) until that AP_f is back at half the base model's; the loop and stopping
  rule are :func:`~det_forget.audit.relearn.run_relearn`'s, shared with classifiers.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import random
import tempfile
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..classification.data import BatchSampler
from ..evaluation.coco_forget import ForgetCOCOEvaluator, fate_thresholds
from ..evaluation.metrics import ClassGroups
from ..evaluation.object_fate import summarize_fates
from ..lora import unload_adapters
from .detector import _test_mapper, _unwrap
from .relearn import RelearnResult, check_relearn_arguments, run_relearn

__all__ = ["ForgetAP", "HeldoutForgetAP", "detector_relearn_time", "few_shot_images"]

logger = logging.getLogger(__name__)


def _classes_of(record: dict) -> set[int]:
    return {int(a["category_id"]) for a in record.get("annotations", ()) if not a.get("iscrowd", 0)}


class ForgetAP(NamedTuple):
    """A detector's numbers on the held-out forget images.

    Attributes:
        forget: AP_f, COCO box AP (%) averaged over the forgotten classes.
        retain: AP_r over the retained classes with ground truth on those images (None:
            none has).
        object_fate: the evaluator's object fate of the forgotten objects (thresholds,
            ``per_class``, ``total``; see :mod:`det_forget.evaluation.object_fate`).
    """

    forget: float
    retain: float | None
    object_fate: dict[str, Any] | None


class HeldoutForgetAP:
    """AP_f, AP_r and object fate of detectors on fixed held-out images.

    Every detector is run on the same images (test-time resizing) and scored by one
    :class:`~det_forget.evaluation.coco_forget.ForgetCOCOEvaluator` on the registered
    dataset's ground truth, restricted to those images' ids; the forgotten classes are the
    forget group, every other class the retain group.

    Args:
        cfg: the detectors' config (test-time input size and format, ``FORGET.FATE_*``).
        dataset_name: the registered dataset ``dicts`` come from (its COCO json is the
            ground truth).
        dicts: the held-out images (dataset dicts of ``dataset_name``).
        forget_classes: contiguous ids of the forgotten classes.
        batch_size: images per forward pass.

    Raises:
        ValueError: no image, or no box of a forgotten class on them.
    """

    def __init__(
        self,
        cfg: Any,
        dataset_name: str,
        dicts: Sequence[dict],
        forget_classes: Sequence[int],
        *,
        batch_size: int = 4,
    ) -> None:
        self.forget = sorted({int(c) for c in forget_classes})
        present = set().union(*(_classes_of(d) for d in dicts)) if dicts else set()
        if not present.intersection(self.forget):
            raise ValueError(
                f"none of the {len(dicts)} held-out images holds a box of the forgotten "
                f"classes {self.forget}: AP_f is undefined there"
            )
        from detectron2.data import MetadataCatalog

        mapper = _test_mapper(cfg)
        self.inputs = [mapper(dict(d)) for d in dicts]
        self.image_ids = [d["image_id"] for d in dicts]
        self.num_objects = sum(
            1
            for d in dicts
            for a in d.get("annotations", ())
            if int(a["category_id"]) in self.forget and not a.get("iscrowd", 0)
        )
        self.batch_size = max(1, int(batch_size))
        self._fate = fate_thresholds(cfg)
        # A dataset without a COCO json (e.g. a registered view) is converted by the
        # evaluator into its output folder; a temporary one, gone with this object.
        self._tmp = None
        if MetadataCatalog.get(dataset_name).get("json_file", None) is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="det_forget_audit_")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints while loading
            self.evaluator = ForgetCOCOEvaluator(
                dataset_name,
                tasks=("bbox",),
                distributed=False,
                output_dir=None if self._tmp is None else self._tmp.name,
                **self._fate,
            )
        if self._tmp is not None:
            # The evaluator pointed the dataset's metadata at its json in the temporary
            # folder; that folder goes with this object, so leave the catalog as it was
            # (else every later evaluator of this dataset in the process, such as the
            # app's next forgetting job, opens a deleted file).
            meta = MetadataCatalog.get(dataset_name)
            if hasattr(meta, "json_file"):
                delattr(meta, "json_file")
        self.class_names = self.evaluator.class_names
        self.retain = [c for c in range(len(self.class_names)) if c not in self.forget]
        self.evaluator.set_groups(ClassGroups(forget=tuple(self.forget), retain=tuple(self.retain)))

    def __len__(self) -> int:
        return len(self.inputs)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> ForgetAP:
        """Run ``model`` (a detector or ``ForgettingDetector``) on the images and score it."""
        detector = _unwrap(model)
        was_training = detector.training
        detector.eval()
        self.evaluator.reset()
        try:
            for start in range(0, len(self.inputs), self.batch_size):
                batch = self.inputs[start : start + self.batch_size]
                self.evaluator.process(batch, detector(batch))
        finally:
            detector.train(was_training)
        with contextlib.redirect_stdout(io.StringIO()):  # COCOeval's summary tables
            results = self.evaluator.evaluate(img_ids=self.image_ids)
        scores = results.get("forget", {})
        ap_f, ap_r = scores.get("AP_f", 0.0), scores.get("AP_r", float("nan"))
        fates = self.evaluator.last_fates
        fate = None
        if fates is not None:
            fate = summarize_fates(
                fates,
                [self.class_names[c] for c in self.forget],
                score_thresh=self._fate["fate_score_thresh"],
                iou_thresh=self._fate["fate_iou_thresh"],
            ).as_dict()
        return ForgetAP(
            forget=float(ap_f) if ap_f == ap_f else 0.0,
            retain=float(ap_r) if ap_r == ap_r else None,
            object_fate=fate,
        )


def few_shot_images(
    dicts: Sequence[dict],
    forget_classes: Sequence[int],
    retain_classes: Sequence[int],
    *,
    shots: int,
    retain_shots: int,
    seed: int = 0,
) -> list[dict]:
    """``shots`` images holding each forgotten class, then ``retain_shots`` per retained one.

    Images are drawn in a seeded random order, each at most once; an image counts for the
    class it was drawn for (its other boxes stay labelled: detection examples are whole
    images). A retained class with fewer images gives what it has.

    Args:
        dicts: detectron2 dataset dicts (contiguous ``category_id``).
        forget_classes: the forgotten classes (each must have ``shots`` images).
        retain_classes: the retained classes.
        shots: images per forgotten class.
        retain_shots: images per retained class (0: none).
        seed: order of the draw.

    Returns:
        The chosen dataset dicts, forgotten classes' first.

    Raises:
        ValueError: a forgotten class without any training image.
    """
    order = list(range(len(dicts)))
    random.Random(seed).shuffle(order)
    classes = [_classes_of(d) for d in dicts]
    chosen: list[int] = []
    taken: set[int] = set()
    wanted = [(int(c), shots) for c in forget_classes]
    wanted += [(int(c), retain_shots) for c in retain_classes]
    forget = {int(c) for c in forget_classes}
    for c, n in wanted:
        picked = [i for i in order if i not in taken and c in classes[i]][:n]
        if not picked and c in forget and n > 0:
            raise ValueError(f"forgotten class {c} has no training image to relearn with")
        chosen += picked
        taken.update(picked)
    return [dicts[i] for i in chosen]


def detector_relearn_time(
    model: nn.Module,
    train_dicts: Sequence[dict],
    heldout: HeldoutForgetAP,
    *,
    cfg: Any,
    original_ap: float,
    shots: int = 5,
    retain_shots: int | None = None,
    steps: int = 50,
    lr: float = 1e-4,
    batch_size: int = 4,
    fraction: float = 0.5,
    eval_period: int = 5,
    seed: int = 0,
) -> RelearnResult:
    """Fine-tune a copy of ``model`` until AP_f is back at ``fraction * original_ap``.

    Every weight trains, as in the classifier version (:func:`~.relearn.relearn_time`):
    task adapters are merged into the copy first, then AdamW at a constant ``lr``, no
    weight decay, no gradient clipping, on the sum of the losses the detector returns in
    training mode (detectron2's RPN and box-head losses). The examples are
    :func:`few_shot_images` of ``train_dicts`` at test-time size without augmentation, so
    the run is fixed by ``seed`` (the draw, the batches and the detector's sampling of
    anchors and proposals). ``model`` itself is not changed.

    Args:
        model: the detector to probe (a detector or ``ForgettingDetector``, adapters live
            or merged).
        train_dicts: labelled training images to draw the examples from.
        heldout: the held-out images AP_f is measured on (the same for every model
            compared, and the ones ``original_ap`` was measured on).
        cfg: the detector's config (input size and format).
        original_ap: AP_f (%) of the model before forgetting on ``heldout``.
        shots: training images holding each forgotten class (k).
        retain_shots: training images per retained class (default: ``shots``; 0: none).
        steps: the step budget.
        lr: learning rate.
        batch_size: images per step.
        fraction: share of ``original_ap`` that counts as relearned.
        eval_period: steps between AP_f measurements (the answer is a multiple of it, or
            the last step).
        seed: seed of the example draw, the batches and the detector's sampling.

    Returns:
        The :class:`~.relearn.RelearnResult` (``metric`` ``"AP_f"``; its ``*_accuracy``
        fields hold AP in %, ``retain_accuracy`` AP_r).

    Raises:
        ValueError: a bad budget, fraction or original AP, or a forgotten class without a
            training image.
    """
    forget = heldout.forget
    check_relearn_arguments(
        forget,
        original_accuracy=original_ap,
        shots=shots,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        fraction=fraction,
        eval_period=eval_period,
    )
    from detectron2.utils.events import EventStorage

    retain_shots = shots if retain_shots is None else retain_shots
    examples = few_shot_images(
        train_dicts, forget, heldout.retain, shots=shots, retain_shots=retain_shots, seed=seed
    )
    mapper = _test_mapper(cfg)
    inputs = [mapper(dict(d)) for d in examples]
    inputs = [x for x in inputs if len(x["instances"]) > 0]
    student = unload_adapters(copy.deepcopy(_unwrap(model)), merge=True)
    for p in student.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    sampler = BatchSampler(len(inputs), batch_size, seed=seed)

    def train_step() -> None:
        student.train()
        batch = [inputs[i] for i in next(sampler).tolist()]
        with EventStorage(0):  # detectron2's heads log their statistics into one
            losses = student(batch)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def measure() -> tuple[float, float | None]:
        scores = heldout(student)
        return scores.forget, scores.retain

    cuda = next(student.parameters()).device.type == "cuda"
    with torch.random.fork_rng(devices=None if cuda else []):
        torch.manual_seed(seed)
        result = run_relearn(
            train_step,
            measure,
            original_accuracy=original_ap,
            steps=steps,
            lr=lr,
            batch_size=batch_size,
            shots=shots,
            retain_shots=retain_shots,
            fraction=fraction,
            eval_period=eval_period,
            metric="AP_f",
        )
    return result
