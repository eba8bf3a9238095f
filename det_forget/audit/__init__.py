"""Forgetting audit: does a forgotten model still leak or encode the forgotten classes?

* :mod:`.membership`: loss and confidence threshold attacks (membership inference) and a
  rank AUC with ties;
* :mod:`.calibrated`: the calibrated (LiRA-style) attack, each sample's score against
  reference models' scores; :mod:`.reference` trains those references on random halves;
* :mod:`.testbed`: a small training set a model memorises, where membership is measurable
  (not imported here: ``python -m det_forget.audit.testbed`` runs it);
* :mod:`.relearn`: fine-tuning steps until a forgotten class's accuracy is back (the
  loop and stopping rule, and the classifier version); :mod:`.detector_relearn`: a
  detector's held-out AP_f / object fate and its relearn time;
* :mod:`.probe`: a linear probe (logistic regression in torch) on frozen features;
* :mod:`.report`: :class:`AuditReport` (JSON, table, plain-language verdict);
* :func:`audit_classifier` / :func:`audit_detector`: base vs forgotten (vs retrained)
  models on one task's data.

``tools/audit.py`` is the command line; ``docs/audit.md`` explains every number.
"""

from .calibrated import (
    CALIBRATED_ATTACK,
    CALIBRATION_MODES,
    calibrated_attack,
    calibration_mode,
    lira_scores,
    scaled_logit_confidence,
)
from .classifier import audit_classifier, classifier_features
from .detector import BoxOutputs, audit_detector, box_outputs, select_images
from .detector_relearn import ForgetAP, HeldoutForgetAP, detector_relearn_time, few_shot_images
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
from .reference import (
    ReferenceModels,
    balanced_keep_masks,
    calibrated_classifier_attack,
    train_reference_classifiers,
)
from .relearn import RelearnResult, check_relearn_arguments, relearn_time, run_relearn
from .report import (
    AUDIT_FILE_NAME,
    MODEL_ROLES,
    AuditReport,
    ModelAudit,
    load_report,
    membership_verdict,
)

__all__ = [
    "CALIBRATED_ATTACK",
    "CALIBRATION_MODES",
    "calibrated_attack",
    "calibration_mode",
    "lira_scores",
    "scaled_logit_confidence",
    "ReferenceModels",
    "balanced_keep_masks",
    "calibrated_classifier_attack",
    "train_reference_classifiers",
    "RelearnResult",
    "check_relearn_arguments",
    "relearn_time",
    "run_relearn",
    "ForgetAP",
    "HeldoutForgetAP",
    "detector_relearn_time",
    "few_shot_images",
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
