"""Trainers: base detector training and forgetting (forget + retain loaders, tasks)."""

from .base_trainer import DetectionTrainer, build_optimizer
from .forget_data import TaskDataLoader, thing_classes_of
from .forget_trainer import ForgetTaskHook, ForgetTrainer, finalize_forget_config
from .job import ForgetJob, JobCancelled, JobProgress, JobResult

__all__ = [
    "ForgetJob",
    "JobCancelled",
    "JobProgress",
    "JobResult",
    "DetectionTrainer",
    "build_optimizer",
    "TaskDataLoader",
    "thing_classes_of",
    "ForgetTaskHook",
    "ForgetTrainer",
    "finalize_forget_config",
]
