"""The training data of a forgetting task: a forget loader and a retain loader in step.

Each step yields ``{"forget": batch, "retain": batch}`` (one side omitted when the method
does not use it). Both loaders are detectron2 train loaders (infinite, sharded across
processes); the forget set is usually far smaller, so it simply cycles faster. With the
stopping rule on, each task also sets aside a small held-out forget split (training images
the task does not train on, see :mod:`det_forget.engine.heldout`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from detectron2.data import DatasetMapper, MetadataCatalog, build_detection_train_loader
from detectron2.data.samplers import TrainingSampler

from ..data.checks import check_images, load_dataset
from ..data.forget_retain import ForgetRetainSplit, build_forget_retain_split
from ..forgetting import ForgetTask
from .heldout import heldout_forget_dicts

__all__ = ["TaskDataLoader", "thing_classes_of"]

logger = logging.getLogger(__name__)


def thing_classes_of(cfg) -> list[str]:
    """Class names of the first training dataset (contiguous-id order)."""
    name = cfg.DATASETS.TRAIN[0]
    classes = MetadataCatalog.get(name).get("thing_classes", None)
    if not classes:
        load_dataset(name)  # loading a COCO json fills thing_classes
        classes = MetadataCatalog.get(name).thing_classes
    return list(classes)


class TaskDataLoader:
    """Forget + retain detectron2 loaders for the current task.

    Args:
        cfg: the config (datasets, batch size, FORGET data keys).
        use_forget: build the forget loader.
        use_retain: build the retain loader.
    """

    def __init__(self, cfg, *, use_forget: bool = True, use_retain: bool = True) -> None:
        self.cfg = cfg
        self.use_forget = use_forget
        self.use_retain = use_retain
        self.split: ForgetRetainSplit | None = None
        self.heldout: list[dict] = []
        self.heldout_source = ""
        self._version = 0
        self._skip = 0
        self._loaders: dict[str, object] = {}

    def set_task(
        self,
        task: ForgetTask,
        skip_batches: int = 0,
        seed: int | None = None,
        heldout_images: int = 0,
    ) -> ForgetRetainSplit:
        """Build the views and loaders of ``task``; the running iterator switches over.

        Args:
            task: the task.
            skip_batches: batches of this task already trained on (a resumed run): both
                loaders start after them, so the run sees the data it would have seen.
            seed: shuffling seed of the loaders (None: detectron2's shared random seed).
            heldout_images: size of the held-out forget split of the stopping rule
                (:attr:`heldout`; 0: none, the training data is exactly the split's).
        """
        f = self.cfg.FORGET
        self.split = build_forget_retain_split(
            list(self.cfg.DATASETS.TRAIN),
            list(task.forget),
            old_ids=list(task.old),
            missing_ids=list(task.missing),
            ratio=f.DATA_RATIO,
            shots=f.SHOTS,
            seed=f.DATA_SEED,
        )
        self.heldout, self.heldout_source = [], ""
        if heldout_images > 0:
            everything = [r for name in self.cfg.DATASETS.TRAIN for r in load_dataset(name)]
            self.heldout, self.split, self.heldout_source = heldout_forget_dicts(
                everything, self.split, heldout_images, seed=f.DATA_SEED + task.index
            )
        # Every image this task will sample, checked now rather than when a worker draws it.
        used = (
            (self.split.forget_dicts if self.use_forget else [])
            + (self.split.retain_dicts if self.use_retain else [])
            + self.heldout
        )
        check_images(used, len(self.split.thing_classes), ", ".join(self.cfg.DATASETS.TRAIN))
        mapper = DatasetMapper(self.cfg, is_train=True)
        self._loaders = {}
        for offset, (side, dicts, wanted) in enumerate(
            (
                ("forget", self.split.forget_dicts, self.use_forget),
                ("retain", self.split.retain_dicts, self.use_retain),
            )
        ):
            if wanted:
                sampler = TrainingSampler(
                    len(dicts), seed=None if seed is None else seed + 7919 * task.index + offset
                )
                self._loaders[side] = build_detection_train_loader(
                    self.cfg,
                    dataset=dicts,
                    mapper=mapper,
                    sampler=sampler,
                    total_batch_size=self.cfg.SOLVER.IMS_PER_BATCH,
                )
        stats = self.split.stats()
        logger.info(
            "task %d data: %d forget images, %d retain images%s",
            task.index,
            len(self.split.forget_dicts),
            len(self.split.retain_dicts),
            f", {len(self.heldout)} held-out forget images ({self.heldout_source})"
            if heldout_images > 0
            else "",
        )
        logger.debug("task data statistics: %s", stats)
        self._skip = skip_batches
        self._version += 1
        return self.split

    def __iter__(self) -> Iterator[dict]:
        version, iters = -1, {}
        while True:
            if version != self._version:
                if not self._loaders:
                    raise RuntimeError("TaskDataLoader: set_task() was never called")
                version = self._version
                # Starting a DataLoader iterator draws from torch's global RNG; keep that
                # out of the training randomness so a resumed run matches a full one.
                with torch.random.fork_rng(devices=[]):
                    iters = {side: iter(loader) for side, loader in self._loaders.items()}
                    for _ in range(self._skip):
                        for it in iters.values():
                            next(it)
            yield {side: next(it) for side, it in iters.items()}
