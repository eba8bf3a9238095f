"""Widgets and helpers on their own (no model)."""

from __future__ import annotations

import logging

import pytest
from PySide6.QtCore import Qt

from det_forget.engine import JobProgress
from det_forget.engine.inference import ForgetRecord
from det_forget.forgetting.methods import methods_for


def test_loss_plot_draws_series(qtbot):
    from gui.views import LossPlot

    plot = LossPlot(max_series=2)
    qtbot.addWidget(plot)
    plot.resize(300, 160)
    assert not plot.grab().isNull()  # empty plot paints its hint
    for it in range(1, 5):
        plot.add_point(it, {"total_loss": 1.0 / it, "loss_a": 0.5, "loss_b": float("nan")})
    assert list(plot.series) == ["total_loss", "loss_a"]
    assert [x for x, _ in plot.series["total_loss"]] == [1, 2, 3, 4]
    assert not plot.grab().isNull()


def test_compare_views_share_zoom_and_pan(qtbot):
    from PySide6.QtGui import QColor, QPixmap

    from gui.views import BoxSpec, CompareView

    compare = CompareView()
    qtbot.addWidget(compare)
    compare.resize(800, 600)
    compare.show()
    pixmap = QPixmap(192, 192)
    pixmap.fill(QColor("gray"))
    for view in compare.views():
        view.set_image(pixmap)
    compare.before.set_boxes([BoxSpec(10, 10, 50, 60, "a 0.90", QColor("red"))])
    compare.image_changed()
    assert compare.before.box_count() == 1 and compare.before.box_labels() == ["a 0.90"]
    fitted = compare.zoom_factor()
    compare.zoom(3.0, compare.after)
    assert compare.zoom_factor() > fitted
    assert compare.before.transform() == compare.after.transform()
    for bar_of in ("horizontalScrollBar", "verticalScrollBar"):
        a, b = getattr(compare.before, bar_of)(), getattr(compare.after, bar_of)()
        assert a.maximum() > 0
        a.setValue(a.maximum() // 2)
        assert b.value() == a.value()
        b.setValue(b.maximum() // 3)
        assert a.value() == b.value() > 0
    compare.fit()
    assert compare.zoom_factor() == fitted
    assert compare.before.transform() == compare.after.transform()


def test_forget_panel_progress_and_options(qtbot):
    from gui.views import ForgetPanel, format_eta

    panel = ForgetPanel()
    qtbot.addWidget(panel)
    assert panel.method.count() == 0 and panel.settings().method == ""  # no model yet
    panel.set_methods(methods_for("detr"))
    assert panel.method_names() == [m.name for m in methods_for("detr")]
    assert panel.method.currentText() == "gs_lora"
    assert "GS-LoRA (Zhao et al., CVPR 2024)" in panel.tooltip_of("gs_lora")
    assert "FFN" in panel.tooltip_of("gs_lora") and "gs_lora" not in panel.tooltip_of("x")
    assert panel.tooltip_of("gs_lora") in panel.method.toolTip()  # the closed menu too
    panel.method.setCurrentText("finetune")
    assert "full weights" in panel.method.toolTip()
    panel.iterations.setValue(7)
    panel.extra_options.setText("SOLVER.IMS_PER_BATCH 2 DATASETS.TEST \"('x',)\"")
    settings = panel.settings()
    assert (settings.method, settings.max_iter) == ("finetune", 7)
    assert settings.extra_opts() == ["SOLVER.IMS_PER_BATCH", "2", "DATASETS.TEST", "('x',)"]
    panel.extra_options.setText("SOLVER.IMS_PER_BATCH")
    with pytest.raises(ValueError, match="KEY VALUE"):
        panel.settings().extra_opts()
    panel.set_running(True)
    panel.show_progress(JobProgress(3, 12, 0, 1, 65.0, {"total_loss": 0.5}))
    assert panel.progress.value() == 250 and "ETA 0:01:05" in panel.eta.text()
    assert not panel.method.isEnabled() and panel.cancel_button.isEnabled()
    assert format_eta(None) == "--:--" and format_eta(3725) == "1:02:05"


def test_category_model_checks_and_locking():
    from gui.models import CategoryModel

    model = CategoryModel()
    model.set_classes(["a", "b", "c"])
    index = model.index(1, 0)
    assert model.setData(index, Qt.CheckState.Checked, Qt.ItemDataRole.CheckStateRole)
    assert model.checked_names() == ["b"]
    model.set_checkable(False)
    assert not model.setData(index, Qt.CheckState.Unchecked, Qt.ItemDataRole.CheckStateRole)
    assert model.checked_names() == ["b"]
    model.set_ap(before={"a": 50.0})
    assert model.data(model.index(0, 1)) == "50.0" and model.data(model.index(1, 1)) == ""


def test_ap_table_rows_from_a_record():
    from gui.models import APTableModel

    model = APTableModel()
    rec = ForgetRecord(
        task=0,
        classes={"forget": ["a"], "retain": ["b"], "old": [], "missing": []},
        before={"a": 60.0, "b": 70.0},
        after={"a": 5.0, "b": 68.0},
        summary={
            "before": {"forget": 60.0, "retain": 70.0, "old": None},
            "after": {"forget": 5.0, "retain": 68.0, "old": None},
            "drop": 55.0,
            "h_mean": 61.0,
        },
    )
    model.set_record(rec)
    names = [model.data(model.index(r, 0)) for r in range(model.rowCount())]
    assert names == ["AP_f (forget)", "AP_r (retain)", "Drop", "H-Mean", "a", "b"]
    assert model.data(model.index(4, 4)) == "-55.0"
    assert model.value("AP_r (retain)", "Before") == 70.0


def test_log_handler_forwards_records_to_the_gui_thread(qtbot):
    from gui.log_handler import QtLogHandler, attach_log_handler, detach_log_handler

    handler = QtLogHandler()
    lines = []
    handler.emitter.message.connect(lines.append)
    previous = attach_log_handler(handler)
    try:
        logging.getLogger("det_forget.engine.test").info("hello from the trainer")
        qtbot.waitUntil(lambda: any("hello from the trainer" in x for x in lines), timeout=2000)
    finally:
        detach_log_handler(handler, previous)
    assert handler not in logging.getLogger("det_forget").handlers


def test_class_colours_are_stable():
    from gui.colors import class_color

    assert class_color(3).name() == class_color(3).name()
    assert class_color(2, "blue_triangle").name() == "#2850f0"
    assert len({class_color(i).name() for i in range(20)}) == 20
