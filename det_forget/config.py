"""``add_forget_config``: every ``FORGET.*`` key det_forget reads, with what it means.

All keys live under one node, ``cfg.FORGET``, added to a detectron2 (or plain
fvcore/yacs) config. Detection, classification and face recognition read the same keys.
"""

from __future__ import annotations

from fvcore.common.config import CfgNode as CN  # noqa: F401  (type hints)

__all__ = ["add_forget_config", "lora_config_from_cfg", "num_classes_of"]


def add_forget_config(cfg: CN) -> CN:
    """Add the ``FORGET`` node to ``cfg`` in place and return ``cfg``.

    Keys (defaults follow GS-LoRA's reference unless noted):

    * ``FORGET.METHOD``: a method of :data:`det_forget.forgetting.methods.METHODS`.
    * ``FORGET.CLASSES``: classes to forget in a single task, by name or id.
    * ``FORGET.TASKS``: explicit continual tasks, a list of class lists (overrides
      ``CLASSES``).
    * ``FORGET.TASK_SIZES`` / ``FORGET.CLASS_ORDER_SEED``: continual tasks cut from the
      class order shuffled with the seed (used when ``TASKS`` and ``CLASSES`` are empty).
    * ``FORGET.MISSING_CLASSES``: retain classes given no training data (GS-LoRA++).
    * ``FORGET.DATA_RATIO``: fraction of each class's training images used (1.0 = all).
    * ``FORGET.SHOTS``: if > 0, k images per class instead of ``DATA_RATIO``.
    * ``FORGET.DATA_SEED``: seed of the data subsampling.
    * ``FORGET.LORA.*``: RANK (8), ALPHA (1.0: scaling alpha/r = 1/8), DROPOUT,
      TARGET_MODULES (FFN layers), QKV_MODULES (fused qkv layers, used by no_retain),
      QKV_PARTS, EXCLUDE_MODULES. See :class:`det_forget.lora.LoraConfig`.
    * ``FORGET.LOSS.BOUND``: BND of ``ReLU(BND - w * CE_forget)``.
    * ``FORGET.LOSS.FORGET_WEIGHT``: beta, weight of the bounded forget term.
    * ``FORGET.LOSS.CE_WEIGHT``: w, factor on the forget CE inside the ReLU.
    * ``FORGET.LOSS.PER_CLASS``: bound each forget class separately (default) instead
      of the batch mean (reference).
    * ``FORGET.LOSS.RETAIN_WEIGHT``: weight of the retain loss.
    * ``FORGET.SPARSITY.ALPHA``: alpha_s of the group lasso; ``WARMUP_ITERS`` steps with
      alpha_s = 0 first; ``GROUPS``: "block" | "module" | "matrix"; ``BLOCK_REGEX``:
      extracts a block name from a layer name; ``ZERO_REL_THRESHOLD``: a group is zero
      when its norm <= this x the largest group norm.
    * ``FORGET.PROTOTYPE.*``: ENABLED (set by gs_lora_pp), BOUND (BND_pro, 18),
      FORGET_WEIGHT (w_f), RETAIN_WEIGHT (w_r).
    * ``FORGET.NO_RETAIN.L1_WEIGHT``: lambda on ``||B||_1`` (0.001); ``EPS`` guards 1/CE.
    * ``FORGET.BASELINE.L1_WEIGHT``: L1 on the weight change (neg_grad_l1, bounded_l1);
      ``L2_WEIGHT``; ``EWC_WEIGHT``; ``EWC_SAMPLES``.
    * ``FORGET.EARLY_STOP.PERIOD``: evaluate on held-out data every N steps and keep the
      best mean(score_r, 100 - score_f) (0 disables); ``PATIENCE``.
    * ``FORGET.MAX_ITER``: forgetting iterations per task (detection: per task, so a
      continual run has ``len(tasks) * MAX_ITER`` iterations; ``SOLVER.MAX_ITER`` is set
      from it).
    * ``FORGET.SAVE_MERGED``: also write a merged checkpoint at the end.
    * ``FORGET.DETECTOR``: the meta-architecture ``ForgettingDetector`` wraps
      ("GeneralizedRCNN"; the DETR family later).
    * ``FORGET.JITTER_COPIES``: detection: jittered copies of each forget box classified
      per step besides the box itself (proposal-like boxes).
    * ``FORGET.OPTIMIZER``: "AdamW" (default) or "SGD" (detectron2's), used by
      det_forget's trainers for forgetting and for training base detectors.
    * ``FORGET.EVAL_BEFORE``: detection: evaluate the model before forgetting (for Drop
      and H-Mean). ``FORGET.BEFORE_REPORT``: instead, reuse the per-class AP of an earlier
      ``forget_report.json`` (an evaluator report) of the same model.

    When ``cfg`` has a ``MODEL`` node (a detectron2 config), ``MODEL.VIT.*`` is added too:
    the shape of :func:`det_forget.modeling.backbone.build_vit_sfp_backbone`'s ViT and
    pyramid: ``IMG_SIZE``, ``PATCH_SIZE``, ``EMBED_DIM``, ``DEPTH``, ``NUM_HEADS``,
    ``MLP_RATIO``, ``DROP_PATH_RATE``, ``WINDOW_SIZE`` + ``WINDOW_BLOCK_INDEXES`` (windowed
    attention, ViTDet), ``USE_REL_POS``, ``PRETRAIN_IMG_SIZE`` (position-embedding size of
    the checkpoint), ``OUT_CHANNELS`` and ``SCALE_FACTORS`` of the pyramid (an output at
    stride ``PATCH_SIZE / factor`` per factor), ``TOP_BLOCK`` (extra max-pooled level),
    ``NORM`` of the pyramid convs ("LN" as in ViTDet), ``SQUARE_PAD``. Defaults: the
    CPU-tiny model of the embedded demo.

    ``MODEL.DETR.*`` (the ``DETR`` and ``DeformableDETR`` meta-architectures) is added
    too, with the official COCO models' values as defaults: ``NUM_CLASSES`` (80),
    ``NUM_OBJECT_QUERIES`` (100; 300 for Deformable DETR), ``IN_FEATURES`` (backbone
    outputs, finest first), ``HIDDEN_DIM``, ``NHEADS``, ``ENC_LAYERS``, ``DEC_LAYERS``,
    ``DIM_FEEDFORWARD`` (2048; 1024 for Deformable DETR), ``DROPOUT``,
    ``NUM_FEATURE_LEVELS`` / ``ENC_N_POINTS`` / ``DEC_N_POINTS`` (Deformable DETR),
    ``DEEP_SUPERVISION`` (auxiliary decoder-layer losses), matching costs ``COST_CLASS``
    / ``COST_BBOX`` / ``COST_GIOU``, loss weights ``CLASS_WEIGHT`` / ``L1_WEIGHT`` /
    ``GIOU_WEIGHT``, ``NO_OBJECT_WEIGHT`` (softmax DETR's no-object class weight),
    ``FOCAL_ALPHA`` (Deformable DETR's sigmoid focal loss), ``FREEZE_BACKBONE``; and
    ``SOLVER.BACKBONE_MULTIPLIER``: learning-rate factor of parameters under
    ``backbone.`` (DETR trains its backbone at 0.1x).

    Returns:
        ``cfg``.
    """
    # Children must be of the config's own class (detectron2's CfgNode subclasses fvcore's)
    # or merging a yaml file into them fails yacs' type check.
    CN = type(cfg)  # noqa: N806
    cfg.FORGET = CN()
    f = cfg.FORGET
    f.METHOD = "gs_lora"
    f.CLASSES = []
    f.TASKS = []
    f.TASK_SIZES = []
    f.CLASS_ORDER_SEED = 123
    f.MISSING_CLASSES = []
    f.DATA_RATIO = 1.0
    f.SHOTS = 0
    f.DATA_SEED = 0
    f.MAX_ITER = 300
    f.SAVE_MERGED = True
    f.DETECTOR = "GeneralizedRCNN"
    f.JITTER_COPIES = 4
    f.EVAL_BEFORE = True
    f.BEFORE_REPORT = ""
    f.OPTIMIZER = "AdamW"

    f.LORA = CN()
    f.LORA.RANK = 8
    f.LORA.ALPHA = 1.0
    f.LORA.DROPOUT = 0.0
    f.LORA.TARGET_MODULES = ["mlp.fc1", "mlp.fc2"]
    f.LORA.QKV_MODULES = ["attn.qkv"]
    f.LORA.QKV_PARTS = ["q", "k", "v"]
    f.LORA.EXCLUDE_MODULES = []

    f.LOSS = CN()
    f.LOSS.BOUND = 15.0
    f.LOSS.FORGET_WEIGHT = 0.2
    f.LOSS.CE_WEIGHT = 1.0
    f.LOSS.PER_CLASS = True
    f.LOSS.RETAIN_WEIGHT = 1.0

    f.SPARSITY = CN()
    f.SPARSITY.ALPHA = 1e-4
    f.SPARSITY.WARMUP_ITERS = 0
    f.SPARSITY.GROUPS = "block"
    f.SPARSITY.BLOCK_REGEX = r"^(.*?\.\d+)(?:\.|$)"
    f.SPARSITY.ZERO_REL_THRESHOLD = 1e-3

    f.PROTOTYPE = CN()
    f.PROTOTYPE.ENABLED = False
    f.PROTOTYPE.BOUND = 18.0
    f.PROTOTYPE.FORGET_WEIGHT = 0.01
    f.PROTOTYPE.RETAIN_WEIGHT = 0.0

    f.NO_RETAIN = CN()
    f.NO_RETAIN.L1_WEIGHT = 1e-3
    f.NO_RETAIN.EPS = 1e-3

    f.BASELINE = CN()
    f.BASELINE.L1_WEIGHT = 1e-4
    f.BASELINE.L2_WEIGHT = 1.0
    f.BASELINE.EWC_WEIGHT = 100.0
    f.BASELINE.EWC_SAMPLES = 256

    f.EARLY_STOP = CN()
    f.EARLY_STOP.PERIOD = 0
    f.EARLY_STOP.PATIENCE = 5

    if "MODEL" in cfg:
        _add_vit_config(cfg)
        _add_detr_config(cfg)
    return cfg


def _add_detr_config(cfg: CN) -> None:
    cfg.MODEL.DETR = type(cfg)()
    d = cfg.MODEL.DETR
    d.NUM_CLASSES = 80
    d.NUM_OBJECT_QUERIES = 100
    d.IN_FEATURES = ["res5"]
    d.HIDDEN_DIM = 256
    d.NHEADS = 8
    d.ENC_LAYERS = 6
    d.DEC_LAYERS = 6
    d.DIM_FEEDFORWARD = 2048
    d.DROPOUT = 0.1
    d.NUM_FEATURE_LEVELS = 4
    d.ENC_N_POINTS = 4
    d.DEC_N_POINTS = 4
    d.DEEP_SUPERVISION = True
    d.COST_CLASS = 1.0
    d.COST_BBOX = 5.0
    d.COST_GIOU = 2.0
    d.CLASS_WEIGHT = 1.0
    d.L1_WEIGHT = 5.0
    d.GIOU_WEIGHT = 2.0
    d.NO_OBJECT_WEIGHT = 0.1
    d.FOCAL_ALPHA = 0.25
    d.FREEZE_BACKBONE = False
    if "SOLVER" in cfg:
        cfg.SOLVER.BACKBONE_MULTIPLIER = 1.0


def num_classes_of(cfg: CN) -> int:
    """Foreground classes of the detector a config builds.

    ``MODEL.DETR.NUM_CLASSES`` for the DETR family (also when wrapped by
    ``ForgettingDetector``), ``MODEL.ROI_HEADS.NUM_CLASSES`` otherwise.
    """
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch == "ForgettingDetector" and "FORGET" in cfg:
        arch = cfg.FORGET.DETECTOR
    if arch in ("DETR", "DeformableDETR"):
        return int(cfg.MODEL.DETR.NUM_CLASSES)
    return int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)


def _add_vit_config(cfg: CN) -> None:
    cfg.MODEL.VIT = type(cfg)()
    v = cfg.MODEL.VIT
    v.IMG_SIZE = 192
    v.PATCH_SIZE = 16
    v.EMBED_DIM = 192
    v.DEPTH = 6
    v.NUM_HEADS = 3
    v.MLP_RATIO = 4.0
    v.DROP_PATH_RATE = 0.0
    v.WINDOW_SIZE = 0
    v.WINDOW_BLOCK_INDEXES = []
    v.USE_REL_POS = False
    v.PRETRAIN_IMG_SIZE = 192
    v.OUT_CHANNELS = 128
    v.SCALE_FACTORS = [2.0, 1.0, 0.5]
    v.TOP_BLOCK = True
    v.NORM = "LN"
    v.SQUARE_PAD = 0


def lora_config_from_cfg(cfg: CN, metadata: dict | None = None):
    """The :class:`~det_forget.lora.LoraConfig` of ``cfg.FORGET.LORA`` for ``FORGET.METHOD``.

    Where the adapters go is the method's (registry ``adapters``): FFN methods wrap
    ``TARGET_MODULES``, q/k/v methods (``no_retain``) wrap the fused ``QKV_MODULES``
    (``QKV_PARTS`` of them). Full-weight methods have no adapters.

    Raises:
        ValueError: the method trains no adapters, or its layer list is empty.
    """
    from .forgetting.methods import get_method
    from .lora import LoraConfig

    method = get_method(cfg.FORGET.METHOD)
    lc = cfg.FORGET.LORA
    if method.adapters == "none":
        raise ValueError(f"FORGET.METHOD {method.name!r} trains the full weights, no adapters")
    key = "TARGET_MODULES" if method.adapters == "ffn" else "QKV_MODULES"
    if len(lc[key]) == 0:
        raise ValueError(
            f"FORGET.METHOD {method.name!r} puts its adapters on FORGET.LORA.{key}, which is empty"
        )
    return LoraConfig(
        rank=lc.RANK,
        alpha=lc.ALPHA,
        dropout=lc.DROPOUT,
        target_modules=list(lc.TARGET_MODULES) if method.adapters == "ffn" else [],
        qkv_modules=list(lc.QKV_MODULES) if method.adapters == "qkv" else [],
        qkv_parts=tuple(lc.QKV_PARTS),
        exclude_modules=list(lc.EXCLUDE_MODULES),
        metadata=dict(metadata or {}),
    )
