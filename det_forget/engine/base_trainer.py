"""``DetectionTrainer``: detectron2's ``DefaultTrainer`` with det_forget's conventions.

Used as is to train base detectors (the embedded demo's model) and as the parent of
:class:`~det_forget.engine.forget_trainer.ForgetTrainer`:

* AdamW over the trainable parameters (``FORGET.OPTIMIZER``: also Adam, or SGD as
  detectron2 does), with detectron2's gradient clipping (``SOLVER.CLIP_GRADIENTS``);
* checkpoints written atomically, and a base checkpoint that does not fit the model
  refused with the names of the parameters that differ;
* a COCO evaluator by default.
"""

from __future__ import annotations

import logging
import os
import weakref

import torch
from detectron2.engine import DefaultTrainer, SimpleTrainer, create_ddp_model
from detectron2.engine.train_loop import AMPTrainer, TrainerBase
from detectron2.evaluation import COCOEvaluator
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import ForgetCheckpointer
from ..config import resolve_optimizer
from ..modeling.roi_align import use_matmul_roi_align

__all__ = ["DetectionTrainer", "build_optimizer"]

logger = logging.getLogger(__name__)


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer over ``model``'s trainable parameters.

    ``FORGET.OPTIMIZER`` picks "AdamW", "Adam" or "SGD" (lr ``SOLVER.BASE_LR``, weight decay
    ``SOLVER.WEIGHT_DECAY``, SGD's momentum ``SOLVER.MOMENTUM``; see
    :func:`det_forget.config.resolve_optimizer`); gradient clipping follows
    ``SOLVER.CLIP_GRADIENTS``. Parameters under a ``backbone.`` module train at
    ``SOLVER.BACKBONE_MULTIPLIER`` x the learning rate (DETR's recipe; 1 by default).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    multiplier = float(cfg.SOLVER.get("BACKBONE_MULTIPLIER", 1.0))
    backbone = [p for n, p in named if _in_backbone(n)]
    params: list = [p for n, p in named if not _in_backbone(n)]
    if multiplier == 1.0 or not backbone:
        params += backbone
    else:
        params = [
            {"params": params},
            {"params": backbone, "lr": cfg.SOLVER.BASE_LR * multiplier},
        ]
    cls, kwargs = resolve_optimizer(
        cfg.FORGET.OPTIMIZER, weight_decay=cfg.SOLVER.WEIGHT_DECAY, momentum=cfg.SOLVER.MOMENTUM
    )
    return maybe_add_gradient_clipping(cfg, cls)(params, lr=cfg.SOLVER.BASE_LR, **kwargs)


def _in_backbone(name: str) -> bool:
    return name.startswith("backbone.") or ".backbone." in name


class DetectionTrainer(DefaultTrainer):
    """``DefaultTrainer`` + det_forget's optimizer, atomic/strict checkpoints, COCO eval.

    The constructor follows ``DefaultTrainer.__init__`` step by step with two changes:
    data-parallel training also works on CPU processes (gloo; detectron2 always passes
    CUDA ``device_ids``), and the checkpointer is :class:`ForgetCheckpointer`.
    """

    #: Base training may start from a checkpoint of another class count (fine-tuning).
    strict_checkpoint = False

    def __init__(self, cfg) -> None:
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        ddp_kwargs = {} if cfg.MODEL.DEVICE.startswith("cuda") else {"device_ids": None}
        model = create_ddp_model(model, broadcast_buffers=False, **ddp_kwargs)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = self.build_checkpointer(model, cfg, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_model(cls, cfg):
        model = super().build_model(cfg)
        # Same numbers as torchvision's ROIAlign with a matrix-product backward, which is
        # much cheaper on CPU (det_forget/modeling/roi_align.py); GPU maps keep torchvision's.
        use_matmul_roi_align(model)
        return model

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
