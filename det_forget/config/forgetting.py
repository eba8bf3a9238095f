"""The ``FORGET`` node: what to forget, with which method, data, losses and schedule.

Every task type (see :data:`det_forget.forgetting.methods.TASK_TYPES`: ``rcnn``, ``detr``,
``classification``, ``face``) reads every key here unless its comment says otherwise;
:data:`READ_BY` lists the exceptions, and :func:`det_forget.config.check_ignored_keys`
refuses a config that moves one of them from its default where it has no effect.
Defaults follow GS-LoRA's reference unless a comment says otherwise.
"""

from __future__ import annotations

from fvcore.common.config import CfgNode as CN

__all__ = ["add_forget_node", "READ_BY"]

_DETECTION = frozenset(("rcnn", "detr"))
_CLASSIFICATION = frozenset(("classification", "face"))
# Task types that run a method with adapters on the fused q/k/v projections (no_retain);
# DETR's attention has no fused q/k/v layer (see the registry's refusal).
_QKV = frozenset(("rcnn", "classification", "face"))

#: Keys (a leaf, or a node for all of its leaves) that only some task types read, with
#: those task types. A key absent from this table is read by every task type.
READ_BY: dict[str, frozenset[str]] = {
    "FORGET.DETECTOR": _DETECTION,
    "FORGET.JITTER_COPIES": frozenset(("rcnn",)),
    "FORGET.EVAL_BEFORE": _DETECTION,
    "FORGET.BEFORE_REPORT": _DETECTION,
    "FORGET.EARLY_STOP.HELDOUT_IMAGES": _DETECTION,
    "FORGET.EARLY_STOP.SELECT": _CLASSIFICATION,
    "FORGET.FATE_SCORE_THRESH": _DETECTION,
    "FORGET.FATE_IOU_THRESH": _DETECTION,
    "FORGET.LOSS.FORGET_WEIGHTS": _DETECTION,
    "FORGET.LOSS.DETR_FORGET": frozenset(("detr",)),
    "FORGET.LOSS.BACKGROUND_WEIGHT": frozenset(("rcnn",)),
    "FORGET.LORA.QKV_MODULES": _QKV,
    "FORGET.LORA.QKV_PARTS": _QKV,
    "FORGET.SPARSITY.ZERO_REL_THRESHOLD": _CLASSIFICATION,
    "FORGET.PROTOTYPE.RETAIN_WEIGHT": _CLASSIFICATION,
    "FORGET.NO_RETAIN.L1_WEIGHT": _QKV,
    "FORGET.DEEP": _CLASSIFICATION,
}


def add_forget_node(cfg: CN) -> None:
    """Add ``cfg.FORGET`` with its defaults (in place)."""
    # Children must be of the config's own class (detectron2's CfgNode subclasses fvcore's)
    # or merging a yaml file into them fails yacs' type check.
    CN = type(cfg)  # noqa: N806

    cfg.FORGET = CN()
    # ------------------------------------------------------------------------------------ #
    # What to forget
    # ------------------------------------------------------------------------------------ #
    # The forgetting method: a name in det_forget.forgetting.methods.METHODS ("gs_lora",
    # "gs_lora_pp", "no_retain" or a baseline). A method the task type cannot run is
    # refused with the reason and the list of those it can.
    cfg.FORGET.METHOD = "gs_lora"
    # Classes to forget in one task, by name or contiguous id, e.g. ["cat", "dog"].
    cfg.FORGET.CLASSES = []
    # Continual forgetting: a list of class lists, one task each, run in order (the
    # adapter of each task is merged before the next starts). Wins over CLASSES.
    cfg.FORGET.TASKS = []
    # Continual tasks of these sizes, cut from the class order shuffled with
    # CLASS_ORDER_SEED, e.g. [10, 10, 10]. Used only when TASKS and CLASSES are empty.
    cfg.FORGET.TASK_SIZES = []
    # Seed of the class-order shuffle that TASK_SIZES cuts (Python's random.Random(seed),
    # over the contiguous ids). GS-LoRA's COCO order is a NumPy shuffle of the COCO ids
    # instead: det_forget.data.coco_order.reference_coco_tasks gives it, by name.
    cfg.FORGET.CLASS_ORDER_SEED = 123
    # Retained classes given no training data (GS-LoRA++'s missing-class setting; reported
    # as their own group). Names or ids.
    cfg.FORGET.MISSING_CLASSES = []

    # ------------------------------------------------------------------------------------ #
    # Data and schedule
    # ------------------------------------------------------------------------------------ #
    # Fraction of each class's training images used, in (0, 1] (1.0 = all of them).
    cfg.FORGET.DATA_RATIO = 1.0
    # If > 0, this many images per class (few-shot) instead of DATA_RATIO.
    cfg.FORGET.SHOTS = 0
    # Seed of the DATA_RATIO / SHOTS subsampling.
    cfg.FORGET.DATA_SEED = 0
    # Training steps per task: the ceiling. Every task type stops a task earlier when
    # the stopping rule (EARLY_STOP below) says its classes are forgotten.
    cfg.FORGET.MAX_ITER = 300
    # Also write the model with every adapter merged into its weights at the end
    # (a plain checkpoint of the original architecture).
    cfg.FORGET.SAVE_MERGED = True
    # A new run into an OUTPUT_DIR that holds a finished run (history.json with finished
    # tasks, an adapter or a merged model) is refused before anything is written, since
    # the adapters are the record of what was forgotten. True: remove that run's outputs
    # and start anew (detection can also continue it with --resume).
    cfg.FORGET.OVERWRITE = False
    # The optimizer: "AdamW", "Adam" or "SGD" (case-insensitive), over the trainable
    # parameters (adapters, or the full weights for full-weight methods). Its learning
    # rate and weight decay are SOLVER.BASE_LR / SOLVER.WEIGHT_DECAY in detection
    # (SGD: momentum SOLVER.MOMENTUM) and CLS.SOLVER.BASE_LR / CLS.SOLVER.WEIGHT_DECAY in
    # classification (SGD: momentum 0.9). det_forget's detection trainer also uses it to
    # train base detectors. See det_forget.config.optimizer.
    cfg.FORGET.OPTIMIZER = "AdamW"
    # Learning-rate schedule of each task (restarted at every task): "cosine" (after the
    # warm-up, a cosine decay to MIN_LR_FACTOR x the base rate at the task's end) or
    # "constant". Warm-up: SOLVER.WARMUP_ITERS / WARMUP_FACTOR in detection (at most half
    # a task), none in classification. See det_forget.forgetting.schedule.
    cfg.FORGET.LR_SCHEDULE = "cosine"
    # Where the cosine schedule ends, as a fraction of the base learning rate.
    cfg.FORGET.MIN_LR_FACTOR = 0.01

    # ------------------------------------------------------------------------------------ #
    # Detection only
    # ------------------------------------------------------------------------------------ #
    # The detector ForgettingDetector wraps (its META_ARCHITECTURE): "GeneralizedRCNN",
    # "DETR" or "DeformableDETR". Also decides the task type (rcnn or detr).
    # Read by: rcnn, detr.
    cfg.FORGET.DETECTOR = "GeneralizedRCNN"
    # Jittered copies of each forget box classified per step besides the box itself
    # (proposal-like boxes for the box head). DETR classifies its matched queries instead.
    # Read by: rcnn.
    cfg.FORGET.JITTER_COPIES = 4
    # Evaluate the model before forgetting (the baseline of Drop and H-Mean).
    # Read by: rcnn, detr (classification always evaluates before).
    cfg.FORGET.EVAL_BEFORE = True
    # Instead of evaluating before, read the per-class AP of an earlier evaluation of the
    # same model on the same val set: the evaluator's report (inference/task_XX/
    # forget_report.json of a run); "" evaluates (or not, per EVAL_BEFORE).
    # Read by: rcnn, detr.
    cfg.FORGET.BEFORE_REPORT = ""
    # Take the scores before forgetting from the model card next to the weights
    # (<weights stem>.json, "evaluations") when it holds an evaluation of the same weights
    # (sha256) on the same evaluation set (content sha256) with the same test-time settings,
    # instead of evaluating again (det_forget/evaluation/before.py; detection: with
    # EVAL_BEFORE and no BEFORE_REPORT, per-class AP on DATASETS.TEST[0]; classification
    # and face: per-class accuracy on the test split). False: always evaluate.
    cfg.FORGET.BEFORE_FROM_CARD = True
    # Object fate (det_forget/evaluation/object_fate.py): every ground-truth object of a
    # forgotten class is "detected" (a detection of its class), "relabelled" (of another
    # class) or "gone", counting detections with score >= FATE_SCORE_THRESH and IoU >=
    # FATE_IOU_THRESH. Reported by the evaluator (report "object_fate", results
    # forget/detected_pct, forget/relabelled_pct, forget/gone_pct).
    # Read by: rcnn, detr.
    cfg.FORGET.FATE_SCORE_THRESH = 0.5
    cfg.FORGET.FATE_IOU_THRESH = 0.5

    # ------------------------------------------------------------------------------------ #
    # LoRA adapters (methods whose registry entry has adapters "ffn" or "qkv")
    # ------------------------------------------------------------------------------------ #
    cfg.FORGET.LORA = CN()
    # Rank r of every adapter (a positive integer).
    cfg.FORGET.LORA.RANK = 8
    # Scaling numerator: the update is (ALPHA / RANK) * B @ A. 0 (default): the method's
    # own (registry lora_alpha): 1 for gs_lora / gs_lora_pp (GS-LoRA's loralib alpha 1,
    # scaling 1/8 at rank 8), RANK for no_retain / neg_grad_lora (Poppi et al.'s W0 + BA,
    # scaling 1). A value > 0 overrides it (the shipped detection configs use ALPHA = RANK).
    cfg.FORGET.LORA.ALPHA = 0.0
    # How A starts (B starts at 0): "kaiming" (kaiming-uniform, GS-LoRA / loralib),
    # "gaussian" (normal, std 1 / RANK; Poppi et al.'s Gaussian A) or "" (default: the
    # method's own, registry lora_init: gaussian for no_retain / neg_grad_lora).
    cfg.FORGET.LORA.INIT = ""
    # Dropout on the adapter input during training, in [0, 1).
    cfg.FORGET.LORA.DROPOUT = 0.0
    # Layers that get one adapter each for FFN methods (gs_lora, gs_lora_pp): suffixes of
    # module names on whole dotted components ("mlp.fc1" matches "blocks.3.mlp.fc1"), or
    # one string "re:<regex>" matching whole names. DETR: ["linear1", "linear2"].
    cfg.FORGET.LORA.TARGET_MODULES = ["mlp.fc1", "mlp.fc2"]
    # Fused q|k|v Linear layers (output 3 * dim) for q/k/v methods (no_retain), same
    # patterns. Read by: rcnn, classification, face (no q/k/v method runs on DETR).
    cfg.FORGET.LORA.QKV_MODULES = ["attn.qkv"]
    # Which slices of a fused q|k|v layer get an adapter: a non-empty subset of
    # ["q", "k", "v"]. Read by: rcnn, classification, face.
    cfg.FORGET.LORA.QKV_PARTS = ["q", "k", "v"]
    # Patterns removed from the matches of TARGET_MODULES / QKV_MODULES.
    cfg.FORGET.LORA.EXCLUDE_MODULES = []

    # ------------------------------------------------------------------------------------ #
    # Forget and retain losses
    # ------------------------------------------------------------------------------------ #
    cfg.FORGET.LOSS = CN()
    # BND of the bounded forget loss ReLU(BND - CE_WEIGHT * CE_forget), in nats: forgetting
    # stops pushing once the forget cross-entropy passes it.
    cfg.FORGET.LOSS.BOUND = 15.0
    # beta: weight of the bounded forget term in the total loss.
    cfg.FORGET.LOSS.FORGET_WEIGHT = 0.2
    # One beta per continual task, e.g. [0.015, 0.02, 0.025] (GS-LoRA's continual COCO
    # script); when not empty it replaces FORGET_WEIGHT and needs a value for every task.
    # Read by: rcnn, detr.
    cfg.FORGET.LOSS.FORGET_WEIGHTS = []
    # w: factor on the forget cross-entropy inside the ReLU.
    cfg.FORGET.LOSS.CE_WEIGHT = 1.0
    # True bounds each forget class's mean CE separately, so a class already forgotten
    # cannot hide one that is not; False bounds the batch mean (the reference).
    cfg.FORGET.LOSS.PER_CLASS = True
    # True moves the bound inside the mean: ReLU(BND - CE_i) for every forget object (box,
    # image), then the mean (per class when PER_CLASS). Under a mean bound, objects far past
    # it hide the few the model still recognises; here each one is pushed to the bound.
    cfg.FORGET.LOSS.PER_OBJECT = False
    # DETR's forget loss: "matched" (det_forget's: -log p(class) of the queries matched to
    # forget boxes on every decoder layer, bounded per class by default, + their L1/GIoU)
    # or "reference" (GS-LoRA's released detector code: the criterion's classification
    # loss over all queries of forget images, last layer only, bounded on the batch, which
    # needs PER_CLASS False, + the matched L1/GIoU). See docs/detr.md. Read by: detr.
    cfg.FORGET.LOSS.DETR_FORGET = "matched"
    # Weight of a det_forget term that is not in GS-LoRA: the box head's cross-entropy to
    # *background* on the forget boxes (and their jittered copies), averaged like the forget
    # term (per class when PER_CLASS). It gives forget objects the target the retrained
    # reference learns for them (un-annotated, so background), where the bounded term alone
    # moves them to whichever class is closest, often a look-alike kept class. 0 (default):
    # off. Methods without forget data (finetune) ignore it, as they ignore BOUND.
    # Read by: rcnn.
    cfg.FORGET.LOSS.BACKGROUND_WEIGHT = 0.0
    # Weight of the retain loss (the detector's own losses, or CE on retained classes).
    cfg.FORGET.LOSS.RETAIN_WEIGHT = 1.0

    # ------------------------------------------------------------------------------------ #
    # Group sparsity (GS-LoRA's group lasso over adapter groups)
    # ------------------------------------------------------------------------------------ #
    cfg.FORGET.SPARSITY = CN()
    # alpha_s: weight of sum_g ||g||_2 over the adapter groups.
    cfg.FORGET.SPARSITY.ALPHA = 1e-4
    # Steps per task with alpha_s = 0 before the penalty starts.
    cfg.FORGET.SPARSITY.WARMUP_ITERS = 0
    # Group granularity: "block" (every adapter of one transformer block), "module" (one
    # adapted layer) or "matrix" (each A and B alone).
    cfg.FORGET.SPARSITY.GROUPS = "block"
    # Regex whose first group extracts the block name from a layer name ("block" groups):
    # "backbone.net.blocks.3.mlp.fc1" -> "backbone.net.blocks.3".
    cfg.FORGET.SPARSITY.BLOCK_REGEX = r"^(.*?\.\d+)(?:\.|$)"
    # A group counts as zero (in the reported zero-group ratio) when its norm is <= this
    # times the largest group norm. Read by: classification, face.
    cfg.FORGET.SPARSITY.ZERO_REL_THRESHOLD = 1e-3

    # ------------------------------------------------------------------------------------ #
    # Prototype regularisation (GS-LoRA++: methods with the loss_prototype term)
    # ------------------------------------------------------------------------------------ #
    cfg.FORGET.PROTOTYPE = CN()
    # BND_pro of w_f * ReLU(BND_pro - KL(forget features, their prototypes)): 18 in the
    # reference, 50 in its few-shot setting.
    cfg.FORGET.PROTOTYPE.BOUND = 18.0
    # w_f: weight of the forget prototype term.
    cfg.FORGET.PROTOTYPE.FORGET_WEIGHT = 0.01
    # w_r: weight of KL(retain features, their prototypes) (0 in every released reference
    # config). Read by: classification, face (detection passes no retain features).
    cfg.FORGET.PROTOTYPE.RETAIN_WEIGHT = 0.0

    # ------------------------------------------------------------------------------------ #
    # Deep forgetting (det_forget/forgetting/deep.py): a term on the pre-logit features
    # (model.features, what the audit's linear probe reads) that removes the forgotten
    # classes from them, not only from the decision; it trains the same adapters (same
    # parameter budget). Added as loss_deep to any method with forget and retain data.
    # Read by: classification, face (detection refuses it: its features are per box).
    # ------------------------------------------------------------------------------------ #
    cfg.FORGET.DEEP = CN()
    # Off by default: measured on one setting only (Fashion-MNIST, Trouser + Bag), where
    # adversarial_probe at WEIGHT 0.1 brings the audit probe from 0.970 (GS-LoRA) to 0.910
    # (retrained: 0.875) at the same Acc_r, but WEIGHT 1.0 wrecks the retained classes
    # (docs/audit.md, "Deep forgetting"; configs/classification/gs_lora_deep.yaml).
    cfg.FORGET.DEEP.ENABLED = False
    # "prototype_pull": pull each forget feature toward the nearest retained class's
    # prototype (mean feature at the task start), mean squared distance per dimension.
    # "adversarial_probe": a forget-vs-retained linear probe is fitted online on detached
    # features; the adapters make it answer 1/2 on forget features.
    cfg.FORGET.DEEP.MODE = "prototype_pull"
    # Factor on the term in the total loss (finite, >= 0).
    cfg.FORGET.DEEP.WEIGHT = 1.0
    # adversarial_probe: the online probe's Adam learning rate and steps per training step.
    cfg.FORGET.DEEP.PROBE_LR = 0.01
    cfg.FORGET.DEEP.PROBE_STEPS = 5

    # ------------------------------------------------------------------------------------ #
    # Low-rank unlearning without retain data (no_retain). Read by: rcnn, classification,
    # face (the method is refused on DETR).
    # ------------------------------------------------------------------------------------ #
    cfg.FORGET.NO_RETAIN = CN()
    # lambda: weight of ||B||_1 over every adapter (no_retain, neg_grad_lora).
    cfg.FORGET.NO_RETAIN.L1_WEIGHT = 1e-3
    # eps of the reciprocal forget loss 1 / (CE + eps): keeps it finite as CE -> 0
    # (no_retain; reciprocal_l1 reads it too).
    cfg.FORGET.NO_RETAIN.EPS = 1e-3

    # ------------------------------------------------------------------------------------ #
    # Full-weight baselines (methods with a weight anchor)
    # ------------------------------------------------------------------------------------ #
    cfg.FORGET.BASELINE = CN()
    # Weight of the L1 norm of the change from the weights at the task start (neg_grad_l1,
    # reciprocal_l1, bounded_retain_l1).
    cfg.FORGET.BASELINE.L1_WEIGHT = 1e-4
    # Weight of the squared L2 norm of that change (l2).
    cfg.FORGET.BASELINE.L2_WEIGHT = 1.0
    # Weight of the EWC penalty, the change weighted by a diagonal Fisher estimate (ewc).
    cfg.FORGET.BASELINE.EWC_WEIGHT = 100.0
    # Retained-class samples (images) the Fisher estimate averages over (ewc).
    cfg.FORGET.BASELINE.EWC_SAMPLES = 256

    # ------------------------------------------------------------------------------------ #
    # Stop when forgotten: one rule for every task type (det_forget/forgetting/stopping.py)
    # ------------------------------------------------------------------------------------ #
    # Every PERIOD steps the model is scored on a small held-out forget split: forget-class
    # images of the training data the task does not train on (detection:
    # HELDOUT_IMAGES of them; classification/face: the validation split carved from
    # train, CLS.VAL_EVAL_PER_CLASS per class); never the evaluation split. A check passes
    # when every forget class's held-out forget loss is within BOUND_TOL of LOSS.BOUND
    # (methods with the bounded loss), its held-out score (AP for detection, accuracy for
    # classification, %) is <= SCORE_TARGET, and the mean training retain loss since the
    # last check is at most (1 + RETAIN_MARGIN) x its mean over the task's first PERIOD
    # steps (methods with retain data). PATIENCE passing checks in a row end the task
    # ("stopped at iteration K: ..." in the log, train.stopping in history.json);
    # MAX_ITER stays the ceiling. The weights at the stop are kept. retrain never stops
    # early (fresh weights: its retain loss starts at chance).
    cfg.FORGET.EARLY_STOP = CN()
    # Steps between checks; 0 disables the rule (every task trains MAX_ITER steps).
    cfg.FORGET.EARLY_STOP.PERIOD = 20
    # Passing checks in a row that stop a task.
    cfg.FORGET.EARLY_STOP.PATIENCE = 2
    # The most a forget class may score on the held-out split, in % (AP or accuracy).
    cfg.FORGET.EARLY_STOP.SCORE_TARGET = 2.0
    # Nats below LOSS.BOUND that a forget class's held-out CE_WEIGHT x CE may stay.
    cfg.FORGET.EARLY_STOP.BOUND_TOL = 0.5
    # Relative rise of the retain loss over its start that still allows a stop.
    # (25%: Fashion-MNIST GS-LoRA stops at step 125 with the accuracy the former
    # best-validation selection kept; 10% ran to step 250 for +0.5 Acc_r.)
    cfg.FORGET.EARLY_STOP.RETAIN_MARGIN = 0.25
    # Detection: held-out forget images (taken from the training images DATA_RATIO /
    # SHOTS leave out; if too few, from the forget training images while at least as
    # many remain to train on). Read by: rcnn, detr.
    cfg.FORGET.EARLY_STOP.HELDOUT_IMAGES = 16
    # "" (the rule above: stop when forgotten, keep the weights at the stop) or "val_score":
    # Poppi et al.'s early stopping instead (classification/face only; needs held-out data
    # of the retained classes): every PERIOD steps score mean(Acc_r, 100 - Acc_f) on the
    # whole validation split, keep the best weights, stop after PATIENCE checks without a
    # better score; benchmarks/table1.py uses it for their protocol. Read by:
    # classification, face.
    cfg.FORGET.EARLY_STOP.SELECT = ""
