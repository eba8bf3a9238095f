"""Measuring the models: AP per class before forgetting, and the audit of a result.

Both run on the app's :class:`~gui.workers.TaskRunner` (the thread that owns the held
models), and report on the GUI thread through signals.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from det_forget.engine.inference import evaluate_per_class_ap
from det_forget.lora import disabled_adapters

from ..session import SOURCE_BASE, ModelSession
from ..workers import TaskRunner
from .errors import ActionRefused

__all__ = ["AuditController"]

#: What the audit report records as the command that made it.
AUDIT_COMMAND = "det_forget app: Audit ▸ Run audit"


class AuditController(QObject):
    """Evaluates the before model and audits a forgetting result, in the background.

    Args:
        runner: the app's background runner.
        parent: owning QObject.

    Signals:
        evaluated(object): ``{class name: AP}`` of the before model.
        audited(object, str): the :class:`~det_forget.audit.AuditReport` and the path of
            its ``audit.json``.
        evaluate_failed(str, object, str): the evaluation raised (title, exception,
            traceback).
        audit_failed(object, str): the audit raised (exception, traceback).
        running_changed(bool): an audit started or ended.
    """

    evaluated = Signal(object)
    audited = Signal(object, str)
    evaluate_failed = Signal(str, object, str)
    audit_failed = Signal(object, str)
    running_changed = Signal(bool)

    def __init__(self, runner: TaskRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.auditing = False
        #: forget-class boxes per side the app's audit uses (``tools/audit.py`` for more)
        self.max_samples = 300

    def evaluate_before(self, session: ModelSession | None) -> str:
        """COCO AP per class of the before model on ``DATASETS.TEST[0]`` (``evaluated``).

        Returns:
            The dataset evaluated on.

        Raises:
            ActionRefused: no model, or a config without a test dataset.
        """
        if session is None:
            raise ActionRefused("No model", "Load a model first.")
        if not len(session.cfg.DATASETS.TEST):
            raise ActionRefused("No dataset", "The config has no DATASETS.TEST to evaluate on.")
        dataset = session.cfg.DATASETS.TEST[0]
        cfg = session.loaded.cfg.clone()
        cfg.defrost()
        cfg.DATALOADER.NUM_WORKERS = 0  # no forked loader workers from a Qt process

        def work():
            model = session.loaded.model
            if session.before_source() == SOURCE_BASE and session.has_adapters:
                with disabled_adapters(model):
                    return evaluate_per_class_ap(cfg, model, dataset)
            return evaluate_per_class_ap(cfg, model, dataset)

        self.runner.submit(
            work,
            self.evaluated.emit,
            lambda e, tb: self.evaluate_failed.emit(f"Cannot evaluate on {dataset}", e, tb),
            label=f"Evaluating AP on {dataset}",
        )
        return dataset

    def run_audit(self, session: ModelSession | None, forget_classes: Sequence[int]) -> None:
        """Audit the last job (membership inference, box-feature probe) in the background.

        Base = the model the job started from, forgotten = its result; members are boxes
        of ``DATASETS.TRAIN[0]``, non-members of ``DATASETS.TEST[0]``. The report goes to
        ``audit.json`` in the job's folder (``audited``).

        Args:
            session: the loaded model and its forgetting result.
            forget_classes: contiguous ids of the forgotten classes.

        Raises:
            ActionRefused: no result to audit, or a config without train/test datasets.
        """
        if session is None or session.result is None:
            raise ActionRefused("Nothing to audit", "Run a forgetting job first.")
        cfg = session.result_cfg
        if not len(cfg.DATASETS.TRAIN) or not len(cfg.DATASETS.TEST):
            raise ActionRefused("No dataset", "The audit needs DATASETS.TRAIN and DATASETS.TEST.")
        forget = list(forget_classes)
        run_dir = Path(session.result.output_dir)
        max_samples = self.max_samples

        def work():
            from detectron2.data import DatasetCatalog

            from det_forget.audit import AUDIT_FILE_NAME, audit_detector

            report = audit_detector(
                session.loaded.model,
                session.result.model,
                cfg=session.loaded.cfg,
                member_dicts=DatasetCatalog.get(cfg.DATASETS.TRAIN[0]),
                nonmember_dicts=DatasetCatalog.get(cfg.DATASETS.TEST[0]),
                forget_classes=forget,
                class_names=session.class_names,
                max_samples=max_samples,
                sources={"base": session.loaded.weights, "forgotten": str(run_dir)},
                nonmember_dataset=cfg.DATASETS.TEST[0],
            )
            report.command = AUDIT_COMMAND
            return report, str(report.save(run_dir / AUDIT_FILE_NAME))

        self._set_auditing(True)
        self.runner.submit(
            work,
            self._on_audited,
            self._on_audit_failed,
            label="Auditing the forgetting result",
            on_cancel=lambda: self._set_auditing(False),
        )

    def _set_auditing(self, auditing: bool) -> None:
        self.auditing = auditing
        self.running_changed.emit(auditing)

    def _on_audited(self, payload) -> None:
        report, path = payload
        self._set_auditing(False)
        self.audited.emit(report, path)

    def _on_audit_failed(self, error: BaseException, tb: str) -> None:
        self._set_auditing(False)
        self.audit_failed.emit(error, tb)
