"""Relearn time: how many fine-tuning steps bring a forgotten class back?

A model whose outputs forgot a class while its weights still hold it gets the class back
after a few steps of fine-tuning on a handful of its examples; a model that never learned
it (retrained without it) needs about as long as learning it from scratch. Relearn time
measures that: a copy of the model is fine-tuned on ``shots`` labelled training images of
each forgotten class (and, by default, as many of each retained class, so it cannot reach
the target by predicting the forgotten classes everywhere) with a fixed budget of steps,
learning rate and batch size, and its score on held-out images of the forgotten classes
is measured after every ``eval_period`` steps. The answer is the first step at which the
score is back at ``fraction`` (half by default) of the model's *original* score, before
forgetting, or "not within budget".

Compare the forgotten model's steps with the base model's (0: it never lost the class)
and the retrained model's: as fast as the base means the class is still there.

:func:`run_relearn` is that loop and its stopping rule, whatever the model; it returns a
:class:`RelearnResult`. :func:`relearn_time` runs it for a classifier (score: Acc_f, the
accuracy on the forgotten classes); :func:`det_forget.audit.detector_relearn.detector_relearn_time`
for a detector (score: AP_f, their COCO box AP).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..classification.data import BatchSampler, ImageClassData, subsample_per_class
from ..classification.evaluate import evaluate_per_class
from ..classification.pretrain import _train_logits
from ..evaluation.metrics import group_mean

__all__ = ["RelearnResult", "check_relearn_arguments", "relearn_time", "run_relearn"]

logger = logging.getLogger(__name__)


@dataclass
class RelearnResult:
    """Fine-tuning steps until the forgotten classes' held-out score is back.

    The score is ``metric``: ``"Acc_f"`` for classifiers (accuracy, %), ``"AP_f"`` for
    detectors (COCO box AP, %); the ``*_accuracy`` fields hold it either way.

    Attributes:
        steps: optimizer steps until the score reached ``target_accuracy`` (0: it already
            had); None when it did not within ``budget_steps``.
        samples_seen: images those steps used (``steps * batch_size``); None likewise.
        target_accuracy: the score to reach: ``fraction * original_accuracy``.
        original_accuracy: the score of the model before forgetting, same images.
        start_accuracy: the score of this model before any step.
        final_accuracy: the score at the last evaluation.
        retain_accuracy: the same score on the retained classes at the last evaluation
            (did fine-tuning keep the rest?); None without retained classes.
        steps_run: optimizer steps actually taken (at most ``budget_steps``).
        budget_steps: the step budget.
        batch_size: images per step.
        lr: AdamW learning rate.
        shots: training images per forgotten class.
        retain_shots: training images per retained class.
        fraction: share of ``original_accuracy`` to reach.
        eval_period: steps between evaluations.
        curve: ``[step, score]`` at every evaluation.
        seconds: wall time.
        metric: what the score is (``"Acc_f"`` or ``"AP_f"``).
    """

    steps: int | None
    samples_seen: int | None
    target_accuracy: float
    original_accuracy: float
    start_accuracy: float
    final_accuracy: float
    retain_accuracy: float | None
    steps_run: int
    budget_steps: int
    batch_size: int
    lr: float
    shots: int
    retain_shots: int
    fraction: float
    eval_period: int
    curve: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0
    metric: str = "Acc_f"

    @property
    def within_budget(self) -> bool:
        """Whether the score came back within the budget."""
        return self.steps is not None

    def describe(self) -> str:
        """``"12 steps (192 samples)"``, ``"0 steps (never lost it)"`` or
        ``"not within 50 steps"``."""
        if self.steps is None:
            return f"not within {self.budget_steps} steps"
        if self.steps == 0:
            return "0 steps (never lost it)"
        return f"{self.steps} steps ({self.samples_seen} samples)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RelearnResult:
        """Inverse of :meth:`to_dict` (reports written before ``metric`` existed are
        classification reports: ``"Acc_f"``)."""
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


def check_relearn_arguments(
    forget: Sequence[int],
    *,
    original_accuracy: float,
    shots: int,
    steps: int,
    lr: float,
    batch_size: int,
    fraction: float,
    eval_period: int,
) -> None:
    """Refuse a relearn measurement that cannot mean anything (same rules for every model).

    Raises:
        ValueError: no forgotten class, a bad budget or fraction, or an original score of 0.
    """
    if not forget:
        raise ValueError("relearn time needs at least one forgotten class")
    if steps < 0 or batch_size <= 0 or shots <= 0 or eval_period <= 0 or lr <= 0:
        raise ValueError(
            f"need steps >= 0 and positive shots, batch_size, eval_period and lr; got "
            f"steps={steps}, shots={shots}, batch_size={batch_size}, "
            f"eval_period={eval_period}, lr={lr}"
        )
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if original_accuracy <= 0.0:
        raise ValueError(
            f"the original score on the forgotten classes is {original_accuracy}: a model "
            "that never recognised them leaves nothing to relearn"
        )


def run_relearn(
    train_step: Callable[[], None],
    measure: Callable[[], tuple[float, float | None]],
    *,
    original_accuracy: float,
    steps: int,
    lr: float,
    batch_size: int,
    shots: int,
    retain_shots: int,
    fraction: float = 0.5,
    eval_period: int = 1,
    metric: str = "Acc_f",
) -> RelearnResult:
    """The relearn loop and its stopping rule: train until the score is back, or the budget.

    ``measure`` runs before any step (a model already at the target answers 0), then after
    every ``eval_period``-th step and after the last one; the answer is the first measured
    step whose score reached ``fraction * original_accuracy``.

    Args:
        train_step: one optimizer step on the fine-tuning examples (``batch_size`` of them).
        measure: ``(score on the forgotten classes, score on the retained ones or None)``
            of the model being fine-tuned, on the held-out images.
        original_accuracy: the score of the model before forgetting on the same images.
        steps: the step budget.
        lr: learning rate ``train_step`` uses (recorded).
        batch_size: images per step (``samples_seen = steps * batch_size``).
        shots: training images per forgotten class (recorded).
        retain_shots: training images per retained class (recorded).
        fraction: share of ``original_accuracy`` that counts as relearned.
        eval_period: steps between measurements.
        metric: what the score is (``"Acc_f"``, ``"AP_f"``), for the report.

    Returns:
        The :class:`RelearnResult`.
    """
    target = fraction * original_accuracy
    start = time.perf_counter()
    score, retain_score = measure()
    start_score = score
    curve = [[0, score]]
    reached = 0 if score >= target else None
    step = 0
    while reached is None and step < steps:
        train_step()
        step += 1
        if step % eval_period == 0 or step == steps:
            score, retain_score = measure()
            curve.append([step, score])
            if score >= target:
                reached = step
    result = RelearnResult(
        steps=reached,
        samples_seen=None if reached is None else reached * batch_size,
        target_accuracy=target,
        original_accuracy=original_accuracy,
        start_accuracy=start_score,
        final_accuracy=score,
        retain_accuracy=retain_score,
        steps_run=step,
        budget_steps=steps,
        batch_size=batch_size,
        lr=lr,
        shots=shots,
        retain_shots=retain_shots,
        fraction=fraction,
        eval_period=eval_period,
        curve=curve,
        seconds=time.perf_counter() - start,
        metric=metric,
    )
    logger.info(
        "relearn: %s %.1f -> %.1f (target %.1f): %s",
        metric,
        start_score,
        score,
        target,
        result.describe(),
    )
    return result


def _accuracies(
    model: nn.Module,
    heldout: ImageClassData,
    forget: Sequence[int],
    retain: Sequence[int],
    batch_size: int,
) -> tuple[float, float | None]:
    per_class = evaluate_per_class(
        model, heldout.images, heldout.labels, heldout.num_classes, batch_size
    )
    acc_r = group_mean(per_class, retain) if retain else None
    return group_mean(per_class, forget), acc_r


def relearn_time(
    model: nn.Module,
    train: ImageClassData,
    heldout: ImageClassData,
    forget_classes: Sequence[int],
    *,
    original_accuracy: float,
    shots: int = 5,
    retain_shots: int | None = None,
    steps: int = 50,
    lr: float = 1e-4,
    batch_size: int = 16,
    fraction: float = 0.5,
    eval_period: int = 1,
    seed: int = 0,
    eval_batch_size: int = 500,
) -> RelearnResult:
    """Fine-tune a copy of ``model`` until Acc_f is back at ``fraction * original_accuracy``.

    Every parameter trains (an attacker holding the weights would not restrict itself),
    with AdamW at a constant ``lr`` and no weight decay, on cross-entropy (the model's
    ``train_logits`` when it has one, so a CosFace head keeps its margin). ``model`` itself
    is not changed. The loop and stopping rule are :func:`run_relearn`'s.

    Args:
        model: the classifier to probe.
        train: labelled images to draw the fine-tuning examples from.
        heldout: images Acc_f (and the retained accuracy) are measured on; the same for
            every model compared, and the one ``original_accuracy`` was measured on.
        forget_classes: ids of the forgotten classes.
        original_accuracy: Acc_f (%) of the model before forgetting on ``heldout``.
        shots: training images per forgotten class (k).
        retain_shots: training images per retained class (default: ``shots``; 0: none).
        steps: the step budget.
        lr: learning rate.
        batch_size: images per step.
        fraction: share of ``original_accuracy`` that counts as relearned.
        eval_period: steps between evaluations (the answer is a multiple of it, or the
            last step).
        seed: seed of the example draw and the batches.
        eval_batch_size: images per evaluation forward pass.

    Returns:
        The :class:`RelearnResult`.

    Raises:
        ValueError: a bad budget, fraction or original accuracy, or a forgotten class
            without training or held-out images.
    """
    forget = sorted({int(c) for c in forget_classes})
    check_relearn_arguments(
        forget,
        original_accuracy=original_accuracy,
        shots=shots,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        fraction=fraction,
        eval_period=eval_period,
    )
    retain_shots = shots if retain_shots is None else retain_shots
    for name, part in (("training", train), ("held-out", heldout)):
        absent = sorted(set(forget) - set(part.labels.tolist()))
        if absent:
            raise ValueError(f"forgotten classes {absent} have no {name} images to relearn with")
    retain = sorted(set(heldout.labels.tolist()) - set(forget))
    index = subsample_per_class(train.labels, forget, shots=shots, seed=seed)
    if retain_shots > 0:
        retain_train = sorted(set(train.labels.tolist()) - set(forget))
        index = torch.cat(
            [index, subsample_per_class(train.labels, retain_train, shots=retain_shots, seed=seed)]
        )
    examples = train.subset(index)
    student = copy.deepcopy(model)
    for p in student.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    sampler = BatchSampler(len(examples), batch_size, seed=seed)

    def train_step() -> None:
        student.train()
        idx = next(sampler)
        images, labels = examples.images[idx], examples.labels[idx]
        loss = F.cross_entropy(_train_logits(student, images, labels), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run_relearn(
        train_step,
        lambda: _accuracies(student, heldout, forget, retain, eval_batch_size),
        original_accuracy=original_accuracy,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        shots=shots,
        retain_shots=retain_shots,
        fraction=fraction,
        eval_period=eval_period,
        metric="Acc_f",
    )
