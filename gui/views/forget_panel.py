"""Forgetting controls: settings, Forget/Cancel, progress with ETA, loss curve, AP and log.

The method menu lists what the method registry (:mod:`det_forget.forgetting.methods`)
says the loaded model's task type runs; :meth:`ForgetPanel.set_methods` rebuilds it when
a model is loaded. Each item's tooltip is the method's description, the paper or baseline
it reproduces, and where its adapters go.
"""

from __future__ import annotations

import datetime as _dt
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from det_forget.engine import JobProgress
from det_forget.forgetting.methods import ForgetMethod

from ..models import APTableModel
from .loss_plot import LossPlot

__all__ = ["ForgetPanel", "ForgetSettings", "format_eta", "method_tooltip"]

#: How the menu names each adapter place of the registry.
_ADAPTER_PLACES = {
    "ffn": "LoRA adapters on the FFN layers (FORGET.LORA.TARGET_MODULES)",
    "qkv": "LoRA adapters on the q/k/v projections (FORGET.LORA.QKV_MODULES)",
    "none": "no adapters: the full weights train",
}


def format_eta(seconds: float | None) -> str:
    """``h:mm:ss`` (``--:--`` when unknown)."""
    if seconds is None:
        return "--:--"
    return str(_dt.timedelta(seconds=round(max(seconds, 0.0))))


def method_tooltip(method: ForgetMethod) -> str:
    """``description — reference`` and, on a second line, where the adapters go."""
    return f"{method.description} — {method.reference}\n{_ADAPTER_PLACES[method.adapters]}"


@dataclass(frozen=True)
class ForgetSettings:
    """What the panel's settings ask of a job (``det_forget.engine.job_config``).

    Attributes:
        method: ``FORGET.METHOD`` (empty before a model is loaded).
        max_iter: ``FORGET.MAX_ITER``.
        data_ratio: ``FORGET.DATA_RATIO``.
        base_lr: ``SOLVER.BASE_LR``.
        output_root: parent folder of the job's ``OUTPUT_DIR`` (empty: the app's default).
        extra_options: "More options" as typed: ``KEY VALUE`` pairs, shell-quoted.
    """

    method: str
    max_iter: int
    data_ratio: float
    base_lr: float
    output_root: str = ""
    extra_options: str = ""

    def extra_opts(self) -> list[str]:
        """``extra_options`` as a ``KEY VALUE`` list.

        Raises:
            ValueError: unbalanced quotes, or not ``KEY VALUE`` pairs.
        """
        extra = shlex.split(self.extra_options)
        if len(extra) % 2:
            raise ValueError(
                f"'More options' must be KEY VALUE pairs; got an odd number of items: {extra}"
            )
        return extra


class ForgetPanel(QWidget):
    """Everything about running a forgetting job.

    Signals:
        forget_requested(): the Forget button.
        cancel_requested(): the Cancel button.
    """

    forget_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.method = QComboBox()
        self.method.setPlaceholderText("load a model first")
        self.method.setToolTip("FORGET.METHOD: the methods the loaded model's task type runs")
        self.method.currentIndexChanged.connect(self._show_method_tooltip)
        self.iterations = QSpinBox(minimum=1, maximum=1_000_000, value=200)
        self.iterations.setToolTip("FORGET.MAX_ITER: training steps per task")
        self.data_ratio = QDoubleSpinBox(minimum=0.01, maximum=1.0, singleStep=0.05, value=0.5)
        self.data_ratio.setToolTip("FORGET.DATA_RATIO: share of each class's training images")
        self.learning_rate = QDoubleSpinBox(decimals=5, minimum=1e-5, maximum=1.0, value=1e-3)
        self.learning_rate.setSingleStep(1e-4)
        self.learning_rate.setToolTip("SOLVER.BASE_LR")
        self.output_dir = QLineEdit()
        self.output_dir.setToolTip("OUTPUT_DIR of the job (adapters, report, merged model)")
        self.extra_options = QLineEdit()
        self.extra_options.setPlaceholderText("KEY VALUE … (other config overrides)")
        self.extra_options.setToolTip(
            "Config overrides as on train_net.py's command line, e.g.\n"
            "SOLVER.IMS_PER_BATCH 4 DATASETS.TEST \"('shapes_val',)\""
        )
        settings = QGroupBox("Forgetting")
        form = QFormLayout(settings)
        form.addRow("Method", self.method)
        form.addRow("Iterations", self.iterations)
        form.addRow("Data ratio", self.data_ratio)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Output folder", self.output_dir)
        form.addRow("More options", self.extra_options)

        self.forget_button = QPushButton("Forget checked classes")
        self.forget_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.forget_button.clicked.connect(self.forget_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.eta = QLabel("")
        self.eta.setWordWrap(True)
        self.eta.setMinimumWidth(10)  # a long message wraps instead of widening the panel

        self.loss_plot = LossPlot()
        self.ap_model = APTableModel(self)
        self.ap_table = QTableView()
        self.ap_table.setModel(self.ap_model)
        self.ap_table.verticalHeader().hide()
        self.ap_table.verticalHeader().setDefaultSectionSize(20)
        self.ap_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.ap_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, self.ap_model.columnCount()):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.outcome_label = QLabel(self.ap_model.gates.describe())
        self.outcome_label.setWordWrap(True)
        self.outcome_label.setTextFormat(Qt.TextFormat.RichText)
        ap_page = QWidget()
        ap_column = QVBoxLayout(ap_page)
        ap_column.setContentsMargins(0, 0, 0, 0)
        ap_column.addWidget(self.outcome_label)
        ap_column.addWidget(self.ap_table, 1)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.tabs = QTabWidget()
        self.tabs.addTab(ap_page, "AP before / after")
        self.tabs.addTab(self.log, "Log")

        layout = QVBoxLayout(self)
        layout.addWidget(settings)
        buttons = QHBoxLayout()
        buttons.addWidget(self.forget_button, 1)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.tabs, 2)
        self._running = False
        self._last_message = ""
        self._settings_widgets = (
            self.method,
            self.iterations,
            self.data_ratio,
            self.learning_rate,
            self.output_dir,
            self.extra_options,
        )

    def set_methods(self, methods: Sequence[ForgetMethod]) -> None:
        """List ``methods`` in the menu (each with :func:`method_tooltip`), first selected."""
        blocked = self.method.blockSignals(True)
        self.method.clear()
        for i, m in enumerate(methods):
            self.method.addItem(m.name)
            self.method.setItemData(i, method_tooltip(m), Qt.ItemDataRole.ToolTipRole)
        self.method.setCurrentIndex(0 if methods else -1)
        self.method.blockSignals(blocked)
        self._show_method_tooltip(self.method.currentIndex())

    def _show_method_tooltip(self, index: int) -> None:
        # The closed menu shows the chosen method's tooltip, not only the open list.
        tip = self.method.itemData(index, Qt.ItemDataRole.ToolTipRole) if index >= 0 else None
        self.method.setToolTip(f"FORGET.METHOD\n{tip}" if tip else "FORGET.METHOD")

    def method_names(self) -> list[str]:
        """The menu's methods, in order."""
        return [self.method.itemText(i) for i in range(self.method.count())]

    def tooltip_of(self, name: str) -> str:
        """The tooltip of menu item ``name`` (empty when it is not listed)."""
        i = self.method.findText(name)
        return str(self.method.itemData(i, Qt.ItemDataRole.ToolTipRole) or "") if i >= 0 else ""

    def set_defaults(self, cfg: Any, output_dir: str) -> None:
        """Fill the settings from a forgetting config (its method when the menu lists it)."""
        f = cfg.FORGET
        if self.method.findText(f.METHOD) >= 0:
            self.method.setCurrentText(f.METHOD)
        self.iterations.setValue(int(f.MAX_ITER))
        self.data_ratio.setValue(float(f.DATA_RATIO))
        self.learning_rate.setValue(float(cfg.SOLVER.BASE_LR))
        self.output_dir.setText(output_dir)

    def settings(self) -> ForgetSettings:
        """The settings of the next job (checked when the job's config is built)."""
        return ForgetSettings(
            method=self.method.currentText(),
            max_iter=self.iterations.value(),
            data_ratio=self.data_ratio.value(),
            base_lr=self.learning_rate.value(),
            output_root=self.output_dir.text().strip(),
            extra_options=self.extra_options.text(),
        )

    def set_running(self, running: bool) -> None:
        """Lock the settings and swap the buttons while a job runs."""
        for w in self._settings_widgets:
            w.setEnabled(not running)
        self.forget_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        starting = running and not self._running
        self._running = running
        if starting:  # only when a job starts: a refresh while it runs keeps its curve
            self.loss_plot.clear()
            self.progress.setValue(0)
            self.progress.setFormat("starting (building the model, evaluating before) …")
            self.eta.setText("")

    def show_progress(self, p: JobProgress) -> None:
        self.progress.setValue(round(1000 * p.fraction))
        self.progress.setFormat(f"iteration {p.iteration} / {p.max_iter}  (%p%)")
        task = f"task {p.task + 1} / {p.num_tasks}" if p.num_tasks > 1 else ""
        loss = p.losses.get("total_loss")
        parts = [f"ETA {format_eta(p.eta_seconds)}", task]
        if loss is not None:
            parts.append(f"total loss {loss:.4f}")
        if p.iteration >= p.max_iter:
            parts.append("evaluating after …")
        message = getattr(p, "message", "")
        if message:  # e.g. early stopping: "stopped at iteration K: ..."
            parts.append(message)
            if message != self._last_message:
                self.append_log(message)
            self._last_message = message
        self.eta.setText("  ·  ".join(x for x in parts if x))
        self.loss_plot.add_point(p.iteration, p.losses)

    def show_state(self, text: str, detail: str | None = None) -> None:
        """A state in the progress bar (done, cancelled, failed) and, if given, below it."""
        self.progress.setFormat(text)
        if detail is not None:
            self.eta.setText(detail)

    def show_outcome(self, outcome) -> None:
        """The verdict of the record shown (:class:`gui.outcome.RunOutcome`; ``None``: the
        gates only), above the AP table, with the thresholds."""
        gates = self.ap_model.gates.describe()
        if outcome is None:
            self.outcome_label.setText(gates)
            return
        colour = "#1a7f37" if outcome.passed else "#cf222e"
        failed = outcome.failed("forget") + outcome.failed("retain") + outcome.failed("old")
        detail = f" ({', '.join(failed)})" if failed else ""
        self.outcome_label.setText(
            f"<b style='color:{colour}'>{outcome.headline()}</b>{detail}<br>{gates}"
        )

    def append_log(self, line: str) -> None:
        self.log.appendPlainText(line)
        bars = self.log.verticalScrollBar(), self.log.horizontalScrollBar()
        bars[0].setValue(bars[0].maximum())
        bars[1].setValue(0)  # long lines never leave the log scrolled sideways
