"""``ForgettingDetector``: a detectron2 meta-architecture that wraps a detector for forgetting.

In training it takes ``{"forget": [...], "retain": [...]}`` (two detectron2 batches) and
returns every loss term separately (they land in ``metrics.json`` one by one):

* the wrapped detector's own losses on retain images, whose forget-class boxes were
  removed by the data views (those objects are background), each prefixed ``retain_``;
* the forgetting term on forget-class objects: the box head classifies each forget
  ground-truth box and a few jittered copies of it; the per-object cross-entropy goes to
  the shared :class:`~det_forget.forgetting.ForgettingObjective` (per-class bounded loss
  by default, ``1/CE`` for ``no_retain``, baselines);
* with ``FORGET.LOSS.BACKGROUND_WEIGHT`` > 0, the cross-entropy to background on the same
  boxes (det_forget's term, not GS-LoRA's);
* group-lasso sparsity, the prototype term (GS-LoRA++), L1 on B, weight-change
  penalties, as the method asks.

In inference it is the wrapped detector. LoRA adapters are injected into the wrapped
detector by module-name patterns from ``FORGET.LORA`` when the method uses them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN, build_model
from detectron2.structures import Boxes
from torch import nn

from ...config import lora_config_from_cfg, num_classes_of
from ...errors import ConfigValueError
from ...forgetting import ForgetTask, ForgettingObjective, check_method, task_type_of
from ...forgetting.losses import object_nll, random_labels
from ...lora import InjectionReport, inject_lora
from ..roi_align import use_matmul_roi_align

__all__ = [
    "ForgettingDetector",
    "ForgetOutputs",
    "FORGET_OUTPUTS",
    "register_forget_outputs",
    "jitter_boxes",
]

logger = logging.getLogger(__name__)


@dataclass
class ForgetOutputs:
    """What a detector family reports about the forget-class objects of a batch.

    Attributes:
        logits: ``(N, K)`` class logits of the N objects (``K = C + 1`` with a background
            logit for softmax detectors, ``K = C`` for sigmoid ones).
        labels: ``(N,)`` their classes.
        features: ``(N, D)`` the embeddings classified by the class head (prototype term).
        sigmoid: classes are independent sigmoids (Deformable DETR), not a softmax.
        extra_losses: detector-specific terms added to the forgetting loss as they are,
            weighted by beta (DETR keeps its box terms on forget objects).
        forget_loss: when given, the forget loss the objective bounds / negates, in place
            of ``-log p(label)`` of ``logits`` (DETR's ``reference`` mode: GS-LoRA's
            criterion classification loss over all queries, shape ``(1,)``).
    """

    logits: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor
    sigmoid: bool = False
    extra_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    forget_loss: torch.Tensor | None = None


#: detector class -> function(detector, batched_inputs, jitter) returning
#: :class:`ForgetOutputs` for the forget-class objects of ``batched_inputs``.
FORGET_OUTPUTS: dict[type, Callable] = {}


def register_forget_outputs(detector_cls: type):
    """Register how a detector family classifies ground-truth objects (decorator)."""

    def deco(fn):
        FORGET_OUTPUTS[detector_cls] = fn
        return fn

    return deco


def jitter_boxes(boxes: torch.Tensor, copies: int, max_shift: float = 0.1) -> torch.Tensor:
    """``boxes`` (N, 4 XYXY) followed by ``copies`` randomly shifted/scaled copies of each.

    Shifts and size changes are at most ``max_shift`` of the box size, so every copy
    still overlaps its box strongly (IoU > ~0.6), like a proposal the RPN would send.
    """
    if copies <= 0 or len(boxes) == 0:
        return boxes
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(copies, 1)
    ctr = ((boxes[:, 2:] + boxes[:, :2]) / 2).repeat(copies, 1)
    ctr = ctr + (torch.rand_like(ctr) * 2 - 1) * max_shift * wh
    wh = wh * (1 + (torch.rand_like(wh) * 2 - 1) * max_shift)
    return torch.cat([boxes, torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1)])


@register_forget_outputs(GeneralizedRCNN)
def rcnn_forget_outputs(detector: GeneralizedRCNN, batched_inputs, jitter: int):
    """Box-head logits and features for every (jittered) ground-truth box."""
    images = detector.preprocess_image(batched_inputs)
    features = detector.backbone(images.tensor)
    heads = detector.roi_heads
    boxes, labels = [], []
    for x in batched_inputs:
        inst = x["instances"].to(detector.device)
        b = jitter_boxes(inst.gt_boxes.tensor, jitter)
        b = Boxes(b)
        b.clip(inst.image_size)
        boxes.append(b)
        labels.append(inst.gt_classes.repeat(jitter + 1))
    pooled = heads.box_pooler([features[f] for f in heads.box_in_features], boxes)
    feats = heads.box_head(pooled)
    logits, _ = heads.box_predictor(feats)
    return ForgetOutputs(logits, torch.cat(labels), feats)


@META_ARCH_REGISTRY.register()
class ForgettingDetector(nn.Module):
    """Wrap a detector so it can forget classes; see the module docstring.

    Args:
        detector: the detector (e.g. ``GeneralizedRCNN``); its weights load from a plain
            checkpoint of that detector (keys without the ``detector.`` prefix).
        objective: the method's loss terms.
        lora_report: what :func:`inject_lora` wrapped (None for full-weight methods).
        num_classes: foreground classes of the detector.
        jitter_copies: jittered copies of each forget box classified per step.
        forget_classes: contiguous ids of the classes being forgotten now.
    """

    @configurable
    def __init__(
        self,
        *,
        detector: nn.Module,
        objective: ForgettingObjective,
        lora_report: InjectionReport | None,
        num_classes: int,
        jitter_copies: int = 4,
        forget_classes: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        fn = next((f for cls, f in FORGET_OUTPUTS.items() if isinstance(detector, cls)), None)
        if fn is None:
            raise ValueError(
                f"ForgettingDetector does not know how to classify objects of a "
                f"{type(detector).__name__}; register one with register_forget_outputs"
            )
        self.detector = detector
        self.objective = objective
        self.lora_report = lora_report
        self.num_classes = num_classes
        self.jitter_copies = jitter_copies
        self._forget_outputs = fn
        self.forget_classes = tuple(forget_classes)
        self.forgotten_classes = tuple(forget_classes)
        self.prototypes: torch.Tensor | None = None
        self.step = 0
        # A plain detector checkpoint has no "detector." prefix; accept it as is.
        self._register_load_state_dict_pre_hook(self._add_detector_prefix)

    @classmethod
    def from_config(cls, cfg):
        detector_cfg = cfg.clone()
        detector_cfg.defrost()
        detector_cfg.MODEL.META_ARCHITECTURE = cfg.FORGET.DETECTOR
        detector = build_model(detector_cfg)
        # Same numbers as torchvision's ROIAlign, a much cheaper backward on CPU (where
        # it was 30% of a forgetting step); see det_forget/modeling/roi_align.py.
        use_matmul_roi_align(detector)
        method = check_method(cfg.FORGET.METHOD, task_type_of(cfg))
        report = None
        if method.uses_lora:
            report = inject_lora(detector, lora_config_from_cfg(cfg))
        else:
            for p in detector.parameters():
                p.requires_grad_(True)
        return {
            "detector": detector,
            "objective": ForgettingObjective.from_config(cfg, detector),
            "lora_report": report,
            "num_classes": num_classes_of(cfg),
            "jitter_copies": cfg.FORGET.JITTER_COPIES,
        }

    @property
    def device(self) -> torch.device:
        return next(self.detector.parameters()).device

    def classifier_prototypes(self) -> torch.Tensor:
        """Rows of the class head's weight: GS-LoRA++'s detection prototypes.

        The detector's own ``classifier_prototypes()`` when it has one (DETR family),
        else the R-CNN box predictor's ``cls_score``.
        """
        own = getattr(self.detector, "classifier_prototypes", None)
        if callable(own):
            return own()
        return self.detector.roi_heads.box_predictor.cls_score.weight.detach().clone()

    def set_task(self, task: ForgetTask, objective: ForgettingObjective | None = None) -> None:
        """Start forgetting ``task`` (class ids are contiguous ids).

        Prototypes are taken from the model as it is now (after loading weights and
        merging earlier tasks), never from a fresh initialisation.
        """
        self.forget_classes = tuple(int(c) for c in task.forget)
        self.forgotten_classes = tuple(int(c) for c in task.forgotten)
        if objective is not None:
            self.objective = objective
        self.objective.use_task(task.index)  # FORGET.LOSS.FORGET_WEIGHTS: beta per task
        self.prototypes = (
            self.classifier_prototypes() if self.objective.spec.uses_prototypes else None
        )

    def forget_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The classes the forget term scores forget objects against.

        Their own classes, except for ``random_labels``: a random *foreground* class (never
        the background logit of a softmax head) that is not being or already forgotten,
        the rule classification follows too.
        """
        if self.objective.spec.name != "random_labels":
            return labels
        return random_labels(
            labels,
            self.num_classes,
            exclude=torch.tensor(self.forgotten_classes, dtype=torch.long, device=labels.device),
        )

    def background_loss(self, out: ForgetOutputs) -> torch.Tensor:
        """Per-object cross-entropy to the background logit (``FORGET.LOSS.BACKGROUND_WEIGHT``).

        Raises:
            ConfigValueError: the detector has no background logit (sigmoid classes).
        """
        if out.sigmoid or out.logits.shape[-1] != self.num_classes + 1:
            raise ConfigValueError(
                f"FORGET.LOSS.BACKGROUND_WEIGHT needs a softmax class head with a background "
                f"logit ({self.num_classes} + 1 outputs); {type(self.detector).__name__} "
                f"gives {out.logits.shape[-1]}{' sigmoid' if out.sigmoid else ''} outputs"
            )
        target = torch.full_like(out.labels, self.num_classes)
        return F.cross_entropy(out.logits, target, reduction="none")

    def _add_detector_prefix(self, state_dict, prefix, *args, **kwargs) -> None:
        top_level = {n for n, _ in self.detector.named_children()}
        top_level |= {n for n, _ in self.detector.named_buffers(recurse=False)}
        top_level |= {n for n, _ in self.detector.named_parameters(recurse=False)}
        for key in list(state_dict):
            rest = key[len(prefix) :]
            if key.startswith(prefix) and rest.split(".")[0] in top_level:
                state_dict[prefix + "detector." + rest] = state_dict.pop(key)

    def forward(self, batched_inputs):
        if not self.training:
            return self.detector(batched_inputs)
        if not isinstance(batched_inputs, dict):
            raise TypeError(
                "ForgettingDetector trains on {'forget': batch, 'retain': batch}; "
                f"got {type(batched_inputs).__name__} (use det_forget's ForgetTrainer)"
            )
        obj = self.objective
        retain_losses: dict[str, torch.Tensor] = {}
        kwargs: dict = {"step": self.step, "model": self.detector}
        if obj.uses_retain_data:
            retain_losses = self.detector(batched_inputs["retain"])
            kwargs["retain_loss"] = sum(retain_losses.values())
        extra: dict[str, torch.Tensor] = {}
        if obj.uses_forget_data:
            out = self._forget_outputs(self.detector, batched_inputs["forget"], self.jitter_copies)
            kwargs["forget_loss"] = (
                out.forget_loss
                if out.forget_loss is not None
                else object_nll(out.logits, self.forget_targets(out.labels), out.sigmoid)
            )
            kwargs["forget_labels"] = out.labels
            if obj.background_weight > 0:
                kwargs["background_loss"] = self.background_loss(out)
            if self.prototypes is not None:
                kwargs.update(prototypes=self.prototypes, forget_features=out.features)
            extra = {k: obj.forget_weight * v for k, v in out.extra_losses.items()}
        terms = obj(**kwargs)
        for name, value in extra.items():
            if not torch.isfinite(value).all():
                raise FloatingPointError(f"forgetting loss term {name!r} is {value.item()}")
            terms[name] = value
        self.step += 1
        if "loss_retain" in terms:
            # Log the detector's own terms one by one; their weighted sum is loss_retain.
            terms.pop("loss_retain")
            for k, v in retain_losses.items():
                terms[f"retain_{k}"] = obj.retain_weight * v
        return terms
