"""``DetectionTrainer``: detectron2's ``DefaultTrainer`` with det_forget's conventions.

Used as is to train base detectors (the embedded demo's model) and as the parent of
:class:`~det_forget.engine.forget_trainer.ForgetTrainer`:

* AdamW over the trainable parameters (``FORGET.OPTIMIZER``; SGD as detectron2 does),
  with detectron2's gradient clipping (``SOLVER.CLIP_GRADIENTS``);
* checkpoints written atomically, and a base checkpoint that does not fit the model
  refused with the names of the parameters that differ;
* a COCO evaluator by default.
"""

from __future__ import annotations

import logging
import os
import weakref

import torch
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator
from detectron2.solver.build import maybe_add_gradient_clipping

from ..checkpoint import ForgetCheckpointer

__all__ = ["DetectionTrainer", "build_optimizer"]

logger = logging.getLogger(__name__)


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer over ``model``'s trainable parameters.

    ``FORGET.OPTIMIZER`` picks "AdamW" (lr ``SOLVER.BASE_LR``, weight decay
    ``SOLVER.WEIGHT_DECAY``) or "SGD" (plus ``SOLVER.MOMENTUM``); gradient clipping follows
    ``SOLVER.CLIP_GRADIENTS``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    name = cfg.FORGET.OPTIMIZER
    if name == "AdamW":
        cls, kwargs = torch.optim.AdamW, {"weight_decay": cfg.SOLVER.WEIGHT_DECAY}
    elif name == "SGD":
        cls = torch.optim.SGD
        kwargs = {"momentum": cfg.SOLVER.MOMENTUM, "weight_decay": cfg.SOLVER.WEIGHT_DECAY}
    else:
        raise ValueError(f"FORGET.OPTIMIZER must be 'AdamW' or 'SGD', got {name!r}")
    return maybe_add_gradient_clipping(cfg, cls)(params, lr=cfg.SOLVER.BASE_LR, **kwargs)


class DetectionTrainer(DefaultTrainer):
    """``DefaultTrainer`` + det_forget's optimizer, atomic/strict checkpoints, COCO eval."""

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        return COCOEvaluator(dataset_name, output_dir=output_folder)

    @classmethod
    def build_checkpointer(cls, model, cfg, **checkpointables) -> ForgetCheckpointer:
        """The checkpointer used for ``--eval-only`` and by the trainer."""
        return ForgetCheckpointer(
            model, cfg.OUTPUT_DIR, strict=cls.strict_checkpoint, **checkpointables
        )

    def build_hooks(self):
        # DefaultTrainer made a plain DetectionCheckpointer; swap in the atomic one before
        # the PeriodicCheckpointer hook captures it.
        self.checkpointer = self.build_checkpointer(
            self._trainer.model, self.cfg, trainer=weakref.proxy(self)
        )
        return super().build_hooks()

    #: Base training may start from a checkpoint of another class count (fine-tuning).
    strict_checkpoint = False
