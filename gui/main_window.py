"""The main window: layout, actions, and the wiring of views to controllers.

The window owns the widgets and what they show (the image list, the compare view, the
score threshold and display filter); the work is in :mod:`gui.controllers`:

* :class:`~gui.controllers.ModelLoader` loads a model into a :class:`~gui.session.ModelSession`;
* :class:`~gui.controllers.JobController` builds a job's config with the library
  (``det_forget.engine.job_config``) and runs it in its own ``QThread``;
* :class:`~gui.controllers.AuditController` evaluates AP before forgetting and audits a
  result;
* :mod:`gui.controllers.export` saves a result.

Slow work never runs on the GUI thread: loading, detecting, evaluating and auditing go to
one :class:`~gui.workers.TaskRunner` (one background thread, so the held models are never
used by two threads at once), the forgetting job to its own thread. Every error ends in
:meth:`MainWindow.show_error`, which emits ``error_shown(title, message)`` and opens a
non-blocking message box.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QColor, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from det_forget.checkpoint import CheckpointMismatchError
from det_forget.engine import JobProgress, JobResult
from det_forget.engine.inference import (
    Detections,
    ForgetRecord,
    list_images,
    read_forget_history,
    records_from_history,
)
from det_forget.forgetting.methods import methods_for, task_type_of
from det_forget.lora import AdapterMismatchError

from .colors import class_color
from .controllers import (
    ActionRefused,
    AuditController,
    DetectionController,
    JobController,
    ModelLoader,
    comparison_png,
    comparison_summary,
    save_results,
)
from .fates import SURVIVING, fate_text, image_fates
from .log_handler import QtLogHandler, attach_log_handler, detach_log_handler
from .models import ImageEntry
from .session import ModelSession
from .views import BoxSpec, CategoryPanel, CompareView, ForgetPanel, ImagePanel, ModelPanel
from .views.audit_view import AuditView
from .views.load_dialog import LoadModelDialog
from .workers import TaskRunner

__all__ = ["MainWindow", "DISPLAY_FILTERS", "REPO_ROOT", "default_demo_paths"]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Which detections the views show: every class, forgotten classes only, retained only.
DISPLAY_FILTERS = ("all", "forgotten", "retained")

#: Error messages longer than this many lines show their first lines and the rest under
#: "Show Details" (an adapter mismatch lists every layer).
ERROR_LINES_SHOWN = 8

#: Metadata keys of registered datasets that name files; a dataset whose files are not on
#: disk is not offered in the dataset list (detectron2 registers ~40 such built-ins).
_DATASET_PATH_KEYS = ("json_file", "image_root", "dirname", "image_dir", "gt_dir", "panoptic_root")


def dataset_on_disk(name: str) -> bool:
    """Whether the files a registered dataset's metadata names exist (relative: from here)."""
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(name)
    paths = [getattr(meta, k) for k in _DATASET_PATH_KEYS if hasattr(meta, k)]
    return all(os.path.exists(p) for p in paths if isinstance(p, str) and p)


def default_demo_paths() -> tuple[str, str]:
    """``(config, checkpoint)`` of the embedded demo.

    ``DET_FORGET_DEMO_CONFIG`` / ``DET_FORGET_DEMO_WEIGHTS`` override them.
    """
    config = os.environ.get(
        "DET_FORGET_DEMO_CONFIG", str(REPO_ROOT / "configs" / "coco_forget.yaml")
    )
    weights = os.environ.get(
        "DET_FORGET_DEMO_WEIGHTS",
        str(REPO_ROOT / "det_forget" / "model_zoo" / "shapes_vit_tiny_frcnn.pth"),
    )
    return config, weights


class MainWindow(QMainWindow):
    """The det_forget desktop app.

    Args:
        demo_config: config of "Load demo model" (default: ``configs/coco_forget.yaml``).
        demo_weights: checkpoint of the demo (default: the model zoo's shapes detector).
        output_root: parent folder of the forgetting jobs' output folders.
        error_dialogs: open a message box for each error (tests may turn it off and
            listen to ``error_shown``).
    """

    error_shown = Signal(str, str)
    model_loaded = Signal()
    images_loaded = Signal(int)
    detections_updated = Signal()
    history_loaded = Signal(int)
    job_started = Signal(object)  # the job's config
    job_progress = Signal(object)  # JobProgress
    job_finished = Signal(object)  # JobResult
    job_cancelled = Signal(str)
    job_failed = Signal(str)
    evaluated = Signal(object)  # {class: AP}
    results_saved = Signal(str)
    audited = Signal(object)  # AuditReport
    surviving_found = Signal(int)  # images holding a surviving forgotten object
    report_written = Signal(str)  # the reviewer's report's path

    def __init__(
        self,
        *,
        demo_config: str | None = None,
        demo_weights: str | None = None,
        output_root: str = "output/gui",
        error_dialogs: bool = True,
    ) -> None:
        super().__init__()
        default_config, default_weights = default_demo_paths()
        self.demo_config = demo_config or default_config
        self.demo_weights = demo_weights or default_weights
        self.output_root = output_root
        self.error_dialogs = error_dialogs
        self.session: ModelSession | None = None
        self.runner = TaskRunner(self)
        self.runner.pending_changed.connect(self._on_pending)
        self.runner.activity_changed.connect(self._on_activity)
        self.loader = ModelLoader(self.runner, self)
        self.jobs = JobController(self.runner, self)
        self.audits = AuditController(self.runner, self)
        self.detections = DetectionController(self.runner, self)
        self._current: ImageEntry | None = None
        self._pixmap: QPixmap | None = None
        self._error_box: QMessageBox | None = None
        self.score_threshold = 0.5
        self.display_filter = "all"
        self.show_ground_truth = True
        #: (config, weights, adapters) typed in the load dialog last (kept after an error)
        self.last_load_values: tuple[str, str, list[str]] | None = None
        #: what to do once the running job's thread has ended (load after a confirmed cancel)
        self._after_job: list = []
        #: paths of the images that hold a surviving forgotten object (None: no scan)
        self.surviving_paths: set[str] | None = None
        self._scan_task: int | None = None
        #: the run folder the reviewer's report is written for (last job's or opened run)
        self.run_dir: str | None = None
        #: ask before cancelling a running job (tests answer through ``confirm_answer``)
        self.confirm_answer: bool | None = None

        self.setWindowTitle("det_forget — forget classes of a detector")
        self._build_widgets()
        self._build_actions()
        self._connect_controllers()
        self._log_handler = QtLogHandler()
        self._log_handler.emitter.message.connect(self.forget_panel.append_log)
        self._log_levels = attach_log_handler(self._log_handler)
        self._update_enabled()
        self.statusBar().showMessage("Load a model to start (File ▸ Load demo model).")

    # ------------------------------------------------------------------ layout
    def _build_widgets(self) -> None:
        self.image_panel = ImagePanel()
        self.category_panel = CategoryPanel()
        self.model_panel = ModelPanel()
        self.left_tabs = QTabWidget()
        self.left_tabs.addTab(self.image_panel, "Images")
        self.left_tabs.addTab(self.category_panel, "Categories")
        self.left_tabs.addTab(self.model_panel, "Model")
        self.audit_view = AuditView()
        self.left_tabs.addTab(self.audit_view, "Audit")

        self.compare = CompareView()
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(5, 100)
        self.threshold_slider.setValue(round(self.score_threshold * 100))
        self.threshold_slider.setToolTip("Score threshold: filters the cached detections")
        self.threshold_label = QLabel()
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(
            ["All classes (A)", "Forgotten classes only (F)", "Retained classes only (R)"]
        )
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Fit the image in both views (or double-click a view)")
        self.gt_check = QCheckBox("Ground truth (G)")
        self.gt_check.setChecked(self.show_ground_truth)
        self.gt_check.setToolTip("Draw the image's annotations as dashed boxes")
        self.surviving_check = QCheckBox("Only surviving forgotten (S)")
        self.surviving_check.setToolTip(
            "Step only through the images where a forgotten object is still detected or "
            "relabelled by the after model (runs it on every image once)"
        )
        self.box_detail = QLabel("Click or hover a box for its details.")
        self.box_detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.box_detail.setMinimumWidth(10)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Score ≥"))
        bar.addWidget(self.threshold_slider, 2)
        bar.addWidget(self.threshold_label)
        bar.addSpacing(12)
        bar.addWidget(self.filter_combo)
        bar.addWidget(self.gt_check)
        bar.addWidget(self.surviving_check)
        bar.addWidget(self.fit_button)
        center = QWidget()
        column = QVBoxLayout(center)
        column.setContentsMargins(4, 4, 4, 4)
        column.addWidget(self.compare, 1)
        column.addWidget(self.box_detail)
        column.addLayout(bar)

        # What the background runner is doing, with Cancel (status bar, right).
        self.activity_label = QLabel()
        self.activity_bar = QProgressBar()
        self.activity_bar.setRange(0, 0)
        self.activity_bar.setMaximumWidth(120)
        self.activity_cancel = QPushButton("Cancel")
        self.activity_cancel.setToolTip("Stop waiting for this work (its result is dropped)")
        self.activity_cancel.clicked.connect(self.cancel_tasks)
        for w in (self.activity_label, self.activity_bar, self.activity_cancel):
            self.statusBar().addPermanentWidget(w)
            w.hide()

        self.forget_panel = ForgetPanel()
        splitter = QSplitter()
        splitter.addWidget(self.left_tabs)
        splitter.addWidget(center)
        splitter.addWidget(self.forget_panel)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 0)
        # The images get most of the width (at 1280 px wide each is ~300 px).
        splitter.setSizes([300, 820, 380])
        self.left_tabs.setMinimumWidth(220)
        self.setCentralWidget(splitter)
        self.resize(QSize(1500, 900))

        self.threshold_slider.valueChanged.connect(lambda v: self.set_score_threshold(v / 100.0))
        self.filter_combo.currentIndexChanged.connect(
            lambda i: self.set_display_filter(DISPLAY_FILTERS[i])
        )
        self.fit_button.clicked.connect(self.compare.fit)
        self.gt_check.toggled.connect(self.set_show_ground_truth)
        self.surviving_check.toggled.connect(self.set_only_surviving)
        for view in self.compare.views():
            view.box_clicked.connect(self._show_box_detail)
        self.image_panel.current_changed.connect(self._show_entry)
        self.image_panel.dataset_requested.connect(self.open_dataset)
        self.image_panel.folder_requested.connect(self._open_folder_dialog)
        self.model_panel.record_selected.connect(self._show_record)
        self.model_panel.open_run_requested.connect(self._open_run_dialog)
        self.forget_panel.forget_requested.connect(self.start_forget)
        self.forget_panel.cancel_requested.connect(self.cancel_forget)
        self.audit_view.run_requested.connect(self.run_audit)
        self.category_panel.model.dataChanged.connect(lambda *_: self._redraw())
        self._update_threshold_label()
        self.compare.before.set_placeholder("Load a model and images")
        self.compare.after.set_placeholder("Run Forget to see the model after forgetting")

    def _connect_controllers(self) -> None:
        self.loader.loaded.connect(self._on_model_loaded)
        self.loader.failed.connect(self._task_error)
        self.detections.ready.connect(self._on_detections)
        self.detections.failed.connect(self._task_error)
        jobs = self.jobs
        jobs.running_changed.connect(self._on_job_running)
        jobs.started.connect(self.job_started)
        jobs.progress.connect(self._on_job_progress)
        jobs.finished.connect(self._on_job_finished)
        jobs.cancelled.connect(self._on_job_cancelled)
        jobs.failed.connect(self._on_job_failed)
        jobs.prepare_failed.connect(self._task_error)
        audits = self.audits
        audits.evaluated.connect(self._on_evaluated)
        audits.evaluate_failed.connect(self._task_error)
        audits.running_changed.connect(self._on_audit_running)
        audits.audited.connect(self._on_audited)
        audits.audit_failed.connect(self._on_audit_failed)

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.triggered.connect(slot)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        if tip:
            action.setStatusTip(tip)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.demo_action = self._action(
            "Load &demo model",
            self.load_demo,
            "Ctrl+D",
            "The tiny ViT Faster R-CNN on the synthetic shapes dataset",
        )
        self.open_model_action = self._action("&Open model…", self._open_model_dialog, "Ctrl+O")
        self.open_run_action = self._action("Open run &history…", self._open_run_dialog)
        self.open_folder_action = self._action("Open image &folder…", self._open_folder_dialog)
        self.save_action = self._action(
            "&Save results…",
            self._save_dialog,
            "Ctrl+S",
            "Adapter, merged checkpoint, report JSON and a PNG of the comparison",
        )
        self.report_action = self._action(
            "Write &reviewer's report",
            self.write_review_report,
            tip="One self-contained HTML file next to the run: request, hashes, settings, "
            "AP, object fate, audit and before/after images",
        )
        self.quit_action = self._action("&Quit", self.close, "Ctrl+Q")
        self.next_action = self._action("Next image", self.image_panel.next, ["N", "PgDown"])
        self.prev_action = self._action("Previous image", self.image_panel.previous, ["P", "PgUp"])
        self.fit_action = self._action("Fit image", self.compare.fit, "Ctrl+0")
        self.gt_action = self._action("Ground truth boxes", self.gt_check.toggle, "G")
        self.surviving_action = self._action(
            "Only images with surviving forgotten objects", self.surviving_check.toggle, "S"
        )
        self.filter_actions = QActionGroup(self)
        for i, (name, key) in enumerate(zip(DISPLAY_FILTERS, ("A", "F", "R"))):
            action = self._action(
                self.filter_combo.itemText(i).rsplit(" (", 1)[0],
                functools.partial(self.set_display_filter, name),
                key,
            )
            action.setCheckable(True)
            action.setChecked(name == "all")
            self.filter_actions.addAction(action)
        self.forget_action = self._action("&Forget checked classes", self.start_forget, "Ctrl+R")
        self.cancel_action = self._action("&Cancel forgetting", self.cancel_forget, "Ctrl+.")
        self.evaluate_action = self._action(
            "&Evaluate AP before forgetting",
            self.evaluate_before,
            tip="COCO AP per class of the before model on the config's test dataset",
        )

        menu = self.menuBar().addMenu("&File")
        for a in (
            self.demo_action,
            self.open_model_action,
            self.open_run_action,
            self.open_folder_action,
            self.save_action,
            self.report_action,
        ):
            menu.addAction(a)
        menu.addSeparator()
        menu.addAction(self.quit_action)
        menu = self.menuBar().addMenu("&View")
        for a in (
            self.prev_action,
            self.next_action,
            self.fit_action,
            self.gt_action,
            self.surviving_action,
        ):
            menu.addAction(a)
        menu.addSeparator()
        for a in self.filter_actions.actions():
            menu.addAction(a)
        menu = self.menuBar().addMenu("F&orget")
        for a in (self.forget_action, self.cancel_action, self.evaluate_action):
            menu.addAction(a)

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main_toolbar")
        for a in (
            self.demo_action,
            self.open_model_action,
            self.open_folder_action,
            self.open_run_action,
            self.evaluate_action,
            self.save_action,
            self.report_action,
        ):
            toolbar.addAction(a)

    # ------------------------------------------------------------------ errors
    def show_error(self, title: str, message: str) -> None:
        """Tell the user what went wrong: ``error_shown`` then a non-blocking message box."""
        logger.warning("%s: %s", title, message)
        self.error_shown.emit(title, message)
        self.statusBar().showMessage(f"{title}: {message.splitlines()[0]}", 10000)
        if not self.error_dialogs:
            return
        lines = message.splitlines()
        shown = message
        if len(lines) > ERROR_LINES_SHOWN:
            shown = "\n".join(
                [*lines[:ERROR_LINES_SHOWN], f"… {len(lines) - ERROR_LINES_SHOWN} more lines"]
            )
        box = QMessageBox(
            QMessageBox.Icon.Warning, title, shown, QMessageBox.StandardButton.Ok, self
        )
        if shown != message:
            box.setDetailedText(message)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self._error_box = box

    def _refused(self, refusal: ActionRefused) -> None:
        self.show_error(refusal.title, refusal.message)

    def _task_error(self, title: str, error: BaseException, tb: str = "") -> None:
        if tb:
            logger.debug("%s", tb)
        message = str(error) or type(error).__name__
        if isinstance(error, FileNotFoundError | NotADirectoryError):
            title = f"{title}: file not found"
        elif isinstance(error, CheckpointMismatchError):
            title = f"{title}: wrong checkpoint"
        elif isinstance(error, AdapterMismatchError):
            title = f"{title}: adapter does not fit"
        self.show_error(title, message)

    # ------------------------------------------------------------------ state
    @property
    def job_running(self) -> bool:
        return self.jobs.running

    def _update_enabled(self) -> None:
        running = self.job_running
        has_model = self.session is not None
        has_result = has_model and self.session.result is not None
        # Loading over a running job asks first (``confirm_cancel_job``).
        self.open_run_action.setEnabled(not running)
        self.forget_action.setEnabled(has_model and not running)
        self.cancel_action.setEnabled(running)
        self.evaluate_action.setEnabled(has_model and not running)
        self.audit_view.run_button.setEnabled(
            not running and not self.audits.auditing and has_result
        )
        self.save_action.setEnabled(not running and has_result)
        self.report_action.setEnabled(not running and self.run_dir is not None)
        self.model_panel.open_run.setEnabled(not running)
        self.category_panel.set_locked(running)
        self.forget_panel.set_running(running)
        self.forget_panel.forget_button.setEnabled(has_model and not running)

    @Slot(int)
    def _on_pending(self, count: int) -> None:
        if not count:
            self.statusBar().clearMessage()

    @Slot(list)
    def _on_activity(self, labels: list) -> None:
        busy = bool(labels)
        text = ""
        if busy:
            text = labels[0] + (f"  (+{len(labels) - 1} queued)" if len(labels) > 1 else "")
        self.activity_label.setText(text)
        for w in (self.activity_label, self.activity_bar, self.activity_cancel):
            w.setVisible(busy)
        self.activity_cancel.setEnabled(self.runner.cancellable())

    def cancel_tasks(self) -> int:
        """Cancel the background work that may be cancelled (loading, reading a dataset,
        evaluating, auditing, scanning): queued work never starts, running work's result
        is dropped. Returns how many tasks were cancelled."""
        n = self.runner.cancel_all()
        if n:
            self.statusBar().showMessage(f"Cancelled {n} task(s).", 5000)
        return n

    # ------------------------------------------------------------------ running job
    def confirm_cancel_job(self, doing: str) -> bool:
        """Ask whether to cancel the running job to ``doing``; cancels it on yes.

        Returns:
            True when no job runs or the user agreed (the job is being cancelled).
        """
        if not self.job_running:
            return True
        answer = self.confirm_answer
        if answer is None:
            reply = QMessageBox.question(
                self,
                "A forgetting job is running",
                f"Cancel the running job to {doing}?\n\nIts run folder "
                f"{self.jobs.cfg.OUTPUT_DIR if self.jobs.cfg is not None else ''} is "
                "removed when it holds no finished task (else marked CANCELLED).",
            )
            answer = reply == QMessageBox.StandardButton.Yes
        if answer:
            self.cancel_forget()
        return answer

    # ------------------------------------------------------------------ loading
    def load_demo(self) -> None:
        """Load the embedded demo model (and its validation images)."""
        if not os.path.isfile(self.demo_weights):
            self.show_error(
                "Demo model missing",
                f"The demo checkpoint {self.demo_weights} does not exist. Train it with\n"
                "python tools/train_net.py --config-file configs/base/shapes_vit_tiny_frcnn.yaml",
            )
            return
        self.load_model(self.demo_config, self.demo_weights)

    def load_model(
        self, config_file: str, weights: str | None = None, adapters: list[str] | tuple = ()
    ) -> None:
        """Load a config + checkpoint (+ adapters) in the background; ``model_loaded`` follows.

        Errors (missing or unreadable files, a checkpoint of another architecture, an
        adapter for another model) are shown with :meth:`show_error`.
        """
        if self.job_running:
            if self.confirm_cancel_job("load another model"):
                self._after_job.append(
                    functools.partial(self.load_model, config_file, weights, adapters)
                )
            return
        self.statusBar().showMessage(f"Loading {config_file} …")
        self.loader.load(config_file, weights, adapters)

    def _clear_model_views(self) -> None:
        """Forget every view that showed the previous model or its result."""
        panel = self.forget_panel
        panel.progress.setValue(0)
        panel.progress.setFormat("idle")
        panel.progress.setToolTip("")
        panel.eta.setText("")
        panel.loss_plot.clear()
        panel.ap_model.set_record(None)
        panel.show_outcome(None)
        self.audit_view.set_report(None)
        self.model_panel.set_adapter_layers([])
        self.surviving_paths = None
        if self.surviving_check.isChecked():
            self.surviving_check.setChecked(False)
        self.box_detail.setText("Click or hover a box for its details.")
        self.run_dir = None

    @Slot(object)
    def _on_model_loaded(self, session: ModelSession) -> None:
        self.session = session
        self.last_load_values = None
        self._clear_model_views()
        cfg, loaded, records = session.cfg, session.loaded, session.records
        self.category_panel.model.set_classes(loaded.class_names)
        self.model_panel.show_model(session.config_file, loaded)
        self.model_panel.set_history(records)
        self._show_record(records[-1] if records else None)
        # The method menu lists what the registry says this model's task type runs.
        self.forget_panel.set_methods(methods_for(task_type_of(cfg)))
        self.forget_panel.set_defaults(cfg, self.output_root)
        names = self._dataset_names(cfg)
        self.image_panel.set_dataset_names(
            names, cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None
        )
        self._update_enabled()
        self.statusBar().showMessage(
            f"Loaded {os.path.basename(loaded.weights)}: {len(loaded.class_names)} classes, "
            f"{len(loaded.adapter_layers)} adapter layers",
            8000,
        )
        self.model_loaded.emit()
        if self.image_panel.model.rowCount() == 0 and cfg.DATASETS.TEST:
            self.open_dataset(cfg.DATASETS.TEST[0])
        else:
            self._show_entry(self._current)

    @staticmethod
    def _dataset_names(cfg) -> list[str]:
        from detectron2.data import DatasetCatalog

        first = [*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN]
        rest = sorted(n for n in DatasetCatalog.list() if n not in first and dataset_on_disk(n))
        return list(dict.fromkeys(first)) + rest

    def _open_model_dialog(self) -> None:
        config, weights, adapters = self.last_load_values or (
            self.demo_config,
            self.demo_weights,
            [],
        )
        dialog = LoadModelDialog(self, config, weights, adapters)
        if dialog.exec() == LoadModelDialog.DialogCode.Accepted:
            config, weights, adapters = dialog.values()
            # Kept until a load succeeds, so the dialog reopens with what was typed.
            self.last_load_values = (config, weights, adapters)
            self.load_model(config, weights or None, adapters)

    # ------------------------------------------------------------------ history
    def open_run(self, path: str) -> None:
        """Show the forgetting history of a run folder, report or adapter folder."""
        try:
            records = read_forget_history(path)
        except (OSError, ValueError) as e:
            self._task_error("Cannot read the forgetting history", e)
            return
        if self.session is not None:
            self.session.records = records
        self.model_panel.set_history(records)
        self._show_record(records[-1] if records else None)
        self.audit_view.load_run_dir(path)
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        self.run_dir = str(folder) if (folder / "history.json").is_file() else None
        self._update_enabled()
        self.history_loaded.emit(len(records))
        self._redraw()

    def _open_run_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Run folder (OUTPUT_DIR)", self.output_root)
        if path:
            self.open_run(path)

    @Slot(object)
    def _show_record(self, record: ForgetRecord | None) -> None:
        self.forget_panel.ap_model.set_record(record)
        self.forget_panel.show_outcome(self.forget_panel.ap_model.outcome)
        if record is not None:
            self.category_panel.model.set_ap(before=record.before or {}, after=record.after or {})
        else:
            self.category_panel.model.set_ap(before={}, after={})

    # ------------------------------------------------------------------ images
    def open_dataset(self, name: str) -> None:
        """List the images of a registered detectron2 dataset (in the background)."""
        from detectron2.data import DatasetCatalog

        if name not in DatasetCatalog.list():
            self._restore_dataset_choice()
            self.show_error(
                "No images",
                f"{name!r} is not a registered dataset. Datasets on disk: "
                + ", ".join(n for n in DatasetCatalog.list() if dataset_on_disk(n))[:300],
            )
            return

        def work():
            return [
                ImageEntry(d["file_name"], tuple(d.get("annotations", ())))
                for d in DatasetCatalog.get(name)
            ]

        def failed(e, tb):
            self._restore_dataset_choice()
            self._task_error(f"Cannot read dataset {name}", e, tb)

        self.runner.submit(
            work,
            functools.partial(self._set_images, f"dataset {name}"),
            failed,
            label=f"Reading dataset {name}",
            on_cancel=self._restore_dataset_choice,
        )

    def _restore_dataset_choice(self) -> None:
        """Show the dataset whose images are listed in the combo (not the one that failed)."""
        source = self.image_panel.model.source
        combo = self.image_panel.datasets
        if source.startswith("dataset "):
            combo.setCurrentText(source[len("dataset ") :])
        else:
            combo.setCurrentIndex(-1)
            combo.setEditText("")

    def open_folder(self, folder: str) -> None:
        """List the image files of ``folder``."""
        try:
            files = list_images(folder)
        except OSError as e:
            self._task_error("No images", e)
            return
        self._set_images(f"folder {folder}", [ImageEntry(f) for f in files])

    def _open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Image folder")
        if folder:
            self.open_folder(folder)

    def _set_images(self, source: str, entries: list[ImageEntry]) -> None:
        if not entries:
            self._restore_dataset_choice()
            self.show_error("No images", f"No images found in {source}.")
            return
        self.surviving_paths = None
        if self.surviving_check.isChecked():
            self.surviving_check.setChecked(False)
        self.image_panel.set_entries(entries, source)
        self.left_tabs.setCurrentWidget(self.image_panel)
        self.images_loaded.emit(len(entries))

    # ------------------------------------------------------------------ detections
    @Slot(object)
    def _show_entry(self, entry: ImageEntry | None) -> None:
        self._current = entry
        self.box_detail.setText("Click or hover a box for its details.")
        if entry is None:
            self._pixmap = None
            return
        pixmap = QPixmap(entry.path)
        if pixmap.isNull():
            # Both panes say so: they never keep showing the previous image's boxes.
            self._pixmap = None
            for view in self.compare.views():
                view.set_placeholder(f"Cannot read {entry.name}")
            self.compare.set_titles(
                f"<b>Before</b> — cannot read {entry.name}",
                f"<b>After</b> — cannot read {entry.name}",
            )
            self.show_error("Cannot read image", f"{entry.path} is not an image Qt can read.")
            return
        self._pixmap = pixmap
        self._request_detections()
        self._redraw(new_image=True)

    def _sources(self) -> tuple[str | None, str | None]:
        if self.session is None:
            return None, None
        return self.session.before_source(), self.session.after_source()

    def _request_detections(self) -> None:
        if self.session is not None and self._current is not None:
            self.detections.request(self.session, self._current.path, self._sources())

    def _on_detections(self, session: ModelSession, image_path: str) -> None:
        if session is self.session and self._current is not None:
            if image_path == self._current.path:
                self._redraw()

    def forgotten_ids(self) -> list[int]:
        """Ids of the forgotten classes (the last job's, else the checked ones)."""
        if self.session is None:
            return []
        names = self.session.forgotten_classes() or self.category_panel.model.checked_names()
        return [self.session.class_names.index(n) for n in names if n in self.session.class_names]

    def _visible_ids(self) -> list[int] | None:
        if self.display_filter == "all" or self.session is None:
            return None
        forgotten = set(self.forgotten_ids())
        if self.display_filter == "forgotten":
            return sorted(forgotten)
        return [i for i in range(len(self.session.class_names)) if i not in forgotten]

    def _boxes(self, detections: Detections) -> list[BoxSpec]:
        names = self.session.class_names if self.session else []
        shown = detections.filter(self.score_threshold, self._visible_ids())
        specs = []
        for box, s, c in zip(shown.boxes, shown.scores, shown.classes):
            name = names[c] if c < len(names) else str(c)
            x0, y0, x1, y1 = map(float, box)
            specs.append(
                BoxSpec(
                    x0,
                    y0,
                    x1,
                    y1,
                    f"{name} {s:.2f}",
                    class_color(int(c), name),
                    f"detection: {name} {s:.3f} at ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}),"
                    f" {x1 - x0:.0f}×{y1 - y0:.0f} px",
                )
            )
        return specs

    def _gt_boxes(self, entry: ImageEntry, skip: set[int] = frozenset()) -> list[BoxSpec]:
        """The image's annotations as dashed boxes (the display filter applies)."""
        if not (self.show_ground_truth and entry.annotations and self.session):
            return []
        from .fates import gt_boxes

        names = self.session.class_names
        visible = self._visible_ids()
        boxes, classes = gt_boxes(entry.annotations)
        specs = []
        for box, c in zip(boxes, classes):
            if c in skip or (visible is not None and c not in visible):
                continue
            name = names[c] if c < len(names) else str(c)
            x0, y0, x1, y1 = map(float, box)
            specs.append(
                BoxSpec(
                    x0,
                    y0,
                    x1,
                    y1,
                    f"GT {name}",
                    class_color(c, name),
                    f"ground truth: {name} at ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f})",
                    kind="gt",
                )
            )
        return specs

    def current_fates(self) -> tuple[list, str]:
        """Fates of the forgotten objects of the image shown (:func:`gui.fates.image_fates`)
        and where the objects came from; empty without a result or forgotten classes."""
        entry, session = self._current, self.session
        if entry is None or session is None or self._pixmap is None:
            return [], ""
        before_src, after_src = self._sources()
        forget = self.forgotten_ids()
        if after_src is None or not forget:
            return [], ""
        after = session.cached(after_src, entry.path)
        before = session.cached(before_src, entry.path) if before_src else None
        if after is None or (not entry.annotations and before is None):
            return [], ""
        return image_fates(
            entry.annotations,
            before,
            after,
            forget,
            image_id=entry.name,
            score_thresh=self.score_threshold,
        )

    def _fate_boxes(self, fates) -> list[BoxSpec]:
        names = self.session.class_names
        specs = []
        for f in fates:
            x0, y0, x1, y1 = f.box
            text = fate_text(f, names)
            color = {"gone": "#20b040", "detected": "#ff2020", "relabelled": "#ff7a00"}[f.fate]
            detail = f"forgotten object ({f.fate}): {text}"
            if f.iou is not None:
                detail += f", IoU {f.iou:.2f}"
            specs.append(BoxSpec(x0, y0, x1, y1, text, QColor(color), detail, kind="fate"))
        return specs

    def _redraw(self, new_image: bool = False) -> None:
        """Draw the current image, its cached detections, its ground truth and the fate of
        its forgotten objects (never runs a model)."""
        entry, session = self._current, self.session
        if entry is None or self._pixmap is None:
            return
        before_src, after_src = self._sources()
        fates, fate_source = self.current_fates()
        marked = set(self.forgotten_ids()) if fates and entry.annotations else set()
        titles = []
        for view, source, label in (
            (self.compare.before, before_src, "Before"),
            (self.compare.after, after_src, "After"),
        ):
            if source is None and view is self.compare.after:
                if view.has_image() or not view.placeholder_text:
                    view.set_placeholder("Run Forget to see the model after forgetting")
                titles.append(f"<b>{label}</b> — no forgetting result yet")
                continue
            if new_image or not view.has_image():
                view.set_image(self._pixmap)
            dets = session.cached(source, entry.path) if session and source else None
            is_after = view is self.compare.after
            gt = self._gt_boxes(entry, marked if is_after else set())
            if dets is None:
                view.set_boxes(gt)
                state = "detecting …" if session else "no model loaded"
            else:
                boxes = self._boxes(dets)
                extra = self._fate_boxes(fates) if is_after else []
                view.set_boxes([*gt, *boxes, *extra])
                state = f"{len(boxes)} boxes"
                if is_after and fates:
                    counts = {k: sum(f.fate == k for f in fates) for k in ("gone", *SURVIVING)}
                    state += " · forgotten objects: " + ", ".join(
                        f"{n} {k}" for k, n in counts.items() if n
                    )
                    if fate_source != "ground truth":
                        state += " (objects: the before model's detections)"
            desc = session.describe(source) if session else ""
            titles.append(f"<b>{label}</b> — " + " · ".join(x for x in (desc, state) if x))
        self.compare.set_titles(*titles)
        if new_image:
            self.compare.image_changed()
        if session is not None and all(
            s is None or session.cached(s, entry.path) is not None for s in (before_src, after_src)
        ):
            self.detections_updated.emit()

    def set_show_ground_truth(self, show: bool) -> None:
        """Draw (or hide) the annotations of dataset images as dashed boxes."""
        self.show_ground_truth = bool(show)
        if self.gt_check.isChecked() != self.show_ground_truth:
            self.gt_check.setChecked(self.show_ground_truth)
        self._redraw()

    def set_only_surviving(self, only: bool) -> None:
        """Step only through the images holding a forgotten object the after model still
        detects or relabels (:data:`gui.fates.SURVIVING`). The first time, the after model
        runs on every listed image in the background (cancellable)."""
        if self.surviving_check.isChecked() != bool(only):
            self.surviving_check.setChecked(bool(only))
            return  # the checkbox's toggled signal calls back
        if not only:
            if self._scan_task is not None:
                self.runner.cancel(self._scan_task)
            self.image_panel.set_path_filter(None)
            return
        session = self.session
        forget = self.forgotten_ids()
        before_src, after_src = self._sources()
        if session is None or after_src is None or not forget:
            self.surviving_check.setChecked(False)
            self.show_error(
                "No forgotten objects to find",
                "Run a forgetting job (or load adapters or a run) first.",
            )
            return
        if self.surviving_paths is not None:
            self.image_panel.set_path_filter(self.surviving_paths)
            return
        entries = self.image_panel.model.entries()
        thresh = self.score_threshold
        stop = threading.Event()

        def scan() -> set[str]:
            found = set()
            for entry in entries:
                if stop.is_set():
                    break
                after = session.predict(after_src, entry.path)
                before = None
                if not entry.annotations and before_src is not None:
                    before = session.predict(before_src, entry.path)
                fates, _ = image_fates(
                    entry.annotations, before, after, forget, score_thresh=thresh
                )
                if any(f.fate in SURVIVING for f in fates):
                    found.add(entry.path)
            return found

        def done(found: set[str]) -> None:
            self._scan_task = None
            if session is not self.session:
                return
            self.surviving_paths = found
            if self.surviving_check.isChecked():
                self.image_panel.set_path_filter(found)
                self.statusBar().showMessage(
                    f"{len(found)} of {len(entries)} images hold a surviving forgotten object "
                    f"(score ≥ {thresh:.2f})",
                    8000,
                )
            self.surviving_found.emit(len(found))

        def cancelled() -> None:
            stop.set()
            self._scan_task = None
            self.surviving_check.setChecked(False)

        def failed(e, tb) -> None:
            self._scan_task = None
            self.surviving_check.setChecked(False)
            self._task_error("Cannot find surviving objects", e, tb)

        self._scan_task = self.runner.submit(
            scan,
            done,
            failed,
            label=f"Finding surviving forgotten objects in {len(entries)} images",
            on_cancel=cancelled,
        )

    @Slot(object)
    def _show_box_detail(self, spec: BoxSpec) -> None:
        self.box_detail.setText(spec.detail or spec.label)

    def set_score_threshold(self, value: float) -> None:
        """Filter the cached detections at ``value`` (the slider calls this)."""
        self.score_threshold = float(value)
        slider_value = round(self.score_threshold * 100)
        if self.threshold_slider.value() != slider_value:
            self.threshold_slider.setValue(slider_value)
        self._update_threshold_label()
        self._redraw()

    def _update_threshold_label(self) -> None:
        self.threshold_label.setText(f"{self.score_threshold:.2f}")

    def set_display_filter(self, name: str) -> None:
        """``"all"``, ``"forgotten"`` or ``"retained"`` classes in both views."""
        if name not in DISPLAY_FILTERS:
            raise ValueError(f"display filter must be one of {DISPLAY_FILTERS}, got {name!r}")
        self.display_filter = name
        i = DISPLAY_FILTERS.index(name)
        if self.filter_combo.currentIndex() != i:
            self.filter_combo.setCurrentIndex(i)
        self.filter_actions.actions()[i].setChecked(True)
        self._redraw()

    # ------------------------------------------------------------------ forgetting
    def select_categories(self, names: list[str]) -> None:
        """Check exactly ``names`` in the category list."""
        self.category_panel.model.clear_checks()
        self.category_panel.model.set_checked(names)

    def start_forget(self) -> None:
        """Forget the checked classes in a worker thread (``job_started`` … ``job_finished``).

        The job's config is built by the library from the panel's settings
        (:func:`gui.controllers.job_config`); what it refuses is shown as an error.
        """
        try:
            self.jobs.start(
                self.session,
                self.category_panel.model.checked_names(),
                self.forget_panel.settings(),
                self.output_root,
            )
        except ActionRefused as e:
            self._refused(e)

    def cancel_forget(self) -> None:
        """Stop the running job at its next step; the loaded model is not touched."""
        if self.jobs.cancel():
            self.forget_panel.show_state("cancelling at the next step …")

    @Slot(bool)
    def _on_job_running(self, running: bool) -> None:
        if running:
            self.forget_panel.log.clear()
        self._update_enabled()
        if not running:
            pending, self._after_job = self._after_job, []
            for action in pending:
                action()

    @Slot(object)
    def _on_job_progress(self, progress: JobProgress) -> None:
        self.forget_panel.show_progress(progress)
        self.job_progress.emit(progress)

    @Slot(object)
    def _on_job_finished(self, result: JobResult) -> None:
        records = records_from_history(result.history, result.output_dir)
        self.session.set_result(result, self.jobs.cfg, records)
        self.model_panel.set_history(self.session.records)
        self.model_panel.set_adapter_layers(self.session.result_adapter_layers())
        self._show_record(records[-1] if records else None)
        last = records[-1] if records else None
        h_mean = (last.summary or {}).get("h_mean") if last else None
        self.forget_panel.progress.setToolTip(result.output_dir)
        outcome = self.forget_panel.ap_model.outcome
        folder = os.path.basename(os.path.normpath(result.output_dir))
        if outcome is not None and not outcome.passed:
            state = outcome.headline()
        else:
            state = "done, gates passed" if outcome is not None else "done"
        self.forget_panel.show_state(
            state,
            f"{folder}: finished {len(records)} task(s)"
            + ("" if h_mean is None else f"  ·  H-Mean {h_mean:.1f}")
            + (f"  ·  {outcome.gates.describe()}" if outcome is not None else ""),
        )
        self.surviving_paths = None
        if self.surviving_check.isChecked():
            self.surviving_check.setChecked(False)
        self.forget_panel.progress.setValue(self.forget_panel.progress.maximum())
        self.forget_panel.tabs.setCurrentIndex(0)
        self.set_display_filter(self.display_filter)
        self._request_detections()
        self._redraw(new_image=True)
        self.audit_view.load_run_dir(result.output_dir)
        self.run_dir = result.output_dir
        self._update_enabled()
        self.job_finished.emit(result)

    @Slot(str)
    def _on_job_cancelled(self, message: str) -> None:
        what = self.jobs.clean_partial_run()
        self.forget_panel.show_state(
            f"cancelled ({message})", f"cancelled: the loaded model is unchanged; {what}"
        )
        self.job_cancelled.emit(message)

    @Slot(str, str)
    def _on_job_failed(self, message: str, tb: str) -> None:
        self.forget_panel.append_log(tb)
        self.forget_panel.show_state("failed", message.splitlines()[0])
        self.show_error("Forgetting failed", message)
        self.job_failed.emit(message)

    # ------------------------------------------------------------------ evaluation, audit
    def evaluate_before(self) -> None:
        """COCO AP per class of the before model on ``DATASETS.TEST[0]`` (background)."""
        try:
            dataset = self.audits.evaluate_before(self.session)
        except ActionRefused as e:
            self._refused(e)
            return
        self.statusBar().showMessage(f"Evaluating on {dataset} …")

    def _on_evaluated(self, per_class: dict) -> None:
        self.category_panel.model.set_ap(before=per_class)
        self.left_tabs.setCurrentWidget(self.category_panel)
        self.evaluated.emit(per_class)

    def run_audit(self) -> None:
        """Audit the last job in the background (:meth:`AuditController.run_audit`).

        The report goes to ``audit.json`` in the job's folder and into the Audit tab
        (``audited``).
        """
        try:
            self.audits.run_audit(self.session, self.forgotten_ids())
        except ActionRefused as e:
            self._refused(e)
            return
        self.statusBar().showMessage("Auditing the forgetting result …")

    @Slot(bool)
    def _on_audit_running(self, running: bool) -> None:
        self.audit_view.set_running(running)
        self._update_enabled()

    def _on_audited(self, report, path: str) -> None:
        self.audit_view.set_report(report, path)
        self.left_tabs.setCurrentWidget(self.audit_view)
        self.statusBar().showMessage(f"Audit written to {path}", 8000)
        self.audited.emit(report)

    def _on_audit_failed(self, error: BaseException, tb: str) -> None:
        self.audit_view.show_error(f"The audit failed: {error}")
        self._task_error("Cannot audit the result", error, tb)

    # ------------------------------------------------------------------ saving
    def _save_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save results into")
        if folder:
            self.save_results_in_background(folder)

    def save_results_in_background(self, folder: str) -> None:
        """:meth:`save_results` on the runner (copying a checkpoint takes a while);
        ``results_saved`` or an error follows."""
        if self.session is None or self.session.result is None:
            self.show_error("Nothing to save", "Run a forgetting job first.")
            return
        png, summary, session = self.comparison_png(), self.comparison_summary(), self.session

        def done(written: list[str]) -> None:
            self.statusBar().showMessage(f"Saved {len(written)} items to {folder}", 8000)
            self.results_saved.emit(str(folder))

        self.runner.submit(
            functools.partial(save_results, session, folder, png, summary),
            done,
            lambda e, tb: self._task_error("Cannot save the results", e, tb),
            label=f"Saving results to {folder}",
            cancellable=False,
        )

    def comparison_png(self) -> bytes:
        """The compare view's images (cropped, with their titles) as PNG bytes."""
        return comparison_png(self.compare)

    def comparison_summary(self) -> dict[str, Any]:
        """What the compare view shows now, as data (``comparison.json``)."""
        return comparison_summary(
            self.session,
            self._current.path if self._current else None,
            sources=self._sources(),
            score_threshold=self.score_threshold,
            display_filter=self.display_filter,
            visible_ids=self._visible_ids(),
        )

    def save_results(self, folder: str) -> list[str]:
        """Write the last job's adapters, merged checkpoint, reports and comparison PNG.

        Every file is written atomically (``det_forget.utils.io``).

        Returns:
            The paths written (none when the save failed).
        """
        if self.session is None or self.session.result is None:
            self.show_error("Nothing to save", "Run a forgetting job first.")
            return []
        try:
            written = save_results(
                self.session, folder, self.comparison_png(), self.comparison_summary()
            )
        except OSError as e:
            self._task_error("Cannot save the results", e)
            return []
        self.statusBar().showMessage(f"Saved {len(written)} items to {folder}", 8000)
        self.results_saved.emit(str(folder))
        return written

    # ------------------------------------------------------------------ reviewer's report
    def write_review_report(self, pairs: int = 6) -> None:
        """Write the run's reviewer's report (``det_forget.report``) in the background:
        ``review_report.html`` in the run folder; ``report_written`` follows."""
        if self.run_dir is None:
            self.show_error("No run", "Run a forgetting job or open a run folder first.")
            return
        from det_forget.report import write_report

        run_dir = self.run_dir

        def done(path) -> None:
            self.statusBar().showMessage(f"Reviewer's report written to {path}", 10000)
            self.report_written.emit(str(path))

        self.runner.submit(
            functools.partial(write_report, run_dir, pairs=pairs),
            done,
            lambda e, tb: self._task_error("Cannot write the reviewer's report", e, tb),
            label=f"Writing the reviewer's report of {os.path.basename(run_dir)}",
        )

    # ------------------------------------------------------------------ closing
    def shutdown(self, timeout_ms: int = 60000) -> None:
        """Cancel a running job, stop the threads and detach the log handler."""
        self.jobs.shutdown(timeout_ms)
        self.runner.shutdown(timeout_ms)
        if self._log_handler is not None:
            detach_log_handler(self._log_handler, self._log_levels)
            self._log_handler = None

    def closeEvent(self, event) -> None:  # noqa: N802
        if self.job_running and not self.confirm_cancel_job("quit"):
            event.ignore()
            return
        if self.jobs.running:
            self.jobs.shutdown()
            self.jobs.clean_partial_run()
        self.shutdown()
        super().closeEvent(event)
