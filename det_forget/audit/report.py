"""The audit report: numbers per model, a plain-language verdict, JSON in and out.

An :class:`AuditReport` holds one :class:`ModelAudit` per model role:

* ``"base"``: the model before forgetting (it was trained on the forgotten classes);
* ``"forgotten"``: the model after forgetting;
* ``"retrained"`` (optional): a model trained without the forgotten classes, the gold
  standard forgetting tries to imitate.

The verdict compares the forgotten model's membership-inference AUC (the headline
attack: ``calibrated`` when reference models were given, else ``loss``) with the
retrained model's, or with 0.5 (chance) when no
retrained model was audited, and says plainly whether the difference is within the
tolerance (0.05) whatever the outcome. It also says when the base model was already
within the tolerance (then the test had nothing to detect and passing it proves little),
what the linear probe shows and, when measured, how fast each model relearns the classes
and (detection) each model's held-out AP and where the forgotten objects went.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write
from .calibrated import CALIBRATED_ATTACK
from .membership import ATTACKS, MembershipResult
from .probe import ProbeResult
from .relearn import RelearnResult

__all__ = [
    "AUDIT_FILE_NAME",
    "MODEL_ROLES",
    "ModelAudit",
    "AuditReport",
    "membership_verdict",
    "load_report",
    "HEADLINE_ATTACKS",
    "COLUMN_MEANINGS",
]

#: Name of the report a run folder holds (the app shows it when present).
AUDIT_FILE_NAME = "audit.json"
#: Model roles, in table order.
MODEL_ROLES = ("base", "forgotten", "retrained")
_FORMAT_VERSION = 1
#: Attacks a report's verdict can be based on.
HEADLINE_ATTACKS = (*ATTACKS, CALIBRATED_ATTACK)
#: What each number of the table means, in plain words (printed under the table and
#: stored in the JSON as ``glossary``).
COLUMN_MEANINGS = {
    "MIA AUC loss": "how well the sample's loss tells training images of the forgotten "
    "classes from unseen ones (0.5: not at all; either way from 0.5 is a leak), ± its "
    "standard error",
    "MIA AUC confidence": "the same with the largest class probability (needs no label)",
    "MIA AUC calibrated": "the same with each image's score compared with reference "
    "models that did not train on it (LiRA): the attack that finds membership in a model "
    "that memorised; should match the retrained model's after forgetting",
    "best attack acc": "balanced accuracy of the best threshold on the headline attack "
    "(optimistic: chosen on the same images)",
    "probe bal. acc": "a linear classifier on the frozen features telling forgotten "
    "classes from retained ones (0.5: no trace; 1.0: fully separable)",
    "probe AUC": "the same probe's AUC",
    "forget acc %": "accuracy on held-out images (detection: ground-truth boxes) of the "
    "forgotten classes",
    "AP_f": "detection: COCO box AP (%) of the forgotten classes, the model run as a "
    "detector on held-out images holding them (0: never finds them)",
    "AP_r": "the same AP of the retained classes on those images",
    "fate det/relab/gone %": "detection: of the forgotten objects on those images, the "
    "share still detected as their class, re-labelled as another class, or not detected "
    "at all (the evaluator's object fate: score and IoU thresholds FORGET.FATE_*)",
    "relearn steps": "fine-tuning steps (and images seen) until the forgotten classes' "
    "accuracy (detection: AP_f) is back at half the base model's; as fast as the base "
    "means the class is still in the weights, as slow as the retrained model means it is "
    "gone",
}


@dataclass
class ModelAudit:
    """The audit numbers of one model.

    Attributes:
        role: one of :data:`MODEL_ROLES`.
        source: where the model came from (a file, a run folder, "in memory").
        membership: ``{attack: MembershipResult}`` on the forgotten classes.
        probe: linear probe of forgotten vs retained classes on frozen features.
        forget_accuracy: accuracy (%) on held-out samples (or boxes) of the forgotten
            classes, for context.
        relearn: fine-tuning steps until the forgotten classes come back (None: not
            measured).
        forget_ap: detection: held-out COCO box AP (%) of the forgotten classes.
        retain_ap: detection: the same of the retained classes.
        object_fate: detection: the evaluator's object fate of the forgotten objects on
            those images (``score_thresh``, ``iou_thresh``, ``per_class``, ``total``).
    """

    role: str
    source: str
    membership: dict[str, MembershipResult]
    probe: ProbeResult | None = None
    forget_accuracy: float | None = None
    relearn: RelearnResult | None = None
    forget_ap: float | None = None
    retain_ap: float | None = None
    object_fate: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.role not in MODEL_ROLES:
            raise ValueError(f"model role must be one of {MODEL_ROLES}, got {self.role!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "role": self.role,
            "source": self.source,
            "membership": {k: v.to_dict() for k, v in self.membership.items()},
            "probe": None if self.probe is None else self.probe.to_dict(),
            "forget_accuracy": self.forget_accuracy,
            "relearn": None if self.relearn is None else self.relearn.to_dict(),
            "forget_ap": self.forget_ap,
            "retain_ap": self.retain_ap,
            "object_fate": self.object_fate,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ModelAudit:
        """Inverse of :meth:`to_dict`."""
        return cls(
            role=doc["role"],
            source=doc.get("source", ""),
            membership={
                k: MembershipResult.from_dict(v) for k, v in doc.get("membership", {}).items()
            },
            probe=None if doc.get("probe") is None else ProbeResult.from_dict(doc["probe"]),
            forget_accuracy=doc.get("forget_accuracy"),
            relearn=None if doc.get("relearn") is None else RelearnResult.from_dict(doc["relearn"]),
            forget_ap=doc.get("forget_ap"),
            retain_ap=doc.get("retain_ap"),
            object_fate=doc.get("object_fate"),
        )

    def fate_shares(self) -> str | None:
        """``"12.0 / 8.0 / 80.0"``: detected / re-labelled / gone % of the forgotten
        objects (None: not measured)."""
        total = None if self.object_fate is None else self.object_fate.get("total")
        if not total or not total.get("objects"):
            return None
        return " / ".join(f"{total[f'{k}_pct']:.1f}" for k in ("detected", "relabelled", "gone"))


def membership_verdict(
    forgotten_auc: float,
    reference_auc: float | None,
    tolerance: float = 0.05,
    attack: str = "loss",
) -> tuple[bool, str]:
    """Whether the forgotten model's MIA AUC is within ``tolerance`` of the reference.

    Args:
        forgotten_auc: AUC against the model after forgetting.
        reference_auc: AUC against a retrained model; None compares with 0.5 (chance).
        tolerance: allowed absolute difference.
        attack: the attack's name, for the sentence.

    Returns:
        ``(within, sentence)``; the sentence says the result plainly either way.
    """
    ref = 0.5 if reference_auc is None else reference_auc
    what = "chance (no retrained model audited)" if reference_auc is None else "retrain"
    diff = abs(forgotten_auc - ref)
    within = diff <= tolerance
    head = (
        f"MIA AUC ({attack} attack) {forgotten_auc:.3f} after forgetting vs {ref:.3f} for {what}: "
    )
    if within:
        tail = f"within {tolerance:g} (difference {diff:.3f}) — no more membership signal " + (
            "than in a model that never saw these classes."
            if reference_auc is not None
            else "than a coin flip."
        )
    else:
        tail = (
            f"NOT within {tolerance:g} (difference {diff:.3f}) — an attacker can still tell "
            "the forgotten classes' training samples from unseen ones better than "
            + ("against a retrained model." if reference_auc is not None else "chance.")
        )
    return within, head + tail


@dataclass
class AuditReport:
    """A forgetting audit: what was compared on which data, per-model numbers, a verdict.

    Attributes:
        task: ``"classification"`` or ``"detection"``.
        forget_classes: names of the forgotten classes.
        models: ``{role: ModelAudit}`` (``base`` and ``forgotten`` at least).
        data: what the members, non-members and probe samples were, and their counts.
        headline_attack: the attack the verdict uses (one of :data:`HEADLINE_ATTACKS`).
        tolerance: allowed AUC difference to the reference.
        seconds: wall time of the audit.
        created: ISO time stamp.
        command: the command line that made it, when known.
    """

    task: str
    forget_classes: list[str]
    models: dict[str, ModelAudit]
    data: dict[str, Any] = field(default_factory=dict)
    headline_attack: str = "loss"
    tolerance: float = 0.05
    seconds: float = 0.0
    created: str = field(default_factory=lambda: _dt.datetime.now().isoformat(timespec="seconds"))
    command: str = ""

    def __post_init__(self) -> None:
        for role in ("base", "forgotten"):
            if role not in self.models:
                raise ValueError(f"an audit needs a {role!r} model; got {sorted(self.models)}")
        if self.headline_attack not in HEADLINE_ATTACKS:
            raise ValueError(
                f"headline_attack must be one of {HEADLINE_ATTACKS}, got {self.headline_attack!r}"
            )
        missing = [r for r in ("base", "forgotten") if self.auc(r) is None]
        if missing:
            raise ValueError(
                f"the headline attack {self.headline_attack!r} was not run on {missing}"
            )

    # ------------------------------------------------------------------ derived
    def auc(self, role: str, attack: str | None = None) -> float | None:
        """The MIA AUC of ``role`` (headline attack by default); None if not audited."""
        audit = self.models.get(role)
        result = None if audit is None else audit.membership.get(attack or self.headline_attack)
        return None if result is None else result.auc

    @property
    def reference(self) -> str:
        """``"retrained"`` when a retrained model was audited, else ``"chance"``."""
        return "retrained" if "retrained" in self.models else "chance"

    @property
    def reference_auc(self) -> float:
        """The AUC the forgotten model is compared with (0.5 for chance)."""
        return self.auc("retrained") if self.reference == "retrained" else 0.5

    @property
    def within_tolerance(self) -> bool:
        """The acceptance check: forgotten AUC within ``tolerance`` of the reference."""
        return abs(self.auc("forgotten") - self.reference_auc) <= self.tolerance

    @property
    def verdict(self) -> str:
        """Plain-language verdict: membership check first, then context and the probe."""
        retrained = self.reference == "retrained"
        _, sentence = membership_verdict(
            self.auc("forgotten"),
            self.reference_auc if retrained else None,
            self.tolerance,
            self.headline_attack,
        )
        parts = [sentence]
        head = self.models["forgotten"].membership[self.headline_attack]
        if head.auc_std_error > self.tolerance / 2:
            parts.append(
                f"With {head.members} members and {head.nonmembers} non-members the AUC's "
                f"standard error is {head.auc_std_error:.3f}, too large for a "
                f"{self.tolerance:g} tolerance: audit more samples before trusting either "
                "outcome."
            )
        base_auc = self.auc("base")
        base_diff = abs(base_auc - self.reference_auc)
        if base_diff <= self.tolerance:
            parts.append(
                f"Before forgetting the AUC was already {base_auc:.3f}, also within "
                f"{self.tolerance:g} of the reference: on this data the attack finds little "
                "membership signal even in the base model, so passing this check proves little."
            )
        else:
            parts.append(
                f"Before forgetting the AUC was {base_auc:.3f} ({base_diff:.3f} from the "
                "reference), so the attack does detect training on these classes."
            )
        parts.extend(self._probe_sentences())
        parts.extend(self._detection_sentences())
        parts.extend(self._relearn_sentences())
        return " ".join(parts)

    def _detection_sentences(self) -> list[str]:
        ap = {r: a for r, a in self.models.items() if a.forget_ap is not None}
        if "forgotten" not in ap:
            return []
        images = self.data.get("heldout_ap_images")
        where = f"on {images} held-out images" if images else "on held-out images"
        others = ", ".join(
            f"{ap[role].forget_ap:.1f} {label}"
            for role, label in (("base", "before"), ("retrained", "retrained"))
            if role in ap
        )
        parts = [
            f"Run as a detector {where} holding the forgotten classes, their box AP (AP_f) "
            f"is {ap['forgotten'].forget_ap:.1f} after forgetting"
            + (f" ({others})" if others else "")
            + (
                f", the other classes' AP_r {ap['forgotten'].retain_ap:.1f}."
                if ap["forgotten"].retain_ap is not None
                else "."
            )
        ]
        fates = {r: a.object_fate for r, a in ap.items() if a.fate_shares() is not None}
        if "forgotten" in fates:
            fate = fates["forgotten"]
            total = fate["total"]
            relabelled_as = ", ".join(f"{k} {v}" for k, v in total["relabelled_as"].items())
            others = ", ".join(
                f"{ap[role].fate_shares()} {label}"
                for role, label in (("base", "before"), ("retrained", "retrained"))
                if role in fates
            )
            parts.append(
                f"Of their {total['objects']} objects, {total['detected_pct']:.1f}% are still "
                f"detected as their class, {total['relabelled_pct']:.1f}% re-labelled as "
                "another class"
                + (f" ({relabelled_as})" if relabelled_as else "")
                + f" and {total['gone_pct']:.1f}% not detected at all (score >= "
                f"{fate['score_thresh']:g}, IoU >= {fate['iou_thresh']:g})"
                + (f"; detected / re-labelled / gone %: {others}." if others else ".")
            )
        run_fate = self.data.get("run_object_fate")
        if isinstance(run_fate, Mapping) and (run_fate.get("total") or {}).get("objects"):
            total = run_fate["total"]
            parts.append(
                f"The forgetting run's own evaluation ({run_fate.get('source', 'its report')}) "
                f"counted {total['detected_pct']:.1f}% detected, {total['relabelled_pct']:.1f}% "
                f"re-labelled and {total['gone_pct']:.1f}% gone of {total['objects']} objects."
            )
        return parts

    def _relearn_sentences(self) -> list[str]:
        relearn = {r: a.relearn for r, a in self.models.items() if a.relearn is not None}
        if "forgotten" not in relearn:
            return []
        r = relearn["forgotten"]
        others = ", ".join(
            f"{relearn[role].describe()} {label}"
            for role, label in (("base", "before"), ("retrained", "retrained"))
            if role in relearn
        )
        if r.metric == "AP_f":
            what = (
                f"fine-tuning every weight on {r.shots} training images holding each forgotten "
                f"class (and {r.retain_shots} per retained class), lr {r.lr:g}, batch "
                f"{r.batch_size}, until their held-out box AP is back at "
                f"{r.target_accuracy:.1f}, half of the base model's"
            )
        else:
            what = (
                f"fine-tuning on {r.shots} images per forgotten class, lr {r.lr:g}, batch "
                f"{r.batch_size}, until held-out accuracy on them is back at "
                f"{r.target_accuracy:.1f}%, half of the base model's"
            )
        head = f"Relearn time ({what}): {r.describe()} after forgetting" + (
            f" ({others})." if others else "."
        )
        retrained = relearn.get("retrained")
        if retrained is None:
            return [head]
        if r.steps is None:
            tail = (
                "Neither comes back within the budget: by this test the classes are as gone "
                "as in a model that never learned them."
                if retrained.steps is None
                else "It comes back more slowly than in a model that never learned them."
            )
        elif retrained.steps is None or r.steps < retrained.steps:
            tail = (
                "It comes back faster than in a model that never learned these classes: "
                "forgetting hid them more than it removed them."
            )
        else:
            tail = "It comes back no faster than in a model that never learned them."
        return [head, tail]

    def _probe_sentences(self) -> list[str]:
        probes = {r: a.probe for r, a in self.models.items() if a.probe is not None}
        if "forgotten" not in probes:
            return []
        after = probes["forgotten"].balanced_accuracy
        others = ", ".join(
            f"{probes[r].balanced_accuracy:.3f} {label}"
            for r, label in (("base", "before"), ("retrained", "retrained"))
            if r in probes
        )
        head = (
            "Linear probe on frozen features (forgotten vs retained classes): balanced "
            f"accuracy {after:.3f} after forgetting" + (f" ({others})." if others else ".")
        )
        if "retrained" in probes:
            gap = after - probes["retrained"].balanced_accuracy
            if gap <= self.tolerance:
                tail = (
                    "The features separate the forgotten classes no better than those of a "
                    "model that never learned them."
                )
            else:
                tail = (
                    f"The features still separate the forgotten classes better than a "
                    f"retrained model's (by {gap:.3f}): forgetting changed the outputs more "
                    "than the representation."
                )
        elif after >= 0.75:
            tail = (
                "The forgotten classes are still linearly separable in the features; without "
                "a retrained model this cannot tell residual knowledge from features that "
                "separate unseen classes anyway."
            )
        else:
            tail = "The forgotten classes are hard to separate linearly in the features."
        return [head, tail]

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report, derived fields (verdict, reference, check) included."""
        return {
            "format_version": _FORMAT_VERSION,
            "task": self.task,
            "forget_classes": list(self.forget_classes),
            "headline_attack": self.headline_attack,
            "tolerance": self.tolerance,
            "reference": self.reference,
            "reference_auc": self.reference_auc,
            "forgotten_auc": self.auc("forgotten"),
            "base_auc": self.auc("base"),
            "within_tolerance": self.within_tolerance,
            "verdict": self.verdict,
            "glossary": dict(COLUMN_MEANINGS),
            "models": {r: self.models[r].to_dict() for r in MODEL_ROLES if r in self.models},
            "data": self.data,
            "seconds": self.seconds,
            "created": self.created,
            "command": self.command,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> AuditReport:
        """A report from :meth:`to_dict` output (derived fields are recomputed).

        Raises:
            ValueError: the document is not an audit report.
        """
        try:
            return cls(
                task=doc["task"],
                forget_classes=list(doc["forget_classes"]),
                models={r: ModelAudit.from_dict(m) for r, m in doc["models"].items()},
                data=dict(doc.get("data", {})),
                headline_attack=doc.get("headline_attack", "loss"),
                tolerance=float(doc.get("tolerance", 0.05)),
                seconds=float(doc.get("seconds", 0.0)),
                created=doc.get("created", ""),
                command=doc.get("command", ""),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a det_forget audit report: missing or bad field {e}") from e

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON report atomically; returns the path."""
        path = Path(path)
        with atomic_write(path) as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        return path

    def format_table(self) -> str:
        """A fixed-width table of the numbers and the verdict, for terminals and logs."""
        attacks = [
            a for a in HEADLINE_ATTACKS if any(a in m.membership for m in self.models.values())
        ]
        relearn = any(m.relearn is not None for m in self.models.values())
        ap = any(m.forget_ap is not None for m in self.models.values())
        fate = any(m.fate_shares() is not None for m in self.models.values())
        header = (
            ["model"]
            + [f"MIA AUC {a}" for a in attacks]
            + ["best attack acc", "probe bal. acc", "probe AUC", "forget acc %"]
            + (["AP_f", "AP_r"] if ap else [])
            + (["fate det/relab/gone %"] if fate else [])
            + (["relearn steps"] if relearn else [])
        )
        rows = []
        for role in MODEL_ROLES:
            if role not in self.models:
                continue
            m = self.models[role]
            head = m.membership.get(self.headline_attack)
            row = [role]
            for a in attacks:
                r = m.membership.get(a)
                row.append("-" if r is None else f"{r.auc:.3f} ± {r.auc_std_error:.3f}")
            row.append("-" if head is None else f"{head.best_balanced_accuracy:.3f}")
            row.append("-" if m.probe is None else f"{m.probe.balanced_accuracy:.3f}")
            row.append("-" if m.probe is None else f"{m.probe.auc:.3f}")
            row.append("-" if m.forget_accuracy is None else f"{m.forget_accuracy:.1f}")
            if ap:
                row.append("-" if m.forget_ap is None else f"{m.forget_ap:.1f}")
                row.append("-" if m.retain_ap is None else f"{m.retain_ap:.1f}")
            if fate:
                row.append(m.fate_shares() or "-")
            if relearn:
                row.append("-" if m.relearn is None else m.relearn.describe())
            rows.append(row)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
        lines.insert(1, "-" * len(lines[0]))
        status = "PASS" if self.within_tolerance else "FAIL"
        calibrated = self.models["base"].membership.get(CALIBRATED_ATTACK)
        lines += [
            "",
            *(f"{name}: {COLUMN_MEANINGS[name]}" for name in header[1:] if name in COLUMN_MEANINGS),
            *([f"calibrated attack: {calibrated.attack}"] if calibrated else []),
            "",
            f"forget classes: {', '.join(self.forget_classes)}",
            f"check ({status}): {self.verdict}",
        ]
        return "\n".join(lines)


def load_report(path: str | os.PathLike) -> AuditReport:
    """Read an audit JSON (a file, or a run folder holding :data:`AUDIT_FILE_NAME`).

    Raises:
        FileNotFoundError: no report at ``path``.
        ValueError: the file is not valid JSON of an audit report.
    """
    path = Path(path)
    if path.is_dir():
        path = path / AUDIT_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no audit report at {path}")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a det_forget audit report (a JSON object expected)")
    return AuditReport.from_dict(doc)
