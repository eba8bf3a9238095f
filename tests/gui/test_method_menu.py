"""The method menu: what the registry says the loaded model runs, each of which runs."""

from __future__ import annotations

import os

import pytest

from det_forget.forgetting.methods import get_method, methods_for

FORGET = "blue_triangle"
RCNN_METHODS = [m.name for m in methods_for("rcnn")]
DETR_CONFIG = os.path.join("configs", "detr", "shapes_detr_tiny_forget.yaml")
DETR_WEIGHTS = os.path.join("det_forget", "model_zoo", "shapes_detr_tiny.pth")


def _assert_menu(panel, task_type: str) -> None:
    methods = methods_for(task_type)
    assert panel.method_names() == [m.name for m in methods]
    for m in methods:
        tip = panel.tooltip_of(m.name)
        assert m.description in tip and m.reference in tip, (m.name, tip)


def test_demo_detector_menu_lists_the_rcnn_methods_with_tooltips(loaded):
    panel = loaded.forget_panel
    _assert_menu(panel, "rcnn")
    assert "retrain" not in panel.method_names()  # refused in detection by the registry
    assert "q/k/v" in panel.tooltip_of("no_retain") and "FFN" in panel.tooltip_of("gs_lora")
    assert panel.method.currentText() == loaded.session.cfg.FORGET.METHOD == "gs_lora"


def test_menu_is_rebuilt_for_the_tiny_detr(qtbot, loaded):
    from gui.main_window import REPO_ROOT

    w = loaded
    with qtbot.waitSignal(w.model_loaded, timeout=60000):
        w.load_model(str(REPO_ROOT / DETR_CONFIG), str(REPO_ROOT / DETR_WEIGHTS))
    assert w.errors == []
    _assert_menu(w.forget_panel, "detr")
    assert {"no_retain", "retrain"}.isdisjoint(w.forget_panel.method_names())
    with qtbot.waitSignal(w.model_loaded, timeout=60000):
        w.load_demo()
    assert "no_retain" in w.forget_panel.method_names()  # back to the R-CNN menu


def test_a_method_the_model_cannot_run_is_refused_before_the_job(qtbot, loaded):
    w = loaded
    w.select_categories([FORGET])
    w.forget_panel.extra_options.setText("FORGET.METHOD retrain")  # past the menu
    with qtbot.waitSignal(w.error_shown, timeout=10000) as blocker:
        w.start_forget()
    title, message = blocker.args
    assert title == "Invalid settings" and "not available for rcnn" in message
    assert "gs_lora" in message and not w.job_running


@pytest.mark.parametrize("method", RCNN_METHODS)
def test_each_listed_method_runs_two_steps_from_the_window(qtbot, loaded, mini_val, method):
    w = loaded
    panel = w.forget_panel
    spec = get_method(method)
    panel.method.setCurrentIndex(panel.method.findText(method))
    panel.iterations.setValue(2)
    panel.data_ratio.setValue(0.01)
    panel.extra_options.setText(
        f"SOLVER.IMS_PER_BATCH 2 FORGET.EVAL_BEFORE False DATASETS.TEST \"('{mini_val}',)\" "
        "FORGET.BASELINE.EWC_SAMPLES 4"
    )
    w.select_categories([FORGET])
    progress = []
    w.job_progress.connect(progress.append)
    with qtbot.waitSignal(w.job_finished, timeout=120000):
        w.start_forget()
    qtbot.waitUntil(lambda: not w.job_running, timeout=10000)
    assert w.errors == []
    assert w.jobs.cfg.FORGET.METHOD == method
    assert [p.iteration for p in progress] == [1, 2]
    # Exactly the method's loss terms (the retain loss is logged per detector term).
    logged = {"loss_retain" if k.startswith("retain_") else k for k in progress[-1].losses}
    assert logged - {"total_loss"} == set(spec.terms)
    # Adapters where the registry puts them (the app sets no layer list itself).
    layers = w.session.result_adapter_layers()
    if spec.adapters == "none":
        assert layers == []
    else:
        on_qkv = [name.endswith("attn.qkv") for name in layers]
        assert layers and all(on_qkv) == (spec.adapters == "qkv") and any(on_qkv) == all(on_qkv)
