"""Classification and face-recognition forgetting on the shared det_forget core.

Importing this package registers :class:`ViTClassifier` and :class:`FaceRecognizer` in
:data:`CLASSIFIER_REGISTRY`.
"""

from .config import add_classification_config, get_classification_cfg, resolve_weights_path
from .data import (
    FASHION_MNIST_CLASSES,
    BatchSampler,
    DataSplits,
    ImageClassData,
    find_fashion_mnist,
    load_fashion_mnist,
    load_image_folder,
    load_splits,
    read_idx,
    stratified_split,
    subsample_per_class,
)
from .evaluate import (
    embed,
    evaluate_per_class,
    predict,
    tar_at_far,
    verification_pairs,
    verification_report,
)
from .face import CosFaceHead, FaceRecognizer
from .model import (
    CLASSIFIER_REGISTRY,
    ViTClassifier,
    build_classifier,
    load_classifier,
    read_checkpoint_info,
    save_classifier,
)
from .pretrain import PretrainRecipe, augment_batch, train_classifier
from .trainer import (
    ClassificationForgetter,
    TaskData,
    build_task_data,
    summarize_run,
)

__all__ = [
    "add_classification_config",
    "get_classification_cfg",
    "resolve_weights_path",
    "FASHION_MNIST_CLASSES",
    "BatchSampler",
    "DataSplits",
    "ImageClassData",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "load_image_folder",
    "load_splits",
    "read_idx",
    "stratified_split",
    "subsample_per_class",
    "embed",
    "evaluate_per_class",
    "predict",
    "tar_at_far",
    "verification_pairs",
    "verification_report",
    "CosFaceHead",
    "FaceRecognizer",
    "CLASSIFIER_REGISTRY",
    "ViTClassifier",
    "build_classifier",
    "load_classifier",
    "read_checkpoint_info",
    "save_classifier",
    "PretrainRecipe",
    "augment_batch",
    "train_classifier",
    "ClassificationForgetter",
    "TaskData",
    "build_task_data",
    "summarize_run",
]
