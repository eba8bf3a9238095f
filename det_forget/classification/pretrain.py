"""Supervised (pre-)training of a classifier or face model on in-memory images.

Used by ``tools/pretrain_classifier.py`` to produce the model that forgetting starts from,
and by the ``retrain`` baseline's full schedule. The model selects its training logits with
``train_logits(images, labels)`` (a CosFace head applies its margin there), so one loop
trains both heads.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import BatchSampler, ImageClassData
from .evaluate import evaluate_per_class

__all__ = ["PretrainRecipe", "augment_batch", "train_classifier", "format_eta"]

logger = logging.getLogger(__name__)


@dataclass
class PretrainRecipe:
    """Hyper-parameters of :func:`train_classifier`.

    Attributes:
        epochs: passes over the training data.
        batch_size: images per step.
        base_lr: AdamW peak learning rate.
        min_lr: cosine end learning rate.
        weight_decay: AdamW weight decay.
        warmup_epochs: linear warm-up length.
        augment: random shifts (pad 2, crop) and horizontal flips.
        seed: RNG seed of batches and augmentation.
        log_period: steps between progress lines.
    """

    epochs: int = 15
    batch_size: int = 128
    base_lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    augment: bool = True
    seed: int = 0
    log_period: int = 100

    @classmethod
    def from_config(cls, cfg) -> PretrainRecipe:
        """From ``cfg.CLS.PRETRAIN`` (and ``SEED``, ``CLS.LOG_PERIOD``)."""
        p = cfg.CLS.PRETRAIN
        return cls(
            epochs=p.EPOCHS,
            batch_size=p.BATCH_SIZE,
            base_lr=p.BASE_LR,
            min_lr=p.MIN_LR,
            weight_decay=p.WEIGHT_DECAY,
            warmup_epochs=p.WARMUP_EPOCHS,
            augment=p.AUGMENT,
            seed=cfg.SEED,
            log_period=cfg.CLS.LOG_PERIOD,
        )


def augment_batch(images: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels and random horizontal flip.

    Args:
        images: ``(N, C, H, W)`` uint8 or float.
        generator: RNG.
        pad: maximum shift in pixels (zero padding).

    Returns:
        Augmented images, same shape and dtype.
    """
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    c, wp = images.shape[1], padded.shape[3]
    rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, c, h, wp)
    cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(n, c, h, w)
    out = padded.gather(2, rows).gather(3, cols)
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def format_eta(seconds: float) -> str:
    """``h:mm:ss`` for a log line."""
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _train_logits(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "train_logits"):
        return model.train_logits(images, labels)[0]
    return model(images)


def train_classifier(
    model: nn.Module,
    train: ImageClassData,
    val: ImageClassData | None,
    recipe: PretrainRecipe,
    eval_batch_size: int = 500,
) -> dict[str, object]:
    """Train all parameters with AdamW, warm-up + cosine; keep the best epoch on ``val``.

    Args:
        model: the network (trained in place; ends with the best validation weights).
        train: training images.
        val: held-out images for selecting the epoch (``None``: keep the last one).
        recipe: hyper-parameters.
        eval_batch_size: images per evaluation forward pass.

    Returns:
        ``{"best_epoch", "best_val_acc", "history", "seconds"}``.
    """
    steps_per_epoch = math.ceil(len(train) / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    warmup = int(recipe.warmup_epochs * steps_per_epoch)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (
                no_decay if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token")) else decay
            ).append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": recipe.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=recipe.base_lr,
    )

    def lr_at(step: int) -> float:
        if step < warmup:
            return recipe.base_lr * (step + 1) / warmup
        t = (step - warmup) / max(total - warmup, 1)
        return recipe.min_lr + 0.5 * (recipe.base_lr - recipe.min_lr) * (1 + math.cos(math.pi * t))

    sampler = BatchSampler(len(train), recipe.batch_size, seed=recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed + 1)
    best_acc, best_epoch, best_state = -1.0, -1, None
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    step = 0
    for epoch in range(recipe.epochs):
        model.train()
        running = 0.0
        for _ in range(steps_per_epoch):
            idx = next(sampler)
            images, labels = train.images[idx], train.labels[idx]
            if recipe.augment:
                images = augment_batch(images, gen)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            loss = F.cross_entropy(_train_logits(model, images, labels), labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pre-training loss is {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item()
            step += 1
            if step % recipe.log_period == 0:
                elapsed = time.perf_counter() - start
                logger.info(
                    "epoch %d step %d/%d loss %.4f lr %.2e eta %s",
                    epoch + 1,
                    step,
                    total,
                    loss.item(),
                    lr_at(step - 1),
                    format_eta(elapsed / step * (total - step)),
                )
        record = {"epoch": epoch + 1, "train_loss": running / steps_per_epoch}
        if val is not None:
            per_class = evaluate_per_class(
                model, val.images, val.labels, val.num_classes, eval_batch_size
            )
            acc = sum(per_class.values()) / len(per_class)
            record["val_acc"] = acc
            if acc > best_acc:
                best_acc, best_epoch = acc, epoch + 1
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(record)
        logger.info("epoch %d done: %s", epoch + 1, {k: round(v, 4) for k, v in record.items()})
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {
        "best_epoch": best_epoch if val is not None else recipe.epochs,
        "best_val_acc": best_acc if val is not None else None,
        "history": history,
        "seconds": time.perf_counter() - start,
    }
