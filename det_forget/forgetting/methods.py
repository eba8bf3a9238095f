"""The method registry: one entry per forgetting method, read by everything that needs one.

Each :class:`ForgetMethod` declares what the method *is*: the loss terms it adds up, where
its LoRA adapters go (FFN layers, the fused q/k/v projections, or none: full weights),
whether it re-initialises the model first, which data it trains on, which task types
can run it, and the paper or baseline it reproduces. The objective, the trainers, the
config check, the app's method menu and the benchmarks all read this table; nothing
compares method strings on its own.

Task types (:data:`TASK_TYPES`):

* ``rcnn``: detectron2's ``GeneralizedRCNN`` (Faster R-CNN on det_forget's ViT) wrapped by
  ``ForgettingDetector``;
* ``detr``: det_forget's ``DETR`` / ``DeformableDETR`` wrapped by ``ForgettingDetector``;
* ``classification``: an image classifier (``CLS.MODEL.NAME`` other than the face model);
* ``face``: the CosFace face recogniser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ConfigValueError, UnknownNameError

__all__ = [
    "TASK_TYPES",
    "ADAPTER_PLACES",
    "LORA_INITS",
    "RENAMED",
    "ForgetMethod",
    "METHODS",
    "MethodNotSupportedError",
    "get_method",
    "methods_for",
    "check_method",
    "task_type_of",
]

#: Task types a method may support (see the module docstring).
TASK_TYPES = ("rcnn", "detr", "classification", "face")
#: Where a method's adapters go: FFN layers (``FORGET.LORA.TARGET_MODULES``), the fused
#: q/k/v projections (``FORGET.LORA.QKV_MODULES``), or none (the full weights train).
ADAPTER_PLACES = ("ffn", "qkv", "none")
#: How a method's A matrices start (B always starts at zero).
LORA_INITS = ("kaiming", "gaussian")

_ALL = frozenset(TASK_TYPES)
_DETECTION = frozenset(("rcnn", "detr"))


class MethodNotSupportedError(ConfigValueError):
    """A method asked of a task type that cannot run it; the message lists the valid ones."""


@dataclass(frozen=True)
class ForgetMethod:
    """What one forgetting method is.

    Attributes:
        name: the ``FORGET.METHOD`` value.
        terms: the loss terms it adds up (names as :class:`ForgettingObjective` returns
            them).
        adapters: one of :data:`ADAPTER_PLACES`.
        reinit: the model is re-initialised before training (retraining from scratch).
        anchor: ``"weights"`` (penalties on the change from the weights at the task start),
            ``"fisher"`` (the same, weighted by a diagonal Fisher estimate) or ``""``.
        task_types: the task types that run it.
        refused: ``{task type: why it cannot run there}`` for the others.
        description: one line for menus and ``--help``.
        reference: the paper or baseline it reproduces.
        lora_alpha: the adapter scaling numerator its paper states (the update is
            ``(alpha / r) B A``): ``1.0`` for GS-LoRA (loralib's alpha 1, scaling 1/8 at
            rank 8), ``None`` for ``alpha = r`` (scaling 1, Poppi et al.'s ``W0 + BA``).
            ``FORGET.LORA.ALPHA`` overrides it when > 0.
        lora_init: how its paper initialises A: ``"kaiming"`` (kaiming-uniform,
            ``a = sqrt(5)``, loralib / GS-LoRA) or ``"gaussian"`` (normal, std ``1 / r``
            as PEFT's "gaussian"; Poppi et al. say Gaussian without a std). B always
            starts at 0. ``FORGET.LORA.INIT`` overrides it when not empty.
    """

    name: str
    terms: tuple[str, ...]
    adapters: str
    description: str
    reference: str
    reinit: bool = False
    anchor: str = ""
    task_types: frozenset[str] = _ALL
    refused: Mapping[str, str] = field(default_factory=dict)
    lora_alpha: float | None = 1.0
    lora_init: str = "kaiming"

    def __post_init__(self) -> None:
        if self.adapters not in ADAPTER_PLACES:
            raise ValueError(f"{self.name}: adapters must be one of {ADAPTER_PLACES}")
        if self.lora_init not in LORA_INITS:
            raise ValueError(f"{self.name}: lora_init must be one of {LORA_INITS}")
        unknown = set(self.task_types) - _ALL
        if unknown:
            raise ValueError(f"{self.name}: unknown task types {sorted(unknown)}")
        missing = (_ALL - set(self.task_types)) - set(self.refused)
        if missing:
            raise ValueError(f"{self.name}: say why task types {sorted(missing)} are refused")

    @property
    def uses_lora(self) -> bool:
        """Whether it trains LoRA adapters (else the full weights)."""
        return self.adapters != "none"

    @property
    def uses_forget_data(self) -> bool:
        """Whether a step needs a batch of forget-class samples."""
        return any(t.startswith("loss_forget") for t in self.terms)

    @property
    def uses_retain_data(self) -> bool:
        """Whether a step needs a batch of retained-class samples."""
        return "loss_retain" in self.terms

    @property
    def data(self) -> str:
        """``"forget"``, ``"retain"`` or ``"both"``."""
        if self.uses_forget_data and self.uses_retain_data:
            return "both"
        return "forget" if self.uses_forget_data else "retain"

    @property
    def uses_prototypes(self) -> bool:
        """GS-LoRA++'s prototype term."""
        return "loss_prototype" in self.terms

    @property
    def uses_group_lasso(self) -> bool:
        """GS-LoRA's group sparsity over adapter groups."""
        return "loss_group_lasso" in self.terms

    def supports(self, task_type: str) -> bool:
        """Whether ``task_type`` runs this method."""
        return task_type in self.task_types


_RETRAIN_DETECTION = (
    "retraining a detector from scratch needs its pre-training recipe (backbone "
    "initialisation, a schedule of thousands of iterations), which FORGET.MAX_ITER is "
    "not; train a base detector on the retained classes with tools/train_net.py instead"
)
_QKV_DETR = (
    "DETR's attention is torch's nn.MultiheadAttention, which has no fused q/k/v Linear "
    "layer for a LoRA adapter; use it on a ViT (R-CNN, classification, face)"
)

#: Every method, by ``FORGET.METHOD`` name, in menu order.
METHODS: dict[str, ForgetMethod] = {
    m.name: m
    for m in (
        ForgetMethod(
            "gs_lora",
            ("loss_retain", "loss_forget_bounded", "loss_group_lasso"),
            "ffn",
            "LoRA on the FFNs, group-lasso per block, bounded forget loss + retain loss",
            "GS-LoRA (Zhao et al., CVPR 2024): its losses, adapter place, scaling 1/8 and "
            "kaiming A; det_forget bounds per class by default (FORGET.LOSS.PER_CLASS), "
            "and per object where a config sets FORGET.LOSS.PER_OBJECT; "
            "FORGET.LOSS.BACKGROUND_WEIGHT adds det_forget's background term, not the paper's",
        ),
        ForgetMethod(
            "gs_lora_pp",
            ("loss_retain", "loss_forget_bounded", "loss_group_lasso", "loss_prototype"),
            "ffn",
            "GS-LoRA plus prototype regularisation (few-shot and missing-class settings)",
            "GS-LoRA++ (Zhao et al., 2024)",
        ),
        ForgetMethod(
            "no_retain",
            ("loss_forget_reciprocal", "loss_lora_b_l1"),
            "qkv",
            "LoRA on q/k/v, 1/CE on the forget classes + L1 on B; no retain data",
            "Low-rank unlearning without retain data (Poppi et al., ICPR 2024, Eq. 8; "
            "Table 1 'bounded loss w/ low-rank'): scaling 1 (W0 + BA), Gaussian A",
            task_types=frozenset(("rcnn", "classification", "face")),
            refused={"detr": _QKV_DETR},
            lora_alpha=None,
            lora_init="gaussian",
        ),
        ForgetMethod(
            "neg_grad_lora",
            ("loss_forget_negative", "loss_lora_b_l1"),
            "qkv",
            "LoRA on q/k/v, -CE on the forget classes + L1 on B; no retain data",
            "Poppi et al.'s Table 1 ablation 'negative gradient w/ low-rank' (Eq. 6): "
            "no_retain's adapters and L1 on B with the unbounded -CE",
            task_types=frozenset(("rcnn", "classification", "face")),
            refused={"detr": _QKV_DETR},
            lora_alpha=None,
            lora_init="gaussian",
        ),
        ForgetMethod(
            "reciprocal_l1",
            ("loss_forget_reciprocal", "loss_weight_l1"),
            "none",
            "full weights: 1/CE on the forget classes + L1 on the weight change; no retain data",
            "Poppi et al.'s Table 1 ablation 'bounded loss w/ L1 regularization': "
            "no_retain's loss on the full weights, L1 on W - W0 instead of low rank",
            anchor="weights",
        ),
        ForgetMethod(
            "retrain",
            ("loss_retain",),
            "none",
            "re-initialise the model and train on the retained classes only",
            "baseline: retraining without the forgotten classes (the gold standard)",
            reinit=True,
            task_types=frozenset(("classification", "face")),
            refused={"rcnn": _RETRAIN_DETECTION, "detr": _RETRAIN_DETECTION},
        ),
        ForgetMethod(
            "finetune",
            ("loss_retain",),
            "none",
            "full fine-tuning on the retained classes only",
            "baseline: fine-tuning (catastrophic forgetting)",
        ),
        ForgetMethod(
            "neg_grad",
            ("loss_retain", "loss_forget_negative"),
            "none",
            "full weights: -CE on the forget classes + CE on the retained ones",
            "baseline: negative gradient with retain data (Poppi et al.'s Table 1 row)",
        ),
        ForgetMethod(
            "neg_grad_l1",
            ("loss_forget_negative", "loss_weight_l1"),
            "none",
            "full weights: -CE on the forget classes + L1 on the weight change; no retain data",
            "Poppi et al.'s Table 1 ablation 'negative gradient w/ L1 regularization' "
            "(no retain data)",
            anchor="weights",
        ),
        ForgetMethod(
            "random_labels",
            ("loss_retain", "loss_forget_random_labels"),
            "none",
            "full weights: CE to random retained labels on forget samples + retain loss",
            "baseline: random labels",
        ),
        ForgetMethod(
            "bounded_retain_l1",
            ("loss_retain", "loss_forget_bounded", "loss_weight_l1"),
            "none",
            "full weights: ReLU(BND - CE) forget loss + retain loss + L1 on the weight change",
            "det_forget's ablation of GS-LoRA (with retain data): its losses on the full "
            "weights, L1 on W - W0 instead of LoRA + group sparsity. Not Poppi et al.'s "
            "retain-free 'bounded loss w/ L1' (that is reciprocal_l1)",
            anchor="weights",
        ),
        ForgetMethod(
            "bounded_ft",
            ("loss_retain", "loss_forget_bounded"),
            "none",
            "full weights: GS-LoRA's bounded forget loss + retain loss",
            "baseline: full fine-tuning with GS-LoRA's loss (like-for-like cost comparison)",
        ),
        ForgetMethod(
            "l2",
            ("loss_retain", "loss_forget_bounded", "loss_weight_l2"),
            "none",
            "full weights: bounded forget + retain + L2 to the weights before the task",
            "continual baseline: L2 regularisation",
            anchor="weights",
        ),
        ForgetMethod(
            "ewc",
            ("loss_retain", "loss_forget_bounded", "loss_weight_ewc"),
            "none",
            "full weights: bounded forget + retain + EWC penalty (diagonal Fisher)",
            "continual baseline: EWC (Kirkpatrick et al., 2017)",
            anchor="fisher",
        ),
    )
}


#: Former method names and what they are called now (named in the unknown-method error).
RENAMED = {
    "bounded_l1": "bounded_retain_l1 (it uses retain data; Poppi et al.'s retain-free "
    "'bounded loss w/ L1' is reciprocal_l1)",
}


def get_method(name: str) -> ForgetMethod:
    """The registry entry of ``name``.

    Raises:
        UnknownNameError: ``name`` is not a method (the message lists the methods).
    """
    method = METHODS.get(name)
    if method is None and name in RENAMED:
        raise UnknownNameError(f"FORGET.METHOD {name!r} was renamed: use {RENAMED[name]}")
    if method is None:
        raise UnknownNameError(f"unknown FORGET.METHOD {name!r}; valid methods: {list(METHODS)}")
    return method


def methods_for(task_type: str) -> list[ForgetMethod]:
    """The methods ``task_type`` runs, in menu order."""
    if task_type not in TASK_TYPES:
        raise UnknownNameError(f"unknown task type {task_type!r}; valid: {TASK_TYPES}")
    return [m for m in METHODS.values() if m.supports(task_type)]


def check_method(name: str, task_type: str) -> ForgetMethod:
    """The entry of ``name``, refusing a task type that cannot run it.

    Raises:
        ValueError: unknown method.
        MethodNotSupportedError: the task type cannot run it (says why, and lists the
            methods it runs).
    """
    method = get_method(name)
    if not method.supports(task_type):
        valid = [m.name for m in methods_for(task_type)]
        raise MethodNotSupportedError(
            f"FORGET.METHOD {name!r} is not available for {task_type} models: "
            f"{method.refused[task_type]}. Methods for {task_type}: {valid}"
        )
    return method


def task_type_of(cfg) -> str:
    """The task type a config describes (one of :data:`TASK_TYPES`).

    A config with a ``CLS`` node is classification (``face`` for ``FaceRecognizer``);
    otherwise a detector, ``detr`` when the wrapped detector (``FORGET.DETECTOR`` under
    ``ForgettingDetector``, else the meta-architecture) is ``DETR`` or ``DeformableDETR``.
    """
    if "CLS" in cfg:
        return "face" if cfg.CLS.MODEL.NAME == "FaceRecognizer" else "classification"
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch == "ForgettingDetector":
        arch = cfg.FORGET.DETECTOR
    return "detr" if arch in ("DETR", "DeformableDETR") else "rcnn"
