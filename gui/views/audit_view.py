"""The forgetting audit of a run, read-only: MIA AUC, probe (and, when audited, the
calibrated attack, relearn time and, for detectors, held-out AP and object fate) per
model, and the verdict.

Shows the ``audit.json`` of a run folder (written by ``tools/audit.py`` or by the app's
"Run audit"), see ``docs/audit.md`` for what each number means.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt, QTransposeProxyModel, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from det_forget.audit import (
    AUDIT_FILE_NAME,
    CALIBRATED_ATTACK,
    MODEL_ROLES,
    AuditReport,
    load_report,
)

from ..models.table_base import ColumnsTableModel

__all__ = ["AuditTableModel", "AuditView"]

_PLACEHOLDER = (
    "No audit for this run yet. Run the audit here (detection) or with "
    "tools/audit.py, which writes audit.json into the run folder."
)


def audit_caveats(report: AuditReport) -> list[str]:
    """What the verdict says limits a passed membership check (short, for the headline).

    The same conditions :attr:`AuditReport.verdict` words at length: a base model already
    near the reference, an AUC too noisy for the tolerance, features that still separate
    the forgotten classes.
    """
    out = []
    if abs(report.auc("base") - report.reference_auc) <= report.tolerance:
        out.append("the base model was already near the reference")
    head = report.models["forgotten"].membership.get(report.headline_attack)
    if head is not None and head.auc_std_error > report.tolerance / 2:
        out.append("too few samples for the tolerance")
    probes = {r: a.probe for r, a in report.models.items() if a.probe is not None}
    if "forgotten" in probes:
        after = probes["forgotten"].balanced_accuracy
        if "retrained" in probes:
            if after - probes["retrained"].balanced_accuracy > report.tolerance:
                out.append(f"the probe still separates the forgotten classes ({after:.3f})")
        elif after >= 0.75:
            out.append(f"the probe still separates the forgotten classes ({after:.3f})")
    return out


def audit_headline(report: AuditReport) -> tuple[str, str]:
    """``(word, colour)``: FAIL (red) when the check fails, INCONCLUSIVE (amber) when it
    passes with a caveat of the verdict, PASS (green) only when nothing qualifies it."""
    if not report.within_tolerance:
        return "FAIL", "#cf222e"
    if audit_caveats(report):
        return "INCONCLUSIVE", "#9a6700"
    return "PASS", "#1a7f37"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


class AuditTableModel(ColumnsTableModel):
    """One row per audited model (base, forgotten, retrained)."""

    # Short titles so the table fits the side panel; each has a tooltip.
    COLUMNS = (
        "Model",
        "AUC loss",
        "AUC conf.",
        "Attack acc.",
        "Probe acc.",
        "Probe AUC",
        "Forget %",
        "AUC calib.",
        "Relearn",
        "AP_f",
        "AP_r",
        "Fate d/r/g %",
    )
    #: Columns a report may lack (tools/audit.py --references / --relearn-shots, and the
    #: detection-only AP and object fate): their rows are hidden when no model has them.
    OPTIONAL_COLUMNS = (7, 8, 9, 10, 11)
    TOOLTIPS = (
        "Audited model",
        "Membership-inference AUC of the loss attack ± its standard error",
        "Membership-inference AUC of the confidence attack",
        "Best balanced accuracy of the headline attack",
        "Linear probe's balanced accuracy (forgotten vs retained classes)",
        "Linear probe's AUC",
        "Accuracy on the forgotten classes, %",
        "Membership-inference AUC of the calibrated attack (each image against reference "
        "models that did not train on it) ± its standard error",
        "Fine-tuning steps (and images seen) until the forgotten classes are back at half "
        "the base model's accuracy, for detectors their box AP (0: never lost them)",
        "Detection: box AP (%) of the forgotten classes on held-out images holding them",
        "Detection: box AP (%) of the retained classes on those images",
        "Detection: the forgotten objects on those images still detected / re-labelled as "
        "another class / not detected, % (the evaluator's object fate)",
    )

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows: list[list[str]] = []
        self._tips: list[str] = []

    def set_report(self, report: AuditReport | None) -> None:
        """Show ``report`` (None: empty table)."""
        self.beginResetModel()
        self._rows, self._tips = [], []
        if report is not None:
            for role in MODEL_ROLES:
                m = report.models.get(role)
                if m is None:
                    continue
                loss = m.membership.get("loss")
                conf = m.membership.get("confidence")
                head = m.membership.get(report.headline_attack)
                calib = m.membership.get(CALIBRATED_ATTACK)
                self._rows.append(
                    [
                        role,
                        "–" if loss is None else f"{loss.auc:.3f} ± {loss.auc_std_error:.3f}",
                        "–" if conf is None else f"{conf.auc:.3f} ± {conf.auc_std_error:.3f}",
                        _fmt(None if head is None else head.best_balanced_accuracy),
                        _fmt(None if m.probe is None else m.probe.balanced_accuracy),
                        _fmt(None if m.probe is None else m.probe.auc),
                        _fmt(m.forget_accuracy, 1),
                        "–" if calib is None else f"{calib.auc:.3f} ± {calib.auc_std_error:.3f}",
                        "–" if m.relearn is None else m.relearn.describe(),
                        _fmt(m.forget_ap, 1),
                        _fmt(m.retain_ap, 1),
                        m.fate_shares() or "–",
                    ]
                )
                self._tips.append(m.source)
        self.endResetModel()

    def _row_count(self) -> int:
        return len(self._rows)

    def column_has_data(self, column: int) -> bool:
        """Whether any model has a value in ``column``."""
        return any(row[column] != "–" for row in self._rows)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return self.TOOLTIPS[section]
        if orientation == Qt.Orientation.Vertical and role == Qt.ItemDataRole.DisplayRole:
            return self._rows[section][0]  # the model's role (a column once transposed)
        return super().headerData(section, orientation, role)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._rows[index.row()][index.column()]
        if role == Qt.ItemDataRole.ToolTipRole and index.column() == 0:
            return self._tips[index.row()]
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class AuditView(QWidget):
    """The audit tab: pass/fail line, the verdict, the numbers, what data they came from.

    Signals:
        run_requested(): "Run audit" was clicked.
    """

    run_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.report: AuditReport | None = None
        self.source_path: str | None = None
        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setWordWrap(True)
        self.status.setMinimumWidth(10)  # wraps instead of widening the side panel
        self.verdict = QLabel(_PLACEHOLDER)
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table_model = AuditTableModel(self)
        # Shown transposed (a row per number, a column per model): three narrow columns
        # fit the side panel where seven did not.
        self.transposed = QTransposeProxyModel(self)
        self.transposed.setSourceModel(self.table_model)
        self.table = QTableView()
        self.table.setModel(self.transposed)
        self.table_model.modelReset.connect(self._hide_rows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setMinimumSectionSize(30)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setMinimumWidth(10)
        self.verdict.setMinimumWidth(10)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.run_button = QPushButton("Run audit")
        self.run_button.setToolTip(
            "Membership inference and a box-feature probe on the forgotten classes, "
            "before vs after forgetting (writes audit.json into the run folder)"
        )
        self.run_button.setEnabled(False)
        self.run_button.clicked.connect(self.run_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.verdict)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)

    def _hide_rows(self) -> None:
        """Hide the role row (it is the header) and the measures no model has."""
        self.table.setRowHidden(0, True)
        for column in AuditTableModel.OPTIONAL_COLUMNS:
            self.table.setRowHidden(column, not self.table_model.column_has_data(column))

    def set_report(self, report: AuditReport | None, source: str | None = None) -> None:
        """Show ``report`` (None: the placeholder); ``source`` is the file it came from."""
        self.report, self.source_path = report, source
        self.table_model.set_report(report)
        if report is None:
            self.status.setText("")
            self.verdict.setText(_PLACEHOLDER)
            self.details.setText("")
            return
        word, colour = audit_headline(report)
        caveats = audit_caveats(report) if report.within_tolerance else []
        self.status.setText(
            f"<b style='color:{colour}'>{word}</b>: forgotten MIA AUC "
            f"({report.headline_attack}) "
            f"{report.auc('forgotten'):.3f} vs {report.reference_auc:.3f} "
            f"({report.reference}), tolerance {report.tolerance:g}"
            + (f"; but {'; '.join(caveats)}" if caveats else "")
        )
        self.verdict.setText(report.verdict)
        data = report.data
        lines = [
            f"Task: {report.task}; forgotten classes: {', '.join(report.forget_classes)}",
            f"Members: {data.get('members', '?')}",
            f"Non-members: {data.get('nonmembers', '?')}",
            f"Probe: {data.get('probe', '?')}",
        ]
        if data.get("heldout_ap"):
            lines.append(f"AP and object fate: {data['heldout_ap']}")
        relearn = data.get("relearn")
        if isinstance(relearn, dict):
            lines.append(
                f"Relearn: {relearn.get('shots')} shots, budget {relearn.get('steps')} steps, "
                f"lr {relearn.get('lr')}, batch {relearn.get('batch_size')}; trained on "
                f"{relearn.get('train', '?')}"
            )
        if source:
            lines.append(f"Report: {source}")
        self.details.setText("\n".join(lines))

    def show_error(self, message: str) -> None:
        """Show why no report could be shown (an unreadable file, a failed audit)."""
        self.set_report(None)
        self.verdict.setText(message)

    def load_run_dir(self, path: str | Path | None) -> bool:
        """Show the run's ``audit.json`` when it has one; the placeholder otherwise.

        Args:
            path: a run folder, a file inside one, or None.

        Returns:
            Whether a report is shown.
        """
        if path is None:
            self.set_report(None)
            return False
        folder = Path(path)
        if not folder.is_dir():
            folder = folder.parent
        report_path = folder / AUDIT_FILE_NAME
        if not report_path.is_file():
            self.set_report(None)
            return False
        try:
            report = load_report(report_path)
        except (OSError, ValueError) as e:
            self.show_error(f"Cannot read {report_path}: {e}")
            return False
        self.set_report(report, str(report_path))
        return True

    def set_running(self, running: bool) -> None:
        """Disable the button and say so while an audit runs."""
        self.run_button.setText("Auditing …" if running else "Run audit")
        if running:
            self.run_button.setEnabled(False)

    def cell_text(self, row: int, column: int) -> str:
        """The text of a table cell (tests and screenshots)."""
        return str(self.table_model.data(self.table_model.index(row, column)))
