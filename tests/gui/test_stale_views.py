"""The window shows only what is true now (issue 20): after each change, the state of every
view that depended on what changed, not only that no exception was raised."""

from __future__ import annotations

import os
import shutil

from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtWidgets import QApplication

from det_forget.data import SHAPES_CLASS_NAMES
from det_forget.forgetting.run_dir import RunDirectory, RunHistory

FORGET = "blue_triangle"


def _run_dir(path, before: dict, after: dict, forget=(FORGET,), method="gs_lora") -> str:
    """A run folder with one hand-made finished task."""
    groups = {
        "forget": list(forget),
        "retain": [n for n in SHAPES_CLASS_NAMES if n not in forget],
        "old": [],
        "missing": [],
    }
    task = {
        "task": {"index": 0},
        "classes": groups,
        "before": before,
        "after": after,
        "summary": None,
        "adapter": None,
    }
    RunDirectory(path).write_history(
        RunHistory(method, "rcnn", "AP", list(SHAPES_CLASS_NAMES), [task])
    )
    return str(path)


def _row_with(w, class_id: int) -> int:
    for row in range(w.image_panel.count()):
        entry = w.image_panel.model.entry(row)
        if any(a["category_id"] == class_id for a in entry.annotations):
            return row
    raise AssertionError(f"no image with class {class_id}")


def _show_row(qtbot, w, row: int) -> None:
    w.image_panel.select_row(row)
    qtbot.waitUntil(
        lambda: "detecting" not in w.compare.before_title.text() + w.compare.after_title.text(),
        timeout=30000,
    )


# 1 -------------------------------------------------------------------------------------
def test_unreadable_image_clears_both_panes(qtbot, loaded, tmp_path):
    w = loaded
    folder = tmp_path / "photos"
    folder.mkdir()
    good = w.image_panel.model.entry(0).path
    shutil.copy(good, folder / "a_good.png")
    (folder / "b_broken.png").write_bytes(b"not a png at all")
    w.open_folder(str(folder))
    qtbot.waitUntil(lambda: w.compare.before.box_count() > 0, timeout=30000)
    w.image_panel.select_row(1)
    assert w.errors and w.errors[-1][0] == "Cannot read image"
    for view in w.compare.views():
        assert not view.has_image() and view.box_count(None) == 0
        assert "Cannot read b_broken.png" == view.placeholder_text
    assert "cannot read b_broken.png" in w.compare.before_title.text()
    assert "boxes" not in w.compare.before_title.text() + w.compare.after_title.text()
    assert w.image_panel.current_entry().name == "b_broken.png"  # list and panes agree
    w.image_panel.select_row(0)  # a readable image shows again
    qtbot.waitUntil(lambda: w.compare.before.box_count() > 0, timeout=30000)


# 2 -------------------------------------------------------------------------------------
def test_loading_another_model_clears_the_old_results(qtbot, loaded, tmp_path):
    from test_audit_view import _report

    w = loaded
    before = {n: 80.0 for n in SHAPES_CLASS_NAMES}
    w.open_run(_run_dir(tmp_path / "run", before, {**before, FORGET: 1.0}))
    panel = w.forget_panel
    panel.show_state("done: old run", "finished 1 task(s)  ·  H-Mean 76.5")
    panel.loss_plot.add_point(1, {"total_loss": 1.0})
    w.audit_view.set_report(_report(), "old/audit.json")
    assert panel.ap_model.rowCount() > 0 and w.category_panel.model.ap_before(FORGET) == 80.0
    with qtbot.waitSignal(w.model_loaded, timeout=60000):
        w.load_demo()
    assert panel.progress.format() == "idle" and panel.eta.text() == ""
    assert not any(panel.loss_plot.series.values())
    assert w.audit_view.report is None and w.audit_view.table_model.rowCount() == 0
    assert panel.ap_model.rowCount() == 0 and "gates failed" not in panel.outcome_label.text()
    assert w.category_panel.model.ap_before(FORGET) is None
    assert w.model_panel.history_model.rowCount() == 0


def test_failed_dataset_keeps_the_combo_on_the_listed_images(qtbot, loaded):
    w = loaded
    combo = w.image_panel.datasets
    items = [combo.itemText(i) for i in range(combo.count())]
    assert items[0] == "shapes_val" and "coco_2017_val" not in items  # not on disk
    combo.setCurrentText("no_such_dataset")
    with qtbot.waitSignal(w.error_shown):
        w.image_panel.load_dataset.click()
    assert combo.currentText() == "shapes_val" and w.image_panel.count() == 200


# 3 -------------------------------------------------------------------------------------
def test_forgotten_filter_uses_the_loaded_history(qtbot, loaded, tmp_path):
    w = loaded
    forget_id = SHAPES_CLASS_NAMES.index(FORGET)
    _show_row(qtbot, w, _row_with(w, forget_id))
    before = {n: 80.0 for n in SHAPES_CLASS_NAMES}
    w.open_run(_run_dir(tmp_path / "run", before, {**before, FORGET: 1.0}))
    assert w.category_panel.model.checked_names() == []  # nothing checked by hand
    assert w.forgotten_ids() == [forget_id]
    w.set_display_filter("forgotten")
    labels = w.compare.before.box_labels()
    assert labels and all(label.startswith(FORGET) for label in labels)
    w.set_display_filter("retained")
    assert not any(label.startswith(FORGET) for label in w.compare.before.box_labels())


# 4 -------------------------------------------------------------------------------------
def test_outcome_colours_come_from_the_numbers(qtbot, loaded, tmp_path):
    from gui.models.ap_table_model import VERDICT_COLORS

    w = loaded
    model = w.forget_panel.ap_model
    before = {n: 80.0 for n in SHAPES_CLASS_NAMES}

    def colour(name: str):
        for row in range(model.rowCount()):
            if model.data(model.index(row, 0)) == name:
                return model.data(model.index(row, 0), Qt.ItemDataRole.BackgroundRole)
        raise KeyError(name)

    # neg_grad wiped every class: the retained rows are red and the run failed retention.
    w.open_run(_run_dir(tmp_path / "wiped", before, {n: 0.0 for n in SHAPES_CLASS_NAMES}))
    assert colour("red_circle") == VERDICT_COLORS["fail"]
    assert colour(FORGET) == VERDICT_COLORS["pass"]
    text = w.forget_panel.outcome_label.text()
    assert "gates failed: retention failed on 9 classes" in text
    assert "forgotten AP ≤ 5, retained AP drop ≤ 5 points" in text  # thresholds shown
    # no_retain changed nothing: forgetting failed, the retained rows are green.
    w.open_run(_run_dir(tmp_path / "nothing", before, before, method="no_retain"))
    assert (
        colour(FORGET) == VERDICT_COLORS["fail"]
        and colour("red_circle") == (VERDICT_COLORS["pass"])
    )
    assert "forgetting failed on 1 class" in w.forget_panel.outcome_label.text()
    tip = model.data(model.index(model.rowCount() - 1, 0), Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("pass: lost 0.0")


def test_job_state_says_gates_failed_instead_of_done():
    from gui.outcome import judge

    groups = {"forget": ["a"], "retain": ["b", "c"]}
    outcome = judge(groups, {"a": 80, "b": 80, "c": 80}, {"a": 0, "b": 10, "c": 79})
    assert not outcome.passed and outcome.failed("retain") == ["b"]
    assert outcome.headline() == "gates failed: retention failed on 1 class"
    assert judge(groups, {"a": 80, "b": 80, "c": 80}, {"a": 2, "b": 77, "c": 80}).passed


# 5 -------------------------------------------------------------------------------------
def test_closing_during_a_job_asks_and_removes_the_partial_run(qtbot, loaded, mini_val):
    w = loaded
    w.select_categories([FORGET])
    panel = w.forget_panel
    panel.iterations.setValue(500)
    panel.data_ratio.setValue(0.1)
    panel.extra_options.setText(
        f"SOLVER.IMS_PER_BATCH 2 FORGET.EVAL_BEFORE False DATASETS.TEST \"('{mini_val}',)\""
    )
    with qtbot.waitSignal(w.job_progress, timeout=120000):
        w.start_forget()
    run = w.jobs.cfg.OUTPUT_DIR
    assert os.path.isdir(run)
    w.confirm_answer = False  # "Cancel the running job to quit?" -> No
    assert not w.close()
    assert w.isVisible() and w.job_running
    w.confirm_answer = True
    loads = []
    w.model_loaded.connect(lambda: loads.append(w.job_running))
    with qtbot.waitSignal(w.job_cancelled, timeout=60000):
        w.load_demo()  # loading over the job: asks, cancels, then loads
    qtbot.waitUntil(lambda: not w.job_running, timeout=30000)
    assert not os.path.exists(run)  # no finished task: the partial folder is removed
    assert "was removed" in panel.eta.text()
    qtbot.waitUntil(lambda: loads == [False], timeout=60000)  # loaded after the job ended


# 9 -------------------------------------------------------------------------------------
def test_bad_settings_are_refused_before_the_job_starts(qtbot, loaded):
    w = loaded
    w.select_categories([FORGET])
    w.forget_panel.extra_options.setText("SOLVER.IMS_PER_BATCH 0")
    w.start_forget()
    assert not w.job_running and w.jobs.cfg is None
    title, message = w.errors[-1]
    assert title == "Invalid settings" and "SOLVER.IMS_PER_BATCH" in message
    assert "at least 1" in message
    w.forget_panel.extra_options.setText("DATASETS.TEST \"('nowhere',)\"")
    w.start_forget()
    assert "'nowhere', which is not a registered dataset" in w.errors[-1][1]


def test_load_dialog_keeps_what_was_typed_after_an_error(qtbot, window, tmp_path):
    w = window
    typed = (str(tmp_path / "typo.yaml"), str(tmp_path / "w.pth"), [str(tmp_path / "ad")])
    seen = []

    def answer(values=None):
        dialog = QApplication.activeModalWidget()
        seen.append(dialog.values())
        if values:
            dialog.config.setText(values[0])
            dialog.weights.setText(values[1])
            dialog.adapters.setText(";".join(values[2]))
        dialog.accept()

    QTimer.singleShot(200, lambda: answer(typed))
    with qtbot.waitSignal(w.error_shown, timeout=60000):
        w.open_model_action.trigger()
    w._error_box.close()
    QTimer.singleShot(200, answer)
    with qtbot.waitSignal(w.error_shown, timeout=60000):
        w.open_model_action.trigger()
    assert seen[0][0] == w.demo_config  # first time: the demo
    assert seen[1] == typed  # after the error: what was typed


def test_long_error_shows_its_first_lines_and_the_rest_as_details(qtbot, window):
    w = window
    message = "adapter does not fit:\n" + "\n".join(f"layer {i}: shape 8x96" for i in range(40))
    w.show_error("Cannot load the model", message)
    box = w._error_box
    assert box.text().count("\n") <= 9 and "33 more lines" in box.text()
    assert box.detailedText() == message
    box.close()


# 10 ------------------------------------------------------------------------------------
def test_ground_truth_toggle_and_box_details(qtbot, loaded):
    w = loaded
    entry = w.image_panel.current_entry()
    n_gt = len(entry.annotations)
    assert n_gt and w.compare.before.box_count("gt") == n_gt
    gt_labels = w.compare.before.box_labels("gt")
    assert all(label.startswith("GT ") for label in gt_labels)
    w.gt_action.trigger()
    assert not w.gt_check.isChecked() and w.compare.before.box_count("gt") == 0
    assert w.compare.before.box_count() > 0  # detections stay
    w.gt_action.trigger()
    assert w.compare.before.box_count("gt") == n_gt
    # Hover: every box has a tooltip; click: the detail line shows the clicked box.
    view = w.compare.before
    det = next(s for s in view.box_specs() if s.kind == "detection")
    assert det.detail.startswith("detection: ") and " px" in det.detail
    assert all(item.toolTip() for item in view._boxes)
    w.gt_check.setChecked(False)
    center = view.mapFromScene(QPointF((det.x0 + det.x1) / 2, (det.y0 + det.y1) / 2))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=center)
    assert w.box_detail.text().startswith("detection: ")
    assert det.label.split()[0] in w.box_detail.text()
