"""Forgetting audit: does a forgotten model still leak or encode the forgotten classes?

* :mod:`.membership`: loss and confidence threshold attacks (membership inference) and a
  rank AUC with ties;
* :mod:`.probe`: a linear probe (logistic regression in torch) on frozen features;
* :mod:`.report`: :class:`AuditReport` (JSON, table, plain-language verdict);
* :func:`audit_classifier` / :func:`audit_detector`: base vs forgotten (vs retrained)
  models on one task's data.

``tools/audit.py`` is the command line; ``docs/audit.md`` explains every number.
"""

from .classifier import audit_classifier, classifier_features
from .detector import BoxOutputs, audit_detector, box_outputs, select_images
from .membership import (
    ATTACKS,
    MembershipResult,
    auc_standard_error,
    best_threshold,
    membership_inference,
    membership_scores,
    rank_auc,
    threshold_attack,
)
from .probe import ProbeResult, balanced_accuracy, fit_logistic_regression, linear_probe
from .report import (
    AUDIT_FILE_NAME,
    MODEL_ROLES,
    AuditReport,
    ModelAudit,
    load_report,
    membership_verdict,
)

__all__ = [
    "audit_classifier",
    "classifier_features",
    "BoxOutputs",
    "audit_detector",
    "box_outputs",
    "select_images",
    "ATTACKS",
    "MembershipResult",
    "auc_standard_error",
    "best_threshold",
    "membership_inference",
    "membership_scores",
    "rank_auc",
    "threshold_attack",
    "ProbeResult",
    "balanced_accuracy",
    "fit_logistic_regression",
    "linear_probe",
    "AUDIT_FILE_NAME",
    "MODEL_ROLES",
    "AuditReport",
    "ModelAudit",
    "load_report",
    "membership_verdict",
]
