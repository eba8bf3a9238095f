"""The app end to end on the demo model: load, browse, forget, compare, cancel, save, errors."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PySide6.QtCore import Qt

from det_forget.data import SHAPES_CLASS_NAMES
from det_forget.forgetting.run_dir import RunDirectory, RunHistory

FORGET = "blue_triangle"
# A short, strong job: 12 steps at 6x the config's learning rate drop the class on the demo
# model (AP_f 90 -> 0) while AP_r stays near 87 (0.003 forgets nothing, 0.005-0.008 works).
ITERS = 12
LR = 0.006


def _show_row(qtbot, w, row: int) -> None:
    """Select image ``row`` and wait until both panes have their detections drawn."""
    w.image_panel.select_row(row)
    qtbot.waitUntil(
        lambda: "detecting" not in w.compare.before_title.text() + w.compare.after_title.text(),
        timeout=30000,
    )


def _short_job(w, mini_val: str, *extra: str) -> None:
    panel = w.forget_panel
    panel.iterations.setValue(ITERS)
    panel.learning_rate.setValue(LR)
    panel.data_ratio.setValue(0.1)
    panel.extra_options.setText(
        f"SOLVER.IMS_PER_BATCH 4 SOLVER.WARMUP_ITERS 0 DATASETS.TEST \"('{mini_val}',)\" "
        + " ".join(extra)
    )


def test_load_demo_shows_categories_adapters_and_images(loaded):
    w = loaded
    assert w.category_panel.model.names == SHAPES_CLASS_NAMES
    assert w.model_panel.classes_label.text() == str(len(SHAPES_CLASS_NAMES))
    assert w.model_panel.adapter_layers.item(0).text() == "(no adapters)"
    assert w.image_panel.count() == 200 and w.image_panel.current_row() == 0
    assert "base" not in w.compare.before_title.text()  # no adapters: "loaded model"
    assert w.compare.after.placeholder_text.startswith("Run Forget")
    # Searching and stepping through the list.
    w.next_action.trigger()
    assert w.image_panel.current_entry().name == "000001.png"
    w.prev_action.trigger()
    assert w.image_panel.current_row() == 0
    w.image_panel.search.setText("00012")
    assert w.image_panel.count() == 11  # 000012, 000120 … 000129


def test_threshold_slider_filters_cached_detections_without_rerunning(qtbot, loaded):
    w = loaded
    calls = []
    predict = w.session.predict
    w.session.predict = lambda *a: calls.append(a) or predict(*a)
    for row in range(10):
        _show_row(qtbot, w, row)
        w.threshold_slider.setValue(5)
        low = w.compare.before.box_count()
        w.threshold_slider.setValue(95)
        high = w.compare.before.box_count()
        if low > high:
            break
    assert low > high, "no image with detections between scores 0.05 and 0.95"
    requested = len(calls)
    for value in (30, 60, 5, 100):
        w.threshold_slider.setValue(value)
        assert w.score_threshold == value / 100
    assert len(calls) == requested  # filtering never runs the model
    assert w.compare.before.box_count() <= high


def test_display_filter_shows_forgotten_or_retained_classes(qtbot, loaded):
    w = loaded
    w.set_score_threshold(0.05)
    labels = w.compare.before.box_labels()
    cls = labels[0].split()[0]
    w.select_categories([cls])
    w.filter_actions.actions()[1].trigger()  # "Forgotten classes only" (F)
    assert w.display_filter == "forgotten"
    assert w.compare.before.box_labels()
    assert all(lab.split()[0] == cls for lab in w.compare.before.box_labels())
    w.filter_actions.actions()[2].trigger()  # "Retained classes only" (R)
    assert all(lab.split()[0] != cls for lab in w.compare.before.box_labels())
    w.set_display_filter("all")
    assert len(w.compare.before.box_labels()) == len(labels)


def test_forget_run_progress_compare_and_save(qtbot, loaded, mini_val, tmp_path):
    w = loaded
    panel = w.forget_panel
    w.select_categories([FORGET])
    _short_job(w, mini_val)
    progress = []
    w.job_progress.connect(progress.append)
    with qtbot.waitSignal(w.job_started, timeout=10000):
        w.start_forget()
    # Controls that would conflict are off while the job runs; Cancel is on.
    assert w.job_running and panel.cancel_button.isEnabled()
    assert not panel.forget_button.isEnabled() and not panel.iterations.isEnabled()
    assert not w.open_run_action.isEnabled() and not w.save_action.isEnabled()
    # Loading another model stays possible: it asks before cancelling the job.
    assert w.demo_action.isEnabled() and w.open_model_action.isEnabled()
    first = w.category_panel.model.index(0, 0)
    assert not w.category_panel.model.flags(first) & Qt.ItemFlag.ItemIsUserCheckable
    with qtbot.waitSignal(w.job_finished, timeout=240000) as finished:
        pass
    qtbot.waitUntil(lambda: not w.job_running, timeout=10000)
    result = finished.args[0]
    assert w.errors == []

    # Progress arrived for every step, with an ETA and the loss terms.
    assert [p.iteration for p in progress] == list(range(1, ITERS + 1))
    assert progress[-1].fraction == 1.0 and progress[0].eta_seconds is not None
    assert "total_loss" in panel.loss_plot.series, (panel.loss_plot.series, progress[-1])
    assert len(panel.loss_plot.series["total_loss"]) == ITERS
    assert panel.forget_button.isEnabled() and w.save_action.isEnabled()
    # The final state is judged by the gates, with the thresholds shown.
    assert panel.progress.format() in ("done, gates passed",) or panel.progress.format().startswith(
        "gates failed: "
    )
    assert "gates: forgotten AP ≤ 5, retained AP drop ≤ 5 points" in panel.eta.text()
    assert "task" in panel.log.toPlainText()  # the trainer's log lines reach the log pane

    # History, adapter layers and the AP table come from the job's history.
    assert w.model_panel.history_model.rowCount() == 1
    record = w.model_panel.history_model.record(0)
    assert record.classes["forget"] == [FORGET] and record.adapter
    assert w.model_panel.adapter_layers.count() > 1  # every ViT block's FFN
    ap = panel.ap_model
    assert ap.value("AP_f (forget)", "After") < ap.value("AP_f (forget)", "Before")
    assert ap.value("H-Mean") is not None
    assert w.category_panel.model.ap_before(FORGET) is not None

    # The after view lost the forgotten class's boxes where the before view had them.
    # Other classes are still found (retained), at the default score threshold 0.5.
    lost, before_total, after_total, kept_before, kept_after = 0, 0, 0, 0, 0
    for row in range(8):
        _show_row(qtbot, w, row)
        before = [b for b in w.compare.before.box_labels() if b.startswith(FORGET)]
        after = [b for b in w.compare.after.box_labels() if b.startswith(FORGET)]
        before_total, after_total = before_total + len(before), after_total + len(after)
        kept_before += w.compare.before.box_count() - len(before)
        kept_after += w.compare.after.box_count() - len(after)
        lost += bool(before) and not after
    assert lost >= 1 and after_total < before_total, (before_total, after_total)
    assert kept_after >= kept_before // 2, (kept_before, kept_after)
    assert "forgot: " + FORGET in w.compare.after_title.text()

    # Save: adapter, the run's files (history, config, merged checkpoint) and the comparison.
    out = tmp_path / "saved"
    written = w.save_results(str(out))
    assert (out / "adapters" / "task_00" / "adapter_model.safetensors").is_file()
    assert (out / "model_merged.pth").is_file() and (out / "merged_config.yaml").is_file()
    history = json.loads((out / "history.json").read_text())
    assert history["tasks"][0]["classes"]["forget"] == [FORGET]
    assert history["method"] == "gs_lora" and (out / "config.yaml").is_file()
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["forgotten_classes"] == [FORGET] and "after" in comparison
    assert len(written) == 8 and all(os.path.exists(p) for p in written)  # + request.json
    # Self-contained: the saved config loads the saved merged model; files are 0644.
    merged_cfg = (out / "merged_config.yaml").read_text()
    assert str((out / "model_merged.pth").resolve()) in merged_cfg
    assert f"WEIGHTS: {result.output_dir}" not in merged_cfg
    for p in written:
        for f in [p] if os.path.isfile(p) else [os.path.join(p, n) for n in os.listdir(p)]:
            assert os.stat(f).st_mode & 0o777 == 0o644, f
    # comparison.png holds the two images, not the views' empty background.
    from PySide6.QtGui import QImage

    png = QImage(str(out / "comparison.png"))
    view = w.compare.before
    image_px = view.mapFromScene(view.sceneRect()).boundingRect()
    assert png.width() <= 2 * image_px.width() + 30 < w.compare.width() + 30
    assert result.output_dir.startswith(str(tmp_path))


def _random_adapter(w, directory) -> str:
    """An adapter for the loaded demo model (random B, as if trained)."""
    import copy

    from det_forget.config import lora_config_from_cfg
    from det_forget.lora import inject_lora, lora_layers, save_adapter

    model = copy.deepcopy(w.session.loaded.model)
    config = lora_config_from_cfg(w.session.cfg)
    inject_lora(model, config)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            for part in layer.parts:
                layer.lora_B[part].normal_(0, 0.01)
    # The manifest carries the task's record, as the run directory writes it.
    save_adapter(
        model, directory, config, metadata={"task": {"index": 0}, "classes": {"forget": ["x"]}}
    )
    return str(directory)


@pytest.mark.parametrize("with_adapter", [False, True], ids=["base", "adapter"])
def test_cancel_keeps_the_loaded_model_bit_identical(
    qtbot, loaded, mini_val, tmp_path, with_adapter
):
    w = loaded
    if with_adapter:
        adapter = _random_adapter(w, tmp_path / "task_00")
        with qtbot.waitSignal(w.model_loaded, timeout=60000):
            w.load_model(w.demo_config, w.demo_weights, [adapter])
        assert w.model_panel.adapter_layers.count() == len(w.session.loaded.adapter_layers) > 1
        assert w.model_panel.history_model.rowCount() == 1  # read from the adapter manifest
        _show_row(qtbot, w, 0)
        assert "adapters disabled" in w.compare.before_title.text()
        assert "with adapters" in w.compare.after_title.text()
    model = w.session.loaded.model
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    w.select_categories([FORGET])
    _short_job(w, mini_val, "FORGET.EVAL_BEFORE False")
    w.forget_panel.iterations.setValue(500)
    w.job_progress.connect(lambda p: w.cancel_forget())
    with qtbot.waitSignal(w.job_cancelled, timeout=120000):
        w.start_forget()
    qtbot.waitUntil(lambda: not w.job_running, timeout=10000)
    state = model.state_dict()
    assert w.session.loaded.model is model and set(state) == set(snapshot)
    assert all(torch.equal(v, state[k]) for k, v in snapshot.items())
    assert w.session.result is None and w.errors == []
    assert "cancelled" in w.forget_panel.progress.format()
    assert w.forget_panel.forget_button.isEnabled() and w.demo_action.isEnabled()
    first = w.category_panel.model.index(0, 0)
    assert w.category_panel.model.flags(first) & Qt.ItemFlag.ItemIsUserCheckable
    assert not os.path.exists(os.path.join(w.jobs.cfg.OUTPUT_DIR, "model_merged.pth"))
    # With adapters, the job continued from them (merged into its start checkpoint).
    assert w.jobs.cfg.MODEL.WEIGHTS.endswith("start_model_merged.pth") == with_adapter


def test_evaluate_fills_ap_before(qtbot, loaded, mini_val):
    w = loaded
    w.session.cfg.DATASETS.TEST = (mini_val,)
    with qtbot.waitSignal(w.evaluated, timeout=60000) as blocker:
        w.evaluate_before()
    per_class = blocker.args[0]
    assert set(per_class) == set(SHAPES_CLASS_NAMES)
    known = [n for n, v in per_class.items() if v is not None]
    assert known and w.category_panel.model.ap_before(known[0]) == per_class[known[0]]


def _expect_error(qtbot, w, action, title_part: str, message_part: str = "") -> None:
    with qtbot.waitSignal(w.error_shown, timeout=60000) as blocker:
        action()
    title, message = blocker.args
    assert title_part in title, (title, message)
    assert message_part in message, (title, message)
    box = w._error_box
    assert box is not None and box.isVisible()
    # A long message shows its first lines; the whole of it is under "Show Details".
    assert message in (box.text(), box.detailedText())
    box.close()


def test_bad_model_files_show_error_dialogs(qtbot, window, tmp_path):
    from detection_fixtures import save_base_checkpoint, tiny_cfg

    w = window
    config = w.demo_config
    _expect_error(
        qtbot, w, lambda: w.load_model(str(tmp_path / "nope.yaml")), "file not found", "nope.yaml"
    )
    not_yaml = tmp_path / "bad.yaml"
    not_yaml.write_text("MODEL: [unclosed\n")
    _expect_error(qtbot, w, lambda: w.load_model(str(not_yaml)), "Cannot load", "bad.yaml")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    _expect_error(
        qtbot, w, lambda: w.load_model(config, str(garbage)), "Cannot load", "garbage.pth"
    )
    wrong = save_base_checkpoint(tiny_cfg(tmp_path), tmp_path / "tiny_other_arch.pth")
    _expect_error(qtbot, w, lambda: w.load_model(config, wrong), "wrong checkpoint", "does not fit")
    _expect_error(
        qtbot,
        w,
        lambda: w.load_model(config, w.demo_weights, [str(tmp_path)]),
        "file not found",
        "not an adapter folder",
    )
    assert w.session is None  # nothing half-loaded


def test_no_images_and_nothing_selected_show_error_dialogs(qtbot, loaded, tmp_path):
    w = loaded
    (tmp_path / "empty").mkdir()
    _expect_error(qtbot, w, lambda: w.open_folder(str(tmp_path / "empty")), "No images")
    _expect_error(qtbot, w, lambda: w.open_folder(str(tmp_path / "missing")), "No images")
    _expect_error(qtbot, w, lambda: w.open_dataset("no_such_dataset"), "No images")
    _expect_error(qtbot, w, w.start_forget, "Nothing selected")
    _expect_error(qtbot, w, lambda: w.save_results(str(tmp_path)), "Nothing to save")
    w.select_categories(SHAPES_CLASS_NAMES)
    _expect_error(qtbot, w, w.start_forget, "Nothing left")
    # The app is still usable: the model and the image list are as before.
    assert w.session is not None and w.image_panel.count() == 200
    assert not w.job_running


def test_open_run_history_fills_history_and_ap_table(qtbot, loaded, tmp_path):
    w = loaded
    before = {n: 80.0 for n in SHAPES_CLASS_NAMES}
    after = {**before, FORGET: 2.0}
    retain = [n for n in SHAPES_CLASS_NAMES if n != FORGET]
    task = {
        "task": {"index": 0},
        "classes": {"forget": [FORGET], "retain": retain, "old": [], "missing": []},
        "before": before,
        "after": after,
        "summary": {
            "before": {"forget": 80.0, "retain": 80.0},
            "after": {"forget": 2.0, "retain": 80.0},
            "drop": 78.0,
            "h_mean": 79.0,
        },
        "adapter": None,
    }
    history = RunHistory("gs_lora", "rcnn", "AP", list(SHAPES_CLASS_NAMES), [task])
    RunDirectory(tmp_path).write_history(history)
    with qtbot.waitSignal(w.history_loaded):
        w.open_run(str(tmp_path))
    history = w.model_panel.history_model
    assert history.rowCount() == 1
    assert history.data(history.index(0, 1)) == FORGET
    assert history.data(history.index(0, 3)) == "80.0 → 2.0"
    assert w.forget_panel.ap_model.value("H-Mean") == 79.0
    assert w.category_panel.model.ap_before(FORGET) == 80.0
    _expect_error(qtbot, w, lambda: w.open_run(str(tmp_path / "none")), "history")


@pytest.mark.parametrize("argv", [["--demo"], ["--config", "c.yaml", "--adapter", "a"]])
def test_command_line(argv):
    from gui.app import build_parser

    args = build_parser().parse_args(argv)
    assert args.demo == ("--demo" in argv)
    assert args.adapter == (["a"] if "--adapter" in argv else [])
