"""The window's controllers on their own: no window, a session loaded without Qt."""

from __future__ import annotations

import pytest

from det_forget.data import SHAPES_CLASS_NAMES


@pytest.fixture(scope="module")
def demo_session(demo_weights):
    from gui.controllers import load_session
    from gui.main_window import default_demo_paths

    return load_session(default_demo_paths()[0], demo_weights)


@pytest.fixture
def runner(qtbot):
    from gui.workers import TaskRunner

    runner = TaskRunner()
    yield runner
    runner.shutdown()


def _settings(**kw):
    from gui.views import ForgetSettings

    return ForgetSettings(
        **{"method": "gs_lora", "max_iter": 3, "data_ratio": 0.1, "base_lr": 1e-3, **kw}
    )


def test_load_session_holds_a_forgetting_config(demo_session, demo_weights):
    assert demo_session.class_names == SHAPES_CLASS_NAMES
    assert demo_session.cfg.MODEL.META_ARCHITECTURE == "ForgettingDetector"
    assert demo_session.cfg.MODEL.WEIGHTS == demo_session.loaded.weights == demo_weights
    assert demo_session.records == [] and demo_session.result is None


def test_job_config_from_the_panel_settings(demo_session, tmp_path):
    from gui.controllers import job_config

    settings = _settings(method="no_retain", extra_options="SOLVER.IMS_PER_BATCH 2")
    cfg = job_config(demo_session, ["cyan_ring"], settings, str(tmp_path))
    assert cfg.FORGET.METHOD == "no_retain" and list(cfg.FORGET.CLASSES) == ["cyan_ring"]
    assert cfg.DATALOADER.NUM_WORKERS == 0  # the app's override, before the user's
    assert cfg.SOLVER.IMS_PER_BATCH == 2 and cfg.OUTPUT_DIR.startswith(str(tmp_path))
    assert "forget_" in cfg.OUTPUT_DIR and cfg.OUTPUT_DIR.endswith("_cyan_ring")
    own_root = job_config(demo_session, ["cyan_ring"], _settings(output_root="/x/runs"), "")
    assert own_root.OUTPUT_DIR.startswith("/x/runs/forget_")


@pytest.mark.parametrize(
    "session, classes, settings, title, message",
    [
        (False, ["red_circle"], {}, "No model", "Load a model"),
        (True, [], {}, "Nothing selected", "Categories tab"),
        (True, list(SHAPES_CLASS_NAMES), {}, "Nothing left", "keep at least one"),
        (True, ["red_circle"], {"method": "retrain"}, "Invalid settings", "not available"),
        (True, ["red_circle"], {"extra_options": "A 'b"}, "Invalid settings", "quotation"),
        (True, ["red_circle"], {"extra_options": "SOLVER.BASE_LR"}, "Invalid settings", "KEY"),
    ],
    ids=["no-model", "nothing", "everything", "method", "quotes", "odd"],
)
def test_job_controller_refuses_what_cannot_run(
    runner, demo_session, tmp_path, session, classes, settings, title, message
):
    from gui.controllers import ActionRefused, JobController

    jobs = JobController(runner)
    with pytest.raises(ActionRefused) as info:
        jobs.start(demo_session if session else None, classes, _settings(**settings), str(tmp_path))
    assert info.value.title == title and message in info.value.message
    assert not jobs.running and jobs.cfg is None


def test_audit_and_export_refuse_without_a_result(runner, demo_session, tmp_path):
    from gui.controllers import ActionRefused, AuditController, comparison_summary, save_results

    audits = AuditController(runner)
    with pytest.raises(ActionRefused, match="Load a model"):
        audits.evaluate_before(None)
    with pytest.raises(ActionRefused, match="Run a forgetting job") as info:
        audits.run_audit(demo_session, [2])
    assert info.value.title == "Nothing to audit" and not audits.auditing
    with pytest.raises(ActionRefused, match="Run a forgetting job"):
        save_results(demo_session, tmp_path, b"", {})
    summary = comparison_summary(
        demo_session,
        None,
        sources=("base", None),
        score_threshold=0.5,
        display_filter="all",
        visible_ids=None,
    )
    assert summary["run"] is None and "before" not in summary and summary["image"] is None
