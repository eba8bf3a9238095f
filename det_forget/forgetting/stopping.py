"""Stop a forgetting task when its classes are forgotten: the one stopping rule of every
task type (R-CNN, DETR, classification, face).

Every ``FORGET.EARLY_STOP.PERIOD`` steps the task type scores the model on a small
**held-out forget split** (forget-class samples of the training data that the task does
not train on; never the evaluation split) and hands the result to :class:`ForgetStopper`.
A check passes when

* every forget class is **under its bound**: on the held-out split its mean forget loss
  (the cross-entropy the bounded loss pushes up) is within ``BOUND_TOL`` nats of
  ``FORGET.LOSS.BOUND`` (``CE_WEIGHT * CE >= BOUND - BOUND_TOL``; methods without the
  bounded loss skip this part);
* every forget class's **held-out score** (AP for detection, accuracy for
  classification, in %) is at most ``SCORE_TARGET``;
* the **retain loss** (mean training retain loss since the previous check) is no worse
  than at the start of the task (the mean over the first ``PERIOD`` steps) by more than
  ``RETAIN_MARGIN`` (relative; methods without retain data skip this part).

The task stops after ``PATIENCE`` passing checks in a row; ``FORGET.MAX_ITER`` stays the
ceiling. Methods that start from fresh weights (``retrain``) never stop early: their
retain loss starts at chance, so "no worse than at the start" says nothing.

The stopper is plain state (``state_dict`` / ``load_state_dict``), so a resumed run
continues with the checks it had made; :meth:`ForgetStopper.summary` is what the run
records (``history.json``: ``train.stopping`` of each task).

:class:`BestScoreSelector` is the other rule, Poppi et al.'s early stopping (classification
and face only, ``FORGET.EARLY_STOP.SELECT "val_score"``): every ``PERIOD`` steps it scores
``mean(Acc_r, 100 - Acc_f)`` (:func:`val_selection_score`) on the whole validation split,
keeps the best-scoring weights, stops after ``PATIENCE`` checks without a better score
(counted once the score beat the starting model's) and restores the best weights at the
end. It needs held-out data of the retained classes, which detection's held-out split has
not, so detection refuses it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .methods import ForgetMethod

__all__ = [
    "SELECT_MODES",
    "StopRule",
    "StopCheck",
    "ForgetStopper",
    "BestScoreSelector",
    "val_selection_score",
]

#: ``FORGET.EARLY_STOP.SELECT`` values: ``""`` (stop when forgotten, keep the weights at
#: the stop; every task type) and ``"val_score"`` (Poppi et al.'s best validation score;
#: classification and face).
SELECT_MODES = ("", "val_score")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StopRule:
    """The stopping rule's settings (``FORGET.EARLY_STOP.*``; see the module docstring).

    Attributes:
        period: steps between checks; 0 disables the rule (every task runs ``MAX_ITER``).
        patience: passing checks in a row that stop the task.
        score_target: the most a forget class may score on the held-out split (in %).
        bound: ``FORGET.LOSS.BOUND`` (None: the method has no bounded loss, not checked).
        ce_weight: ``FORGET.LOSS.CE_WEIGHT`` (the factor on CE inside the bound).
        bound_tol: nats below the bound a class's held-out loss may stay.
        retain_margin: relative increase of the retain loss over its start allowed
            (None: the method has no retain data, not checked).
        metric: name of the held-out score in messages ("AP", "accuracy").
    """

    period: int = 20
    patience: int = 2
    score_target: float = 2.0
    bound: float | None = 5.0
    ce_weight: float = 1.0
    bound_tol: float = 0.5
    retain_margin: float | None = 0.25
    metric: str = "score"

    def __post_init__(self) -> None:
        if self.period < 0:
            raise ValueError(f"FORGET.EARLY_STOP.PERIOD must be >= 0, got {self.period}")
        if self.patience < 1:
            raise ValueError(f"FORGET.EARLY_STOP.PATIENCE must be >= 1, got {self.patience}")
        if self.retain_margin is not None and self.retain_margin < 0:
            raise ValueError(
                f"FORGET.EARLY_STOP.RETAIN_MARGIN must be >= 0, got {self.retain_margin}"
            )
        if self.bound_tol < 0:
            raise ValueError(f"FORGET.EARLY_STOP.BOUND_TOL must be >= 0, got {self.bound_tol}")

    @property
    def enabled(self) -> bool:
        return self.period > 0

    @classmethod
    def from_config(cls, cfg, method: ForgetMethod, metric: str) -> StopRule:
        """The rule of ``cfg.FORGET`` for ``method``.

        The bound is checked only for methods with the bounded forget loss, the retain
        loss only for methods with retain data; ``retrain`` (fresh weights) gets a
        disabled rule.
        """
        f = cfg.FORGET
        s = f.EARLY_STOP
        return cls(
            period=0 if method.reinit else int(s.PERIOD),
            patience=int(s.PATIENCE),
            score_target=float(s.SCORE_TARGET),
            bound=float(f.LOSS.BOUND) if "loss_forget_bounded" in method.terms else None,
            ce_weight=float(f.LOSS.CE_WEIGHT),
            bound_tol=float(s.BOUND_TOL),
            retain_margin=float(s.RETAIN_MARGIN) if method.uses_retain_data else None,
            metric=metric,
        )


@dataclass
class StopCheck:
    """One check: what was measured and whether it passed.

    Attributes:
        step: steps of the task done when checked.
        scores: held-out score of each forget class (None: no held-out sample).
        forget_loss: held-out mean forget loss of each forget class (None: not measured).
        retain_loss: mean training retain loss since the previous check.
        retain_start: mean training retain loss over the task's first period.
        passed: every condition held.
        reasons: the conditions that failed, in words (empty when passed).
    """

    step: int
    scores: dict[str, float | None]
    forget_loss: dict[str, float | None] | None
    retain_loss: float | None
    retain_start: float | None
    passed: bool
    reasons: list[str]


class ForgetStopper:
    """Decides when a task has forgotten (see the module docstring).

    Args:
        rule: the settings.
        forget_classes: the task's forget classes, by name.
        max_iter: the task's step ceiling (``FORGET.MAX_ITER``).

    Use: :meth:`observe` after every step with the step's retain loss; when
    :meth:`due` says so, measure the held-out split and call :meth:`check`, which
    returns True when the task should stop.
    """

    def __init__(self, rule: StopRule, forget_classes: Sequence[str], max_iter: int) -> None:
        self.rule = rule
        self.forget_classes = list(forget_classes)
        self.max_iter = int(max_iter)
        self.checks: list[StopCheck] = []
        self.stopped_at: int | None = None
        self.reason: str = ""
        self._window: list[float] = []
        self._retain_start: float | None = None

    # ------------------------------------------------------------------ per step
    def observe(self, step: int, retain_loss: float | None) -> None:
        """Record the training retain loss of step ``step`` (0-based; None: no retain data)."""
        if retain_loss is None or not math.isfinite(float(retain_loss)):
            return
        self._window.append(float(retain_loss))

    def due(self, step: int) -> bool:
        """Whether a check follows step ``step`` (0-based): every ``period`` steps, never
        after the last step (the ceiling ends the task anyway) or once stopped."""
        r = self.rule
        done = step + 1
        return (
            r.enabled and self.stopped_at is None and done % r.period == 0 and done < self.max_iter
        )

    # ------------------------------------------------------------------ checks
    def check(
        self,
        step: int,
        scores: Mapping[str, float | None],
        forget_loss: Mapping[str, float | None] | None = None,
    ) -> bool:
        """Judge the held-out measurements after step ``step`` (0-based).

        Args:
            step: the step just done.
            scores: held-out score (AP / accuracy, %) of each forget class by name; a class
                without held-out samples is None, and blocks stopping (nothing measured).
            forget_loss: held-out mean forget loss (CE) of each forget class by name.

        Returns:
            True when the task should stop now.
        """
        r = self.rule
        retain_now = _mean(self._window)
        self._window = []
        if self._retain_start is None:
            self._retain_start = retain_now
        reasons: list[str] = []
        for name in self.forget_classes:
            s = scores.get(name)
            if s is None:
                reasons.append(f"no held-out {name} sample to score")
            elif s > r.score_target:
                reasons.append(f"{name} held-out {r.metric} {s:.1f} > {r.score_target:g}")
        if r.bound is not None:
            losses = forget_loss or {}
            need = r.bound - r.bound_tol
            for name in self.forget_classes:
                v = losses.get(name)
                if v is not None and r.ce_weight * v < need:
                    reasons.append(f"{name} held-out forget loss {r.ce_weight * v:.2f} < {need:g}")
        if r.retain_margin is not None and retain_now is not None:
            start = self._retain_start
            if start is not None and retain_now > start * (1.0 + r.retain_margin):
                reasons.append(
                    f"retain loss {retain_now:.3f} > {start:.3f} x {1 + r.retain_margin:g}"
                )
        passed = not reasons
        self.checks.append(
            StopCheck(
                step=step + 1,
                scores={k: _round(v) for k, v in scores.items()},
                forget_loss=None
                if forget_loss is None
                else {k: _round(v) for k, v in forget_loss.items()},
                retain_loss=_round(retain_now),
                retain_start=_round(self._retain_start),
                passed=passed,
                reasons=reasons,
            )
        )
        streak = self._streak()
        if not passed:
            logger.info("stop check at iteration %d: continue (%s)", step + 1, "; ".join(reasons))
            return False
        if streak < r.patience:
            logger.info(
                "stop check at iteration %d: forgotten (%d/%d checks in a row)",
                step + 1,
                streak,
                r.patience,
            )
            return False
        self.stopped_at = step + 1
        self.reason = self._describe(self.checks[-1])
        logger.info("stopped at iteration %d: %s", self.stopped_at, self.reason)
        return True

    def _streak(self) -> int:
        n = 0
        for c in reversed(self.checks):
            if not c.passed:
                break
            n += 1
        return n

    def _describe(self, last: StopCheck) -> str:
        r = self.rule
        parts = []
        if r.bound is not None:
            parts.append(f"every forget class within {r.bound_tol:g} of its bound {r.bound:g}")
        scores = ", ".join(
            f"{k} {'-' if v is None else f'{v:.1f}'}" for k, v in last.scores.items()
        )
        parts.append(f"held-out {r.metric} <= {r.score_target:g} ({scores})")
        text = " and ".join(parts) + f" for {r.patience} checks in a row"
        if r.retain_margin is not None and last.retain_loss is not None:
            text += f"; retain loss {last.retain_loss:.3f} vs {last.retain_start:.3f} at the start"
        return text

    # ------------------------------------------------------------------ record
    def summary(self, steps: int | None = None) -> dict[str, Any]:
        """What the run records about stopping (``train.stopping`` in ``history.json``)."""
        return {
            "enabled": self.rule.enabled,
            "rule": asdict(self.rule),
            "max_iter": self.max_iter,
            "steps": steps if steps is not None else (self.stopped_at or self.max_iter),
            "stopped_at": self.stopped_at,
            "reason": self.reason or ("disabled" if not self.rule.enabled else "reached MAX_ITER"),
            "checks": [asdict(c) for c in self.checks],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "checks": [asdict(c) for c in self.checks],
            "stopped_at": self.stopped_at,
            "reason": self.reason,
            "window": list(self._window),
            "retain_start": self._retain_start,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.checks = [StopCheck(**c) for c in state.get("checks", [])]
        self.stopped_at = state.get("stopped_at")
        self.reason = state.get("reason", "")
        self._window = list(state.get("window", []))
        self._retain_start = state.get("retain_start")


def val_selection_score(
    per_class: Mapping[Any, float], forget: Sequence[Any], retain: Sequence[Any]
) -> float:
    """Poppi et al.'s selection score ``mean(Acc_r, 100 - Acc_f)`` from per-class accuracy
    (%); ``Acc_r`` over ``retain``, ``Acc_f`` over ``forget``, classes without a score
    left out (an empty group counts as 0 retained / 100 forgotten accuracy)."""
    from ..evaluation.metrics import group_mean

    acc_r = group_mean(per_class, retain)
    acc_f = group_mean(per_class, forget)
    return 0.5 * ((acc_r or 0.0) + 100.0 - (100.0 if acc_f is None else acc_f))


class BestScoreSelector:
    """Poppi et al.'s early stopping: keep the weights with the best validation score.

    Args:
        period: steps between checks (> 0).
        patience: checks in a row without a better score that stop the task, counted
            once the best score beat ``initial_score`` (forgetting often shows nothing for
            the first checks, which is no reason to stop).
        initial_score: the starting model's score.
        max_iter: the task's step ceiling.

    Use: when :meth:`due`, score the model and call :meth:`check` with the trainable
    parameters; it keeps a copy of them when the score is the best so far and returns
    True when the task should stop. :meth:`restore` copies the best weights back.
    """

    def __init__(self, period: int, patience: int, initial_score: float, max_iter: int) -> None:
        if period < 1:
            raise ValueError(f"FORGET.EARLY_STOP.PERIOD must be >= 1 for SELECT, got {period}")
        if patience < 1:
            raise ValueError(f"FORGET.EARLY_STOP.PATIENCE must be >= 1, got {patience}")
        self.period, self.patience, self.max_iter = int(period), int(patience), int(max_iter)
        self.initial_score = float(initial_score)
        self.best_score = -math.inf
        self.best_step: int | None = None
        self.stopped_at: int | None = None
        self.scores: list[tuple[int, float]] = []
        self._state: dict[str, Any] | None = None
        self._stale = 0

    def due(self, step: int) -> bool:
        """A check follows step ``step`` (0-based): every ``period`` steps and the last."""
        done = step + 1
        return self.stopped_at is None and (done % self.period == 0 or done == self.max_iter)

    def check(self, step: int, score: float, params: Mapping[str, Any]) -> bool:
        """Record the validation ``score`` after step ``step``; True: stop now."""
        done = step + 1
        self.scores.append((done, round(float(score), 4)))
        if score > self.best_score:
            self.best_score, self.best_step = float(score), done
            self._state = {n: p.detach().clone() for n, p in params.items()}
            self._stale = 0
            logger.info("val score at step %d: %.2f (best)", done, score)
            return False
        if self.best_score > self.initial_score:
            self._stale += 1
        logger.info(
            "val score at step %d: %.2f (best %.2f at step %d, %d/%d without better)",
            done,
            score,
            self.best_score,
            self.best_step,
            self._stale,
            self.patience,
        )
        if self._stale >= self.patience and done < self.max_iter:
            self.stopped_at = done
            return True
        return False

    def restore(self, params: Mapping[str, Any]) -> None:
        """Copy the best weights back into ``params`` (no-op before any check)."""
        if self._state is None:
            return
        import torch

        with torch.no_grad():
            for n, p in params.items():
                p.copy_(self._state[n])

    def summary(self, steps: int) -> dict[str, Any]:
        """What the run records (``train.stopping``)."""
        reason = (
            f"no better validation score for {self.patience} checks"
            if self.stopped_at is not None
            else "reached MAX_ITER"
        )
        if self.best_step is not None:
            reason += (
                f"; kept the weights of step {self.best_step} (val score {self.best_score:.2f})"
            )
        return {
            "enabled": True,
            "select": "val_score",
            "rule": {"period": self.period, "patience": self.patience},
            "max_iter": self.max_iter,
            "steps": steps,
            "stopped_at": self.stopped_at,
            "initial_score": round(self.initial_score, 4),
            "best_step": self.best_step,
            "best_score": None if self.best_step is None else round(self.best_score, 4),
            "reason": reason,
            "checks": [{"step": s, "score": v} for s, v in self.scores],
        }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)
