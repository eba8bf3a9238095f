"""Checkpoint loading and saving for det_forget's detectron2 models."""

from .checkpointer import CheckpointMismatchError, ForgetCheckpointer

__all__ = ["CheckpointMismatchError", "ForgetCheckpointer"]
