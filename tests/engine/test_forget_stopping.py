"""Detection's stopping rule end to end on a tiny detector: it stops a task whose classes
are forgotten (and the next task starts on time), and it never stops one whose class the
detector still recognises. The tiny model is random except for its classifier bias,
which makes the forget classes forgotten (-30) or recognised in every box (+30)."""

import json
import logging

import torch
from detection_fixtures import save_base_checkpoint, tiny_cfg

from det_forget.engine import ForgetTrainer, finalize_forget_config
from det_forget.engine.forget_data import thing_classes_of

STOP = {
    "FORGET.MAX_ITER": 8,
    "FORGET.EARLY_STOP.PERIOD": 2,
    "FORGET.EARLY_STOP.PATIENCE": 2,
    "FORGET.EARLY_STOP.HELDOUT_IMAGES": 4,
    # A random detector's retain loss wanders by more than 10% between two 2-step windows;
    # the retain condition is tested in tests/forgetting/test_stopping.py.
    "FORGET.EARLY_STOP.RETAIN_MARGIN": 10.0,
    "SOLVER.BASE_LR": 1e-4,
}


def _weights(tmp_path, classes, bias):
    cfg = tiny_cfg(tmp_path)
    path = save_base_checkpoint(cfg, tmp_path / "base.pth")
    state = torch.load(path, weights_only=True)
    names = thing_classes_of(cfg)
    b = state["model"]["roi_heads.box_predictor.cls_score.bias"]
    for c in classes:
        b[names.index(c)] = bias
    torch.save(state, path)
    return path


def _run(cfg):
    finalize_forget_config(cfg)
    cfg.freeze()
    trainer = ForgetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    return trainer, trainer.train()


def test_forgotten_tasks_stop_early_and_the_next_starts_on_time(tmp_path, tiny_shapes, caplog):
    tasks = [["red_circle"], ["cyan_ring"]]
    weights = _weights(tmp_path, ["red_circle", "cyan_ring"], -30.0)
    out = tmp_path / "run"
    cfg = tiny_cfg(
        out,
        **{**STOP, "MODEL.WEIGHTS": weights, "FORGET.CLASSES": [], "FORGET.TASKS": tasks},
    )
    with caplog.at_level(logging.INFO, logger="det_forget"):
        trainer, history = _run(cfg)
    # Checks after steps 2 and 4 pass: each task stops at its 4th step; task 2 starts at
    # its own first iteration (8) and the run ends at its stop.
    assert [r["train"]["iterations"] for r in history] == [[0, 4], [8, 12]]
    for record in history:
        stop = record["train"]["stopping"]
        assert stop["stopped_at"] == 4 and stop["steps"] == 4
        assert [c["passed"] for c in stop["checks"]] == [True, True]
        assert stop["heldout_images"] > 0
        forget = record["classes"]["forget"][0]
        assert stop["checks"][-1]["scores"][forget] == 0.0
        assert stop["checks"][-1]["forget_loss"][forget] > 5.0
    assert cfg.SOLVER.MAX_ITER == 16 and trainer.iter == 12  # one past the last run
    assert sum("Trained 8 iterations (ceiling 16)" in r.getMessage() for r in caplog.records) == 1
    assert sum("stopped at iteration 4:" in r.getMessage() for r in caplog.records) == 2
    saved = json.loads((out / "history.json").read_text())
    assert saved["tasks"][1]["train"]["stopping"]["stopped_at"] == 4
    assert (out / "adapters" / "task_01").is_dir() and (out / "model_merged.pth").is_file()
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert any(m.get("stop/stopped") == 1.0 for m in metrics)
    # The held-out images are training images the task did not train on.
    split = trainer.task_data.split
    used = {r["file_name"] for r in split.forget_dicts}
    assert not used & {r["file_name"] for r in trainer.task_data.heldout}
    assert all(r["file_name"].split("/")[-2] != "val" for r in trainer.task_data.heldout)


def test_a_recognised_class_is_never_stopped_early(tmp_path, tiny_shapes):
    weights = _weights(tmp_path, ["blue_triangle", "cyan_ring"], 30.0)
    cfg = tiny_cfg(tmp_path / "run", **{**STOP, "MODEL.WEIGHTS": weights, "SOLVER.BASE_LR": 1e-9})
    _, history = _run(cfg)
    stop = history[0]["train"]["stopping"]
    assert history[0]["train"]["iterations"] == [0, 8]
    assert stop["stopped_at"] is None and stop["reason"] == "reached MAX_ITER"
    assert len(stop["checks"]) == 3  # after steps 2, 4, 6; step 8 is the ceiling
    for check in stop["checks"]:
        assert not check["passed"]
        # Every box is called the forget class: its forget loss is far below the bound.
        assert any("forget loss" in reason for reason in check["reasons"])


def test_resume_after_an_early_stop_finishes_the_task_and_starts_the_next_on_time(
    tmp_path, tiny_shapes
):
    tasks = [["red_circle"], ["cyan_ring"]]
    weights = _weights(tmp_path, ["red_circle", "cyan_ring"], -30.0)
    out = tmp_path / "run"
    kw = {**STOP, "MODEL.WEIGHTS": weights, "FORGET.CLASSES": [], "FORGET.TASKS": tasks}
    _, full = _run(tiny_cfg(out, **kw))
    # Killed right after task 1's trained state was saved (its stop), before its outputs.
    (out / "last_checkpoint").write_text("model_task00_trained.pth")
    (out / "history.json").unlink()
    cfg = tiny_cfg(out, **kw)
    finalize_forget_config(cfg)
    cfg.freeze()
    trainer = ForgetTrainer(cfg)
    trainer.resume_or_load(resume=True)
    history = trainer.train()
    assert trainer.start_iter == 4  # the iteration after the stop
    assert [r["train"]["iterations"] for r in history] == [[0, 4], [8, 12]]
    assert history[1]["train"]["stopping"]["stopped_at"] == 4
    assert history[1]["after"] == full[1]["after"]


def test_the_app_job_reports_the_early_stop(tmp_path, tiny_shapes):
    # The app's progress view shows JobProgress.message: the stop, in the log's words.
    from det_forget.engine import ForgetJob

    weights = _weights(tmp_path, ["red_circle"], -30.0)
    cfg = tiny_cfg(tmp_path / "run", **{**STOP, "MODEL.WEIGHTS": weights})
    cfg.FORGET.CLASSES = ["red_circle"]
    seen = []
    job = ForgetJob(cfg)
    job.on_progress = seen.append
    job.run()
    assert [p.message for p in seen[:3]] == ["", "", ""]  # no stop before the 2nd check
    assert seen[-1].message.startswith("task 1 stopped at iteration 4 of 8: ")
    assert "held-out AP <= 2 (red_circle 0.0)" in seen[-1].message
