"""Judging a forgetting task by its numbers: which classes pass, and whether the run did.

The app colours the AP table and words the job's final state from these gates, not from
the class groups: a retained class that lost more than :attr:`Gates.retain_max_drop` AP
points is a failure even though it is "retained", and a forgotten class still above
:attr:`Gates.forget_max_ap` is a failure even though it was asked to be forgotten.
No Qt in here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["ClassOutcome", "Gates", "RunOutcome", "judge"]


@dataclass(frozen=True)
class Gates:
    """The thresholds (AP in %, as the evaluator reports it).

    Attributes:
        forget_max_ap: a forgotten class passes when its AP after is at most this.
        retain_max_drop: a retained (or old) class passes when it lost at most this many
            AP points.
    """

    forget_max_ap: float = 5.0
    retain_max_drop: float = 5.0

    def describe(self) -> str:
        return (
            f"gates: forgotten AP ≤ {self.forget_max_ap:g}, "
            f"retained AP drop ≤ {self.retain_max_drop:g} points"
        )


@dataclass(frozen=True)
class ClassOutcome:
    """One class's verdict: ``"pass"``, ``"fail"`` or ``"unknown"`` (no number), and why."""

    name: str
    group: str
    verdict: str
    reason: str


@dataclass
class RunOutcome:
    """Every class's verdict and the run's: did forgetting and retention pass."""

    gates: Gates
    classes: dict[str, ClassOutcome] = field(default_factory=dict)

    def failed(self, group: str) -> list[str]:
        return [c.name for c in self.classes.values() if c.group == group and c.verdict == "fail"]

    @property
    def forgetting_passed(self) -> bool:
        return not self.failed("forget")

    @property
    def retention_passed(self) -> bool:
        return not (self.failed("retain") + self.failed("old"))

    @property
    def passed(self) -> bool:
        return self.forgetting_passed and self.retention_passed

    def headline(self) -> str:
        """``"gates passed"`` or which gate failed on how many classes."""
        parts = []
        if not self.forgetting_passed:
            n = len(self.failed("forget"))
            parts.append(f"forgetting failed on {n} class{'es' if n > 1 else ''}")
        kept = self.failed("retain") + self.failed("old")
        if kept:
            parts.append(f"retention failed on {len(kept)} class{'es' if len(kept) > 1 else ''}")
        return "gates passed" if not parts else "gates failed: " + "; ".join(parts)


def judge(
    classes: Mapping[str, Sequence[str]],
    before: Mapping[str, float | None] | None,
    after: Mapping[str, float | None] | None,
    gates: Gates = Gates(),  # noqa: B008  (frozen dataclass)
) -> RunOutcome:
    """Judge one task's classes.

    Args:
        classes: class names per group (``forget``, ``retain``, ``old``, ``missing``).
        before: per-class AP before the task (``None``: not evaluated).
        after: per-class AP after it.
        gates: the thresholds.
    """
    before, after = before or {}, after or {}
    out = RunOutcome(gates)
    for group, names in classes.items():
        for name in names:
            b, a = before.get(name), after.get(name)
            if group == "forget":
                if a is None:
                    verdict, reason = "unknown", "no AP after"
                elif a <= gates.forget_max_ap:
                    verdict, reason = "pass", f"AP after {a:.1f} ≤ {gates.forget_max_ap:g}"
                else:
                    verdict, reason = "fail", f"still AP {a:.1f} > {gates.forget_max_ap:g}"
            elif group in ("retain", "old"):
                if a is None or b is None:
                    verdict, reason = "unknown", "no AP before or after"
                elif b - a <= gates.retain_max_drop:
                    verdict, reason = "pass", f"lost {b - a:.1f} ≤ {gates.retain_max_drop:g}"
                else:
                    verdict, reason = "fail", f"lost {b - a:.1f} > {gates.retain_max_drop:g}"
            else:
                verdict, reason = "unknown", f"{group} class: not judged"
            out.classes[name] = ClassOutcome(name, group, verdict, reason)
    return out
