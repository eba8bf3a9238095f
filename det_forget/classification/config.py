"""``add_classification_config``: the ``CLS.*`` keys of classification and face forgetting.

Classification and face recognition use the same yacs/fvcore config system as detection:
a ``CfgNode`` with :func:`det_forget.config.add_forget_config` (``FORGET.*``, the method)
plus the keys here (``CLS.*``: data, model, solver). :func:`get_classification_cfg` builds
the complete default config.
"""

from __future__ import annotations

from pathlib import Path

from fvcore.common.config import CfgNode as CN

from ..config import add_forget_config

__all__ = [
    "add_classification_config",
    "get_classification_cfg",
    "resolve_weights_path",
    "MODEL_ZOO_DIR",
    "MODEL_ZOO_PREFIX",
    "READ_BY",
]

#: Folder of the checkpoints shipped with det_forget.
MODEL_ZOO_DIR = Path(__file__).resolve().parent.parent / "model_zoo"
#: ``CLS.WEIGHTS`` values starting with this are looked up in :data:`MODEL_ZOO_DIR`.
MODEL_ZOO_PREFIX = "model_zoo://"
#: ``CLS`` keys (or nodes) only some task types read (see
#: :func:`det_forget.config.check_ignored_keys`): the CosFace head and verification
#: settings are the face model's.
READ_BY: dict[str, frozenset[str]] = {"CLS.FACE": frozenset(("face",))}


def add_classification_config(cfg: CN) -> CN:
    """Add the ``CLS`` node to ``cfg`` in place and return ``cfg``.

    Keys:

    * ``CLS.DATASET``: ``"fashion_mnist"`` or ``"image_folder"`` (``root/<class>/<img>``).
    * ``CLS.DATA_ROOT``: Fashion-MNIST folder (empty: ``$DET_FORGET_FASHION_MNIST``, then
      Debian's location) or the image-folder training root; ``CLS.TEST_ROOT``: the
      image-folder test root.
    * ``CLS.VAL_PER_CLASS``: training images per class held out as validation (early
      stopping and checkpoint selection; the test split is never used to select).
    * ``CLS.VAL_EVAL_PER_CLASS``: how many of those the forgetting loop evaluates on.
    * ``CLS.TEST_PER_CLASS``: if > 0, evaluate on this many test images per class only
      (smoke runs); 0 uses the whole test split.
    * ``CLS.SPLIT_SEED``: seed of the validation split (and of the test subset).
    * ``CLS.MODEL.*``: the classifier (``NAME`` in ``CLASSIFIER_REGISTRY``, ViT dims,
      ``PIXEL_MEAN``/``PIXEL_STD`` of ``[0, 1]`` pixels); ``FaceRecognizer``
      adds a CosFace head with ``CLS.FACE.SCALE`` (s) and ``CLS.FACE.MARGIN`` (m), and
      ``CLS.FACE.FAR`` lists the false accept rates its verification reports TAR at.
    * ``CLS.WEIGHTS``: checkpoint to start from (``model_zoo://<file>`` for shipped ones).
    * ``CLS.PRETRAIN.*``: the pre-training recipe of ``tools/pretrain_classifier.py``;
      ``INIT_WEIGHTS`` continues from a checkpoint of the same architecture.
    * ``CLS.SOLVER.*``: the forgetting optimiser's settings (which optimizer is
      ``FORGET.OPTIMIZER`` and the schedule ``FORGET.LR_SCHEDULE`` /
      ``FORGET.MIN_LR_FACTOR``, as in detection): ``BASE_LR``, ``WEIGHT_DECAY``,
      ``BATCH_SIZE`` (per forget and per retain batch), ``GRAD_CLIP``.
    * ``CLS.EVAL_BATCH_SIZE``; ``CLS.NUM_THREADS`` (torch threads, 0 = leave as is);
      ``CLS.LOG_PERIOD`` (steps between progress lines).

    Returns:
        ``cfg``.
    """
    cfg.CLS = CN()
    c = cfg.CLS
    c.DATASET = "fashion_mnist"
    c.DATA_ROOT = ""
    c.TEST_ROOT = ""
    c.VAL_PER_CLASS = 500
    c.VAL_EVAL_PER_CLASS = 100
    c.TEST_PER_CLASS = 0
    c.SPLIT_SEED = 0
    c.WEIGHTS = MODEL_ZOO_PREFIX + "fmnist_vit.safetensors"
    c.EVAL_BATCH_SIZE = 500
    c.NUM_THREADS = 0
    c.LOG_PERIOD = 50

    c.MODEL = CN()
    c.MODEL.NAME = "ViTClassifier"
    c.MODEL.NUM_CLASSES = 10
    c.MODEL.IMG_SIZE = 28
    c.MODEL.IN_CHANS = 1
    c.MODEL.PATCH_SIZE = 4
    c.MODEL.EMBED_DIM = 96
    c.MODEL.DEPTH = 4
    c.MODEL.NUM_HEADS = 3
    c.MODEL.MLP_RATIO = 4.0
    c.MODEL.DROP_PATH_RATE = 0.0
    c.MODEL.PIXEL_MEAN = [0.2860]
    c.MODEL.PIXEL_STD = [0.3530]

    c.FACE = CN()
    c.FACE.SCALE = 64.0
    c.FACE.MARGIN = 0.35
    c.FACE.FAR = [1e-3, 1e-2, 1e-1]

    c.PRETRAIN = CN()
    c.PRETRAIN.EPOCHS = 15
    c.PRETRAIN.BATCH_SIZE = 128
    c.PRETRAIN.BASE_LR = 1e-3
    c.PRETRAIN.MIN_LR = 1e-5
    c.PRETRAIN.WEIGHT_DECAY = 0.05
    c.PRETRAIN.WARMUP_EPOCHS = 1.0
    c.PRETRAIN.AUGMENT = True
    c.PRETRAIN.DROP_PATH_RATE = 0.05
    c.PRETRAIN.INIT_WEIGHTS = ""

    c.SOLVER = CN()
    c.SOLVER.BASE_LR = 1e-2
    c.SOLVER.WEIGHT_DECAY = 0.05
    c.SOLVER.BATCH_SIZE = 64
    c.SOLVER.GRAD_CLIP = 0.0
    return cfg


def get_classification_cfg() -> CN:
    """A fresh config with ``FORGET.*``, ``CLS.*``, ``OUTPUT_DIR`` and ``SEED``.

    Returns:
        The default classification config (``_BASE_`` yaml files merge onto it).
    """
    cfg = CN()
    cfg.OUTPUT_DIR = "output/classification"
    cfg.SEED = 0
    add_forget_config(cfg)
    add_classification_config(cfg)
    cfg.FORGET.CLASSES = ["Trouser", "Bag"]
    cfg.FORGET.DATA_RATIO = 0.1
    cfg.FORGET.EARLY_STOP.PERIOD = 25
    cfg.FORGET.EARLY_STOP.PATIENCE = 2
    cfg.FORGET.MIN_LR_FACTOR = 1e-3  # cosine from CLS.SOLVER.BASE_LR 1e-2 down to 1e-5
    return cfg


def resolve_weights_path(weights: str) -> Path:
    """``CLS.WEIGHTS`` as a path (``model_zoo://name`` maps into :data:`MODEL_ZOO_DIR`).

    Args:
        weights: a path or ``model_zoo://<file>``.

    Returns:
        The checkpoint path (not checked for existence).
    """
    if weights.startswith(MODEL_ZOO_PREFIX):
        return MODEL_ZOO_DIR / weights[len(MODEL_ZOO_PREFIX) :]
    return Path(weights).expanduser()
