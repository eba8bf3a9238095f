"""The forgetting trainer end to end on a tiny random model (mechanics, not quality)."""

import json
import os

import pytest
import torch
from detection_fixtures import TINY_VAL, save_base_checkpoint, tiny_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import DefaultPredictor

from det_forget.engine import ForgetTrainer, finalize_forget_config
from det_forget.engine.inference import build_config
from det_forget.forgetting import RunDirectory
from det_forget.lora import read_adapter_config


def _run(cfg, resume=False):
    finalize_forget_config(cfg)
    cfg.freeze()
    trainer = ForgetTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    return trainer, trainer.train()


@pytest.fixture
def base_weights(tmp_path):
    return save_base_checkpoint(tiny_cfg(tmp_path), tmp_path / "base.pth")


def test_continual_run_writes_adapters_report_and_merged_model(tmp_path, tiny_shapes, base_weights):
    out = tmp_path / "run"
    cfg = tiny_cfg(
        out,
        **{
            "MODEL.WEIGHTS": base_weights,
            "FORGET.CLASSES": [],
            "FORGET.TASKS": [["red_circle"], ["green_square", "cyan_ring"]],
        },
    )
    trainer, history = _run(cfg)
    assert cfg.SOLVER.MAX_ITER == 6
    assert [h["classes"]["forget"] for h in history] == [
        ["red_circle"],
        ["green_square", "cyan_ring"],
    ]
    assert history[1]["classes"]["old"] == ["red_circle"]
    assert history[1]["before"] == history[0]["after"]  # task 2 starts where task 1 ended
    for i, h in enumerate(history):
        doc = read_adapter_config(out / "adapters" / f"task_{i:02d}")
        meta = doc["lora_config"]["metadata"]
        assert meta["classes"] == h["classes"] and meta["metrics_after"] == h["after"]
        assert meta["data_used"] and len(meta["config_hash"]) == 16
    run = RunDirectory(out).read_history()
    assert run.method == "gs_lora" and run.task_type == "rcnn" and run.metric == "AP"
    assert len(run.tasks) == 2 and run.tasks[0]["summary"] is not None
    assert run.tasks == history
    assert run.forgotten_classes == ["red_circle", "green_square", "cyan_ring"]
    adapters = [out / "adapters" / "task_00", out / "adapters" / "task_01"]
    assert RunDirectory(out).adapters() == adapters
    assert RunDirectory(out).merged_model() == out / "model_merged.pth"
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    logged = set().union(*metrics)
    assert {"loss_forget_bounded", "loss_group_lasso", "retain_loss_cls"} <= logged

    # The merged checkpoint is a plain detector: stock DefaultPredictor loads it, with the
    # base's parameter count, and detects exactly what the adapter model detects.
    merged_cfg = build_config(
        out / "merged_config.yaml", ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
    )
    predictor = DefaultPredictor(merged_cfg)
    base_params = sum(v.numel() for v in torch.load(base_weights)["model"].values())
    assert sum(p.numel() for p in predictor.model.state_dict().values()) == base_params
    import numpy as np
    from PIL import Image

    d = DatasetCatalog.get(TINY_VAL)[0]
    image = np.asarray(Image.open(d["file_name"]).convert("RGB"))
    merged = predictor(image[:, :, ::-1])["instances"]  # DefaultPredictor takes BGR
    adapter_model = trainer.model.eval()
    adapter_model.detector.roi_heads.box_predictor.test_score_thresh = 0.0
    with torch.no_grad():
        x = torch.as_tensor(image.transpose(2, 0, 1).copy())
        ref = adapter_model([{"image": x, "height": 64, "width": 64}])[0]["instances"]
    assert len(merged) == len(ref) > 0
    torch.testing.assert_close(merged.pred_boxes.tensor, ref.pred_boxes.tensor, atol=1e-3, rtol=0)


def test_resume_continues_from_checkpoint(tmp_path, tiny_shapes, base_weights):
    out = tmp_path / "run"
    kw = {"MODEL.WEIGHTS": base_weights, "FORGET.MAX_ITER": 4, "SOLVER.CHECKPOINT_PERIOD": 2}
    cfg = tiny_cfg(
        out, **{**kw, "FORGET.CLASSES": [], "FORGET.TASKS": [["red_circle"], ["cyan_ring"]]}
    )
    _run(cfg)
    full = json.loads((out / "history.json").read_text())
    from safetensors.torch import load_file

    full_adapter = load_file(str(out / "adapters" / "task_01" / "adapter_model.safetensors"))
    # Pretend the run was killed after iteration 6 (task 2 half done): resume from there.
    (out / "last_checkpoint").write_text("model_0000005.pth")
    os.remove(out / "history.json")
    cfg2 = tiny_cfg(
        out, **{**kw, "FORGET.CLASSES": [], "FORGET.TASKS": [["red_circle"], ["cyan_ring"]]}
    )
    trainer, history = _run(cfg2, resume=True)
    assert trainer.start_iter == 6
    assert len(history) == 2
    assert history[0] == json.loads(json.dumps(full["tasks"][0]))  # task 1 from the checkpoint
    # Same data, same per-iteration randomness: the resumed run ends where the full one did.
    assert history[1]["after"] == full["tasks"][1]["after"]
    resumed_adapter = load_file(str(out / "adapters" / "task_01" / "adapter_model.safetensors"))
    assert any(torch.count_nonzero(v) for k, v in full_adapter.items() if ".lora_B." in k)
    assert all(torch.equal(full_adapter[k], resumed_adapter[k]) for k in full_adapter)
    final = json.loads((out / "history.json").read_text())
    assert final["tasks"][1]["details"]["results"] == full["tasks"][1]["details"]["results"]


def test_bad_inputs_fail_clearly(tmp_path, tiny_shapes, base_weights):
    with pytest.raises(ValueError, match="unknown class 'zebra'"):
        finalize_forget_config(tiny_cfg(tmp_path, **{"FORGET.CLASSES": ["zebra"]}))
    with pytest.raises(ValueError, match="empty forget set"):
        finalize_forget_config(tiny_cfg(tmp_path, **{"FORGET.CLASSES": []}))
    every = [
        "red_circle",
        "green_square",
        "blue_triangle",
        "yellow_star",
        "magenta_cross",
        "cyan_ring",
        "orange_diamond",
        "purple_hexagon",
        "white_bar",
        "brown_arrow",
    ]
    with pytest.raises(ValueError, match="forget every class"):
        finalize_forget_config(tiny_cfg(tmp_path, **{"FORGET.CLASSES": every}))


def test_nan_loss_stops_without_touching_outputs(tmp_path, tiny_shapes, base_weights):
    out = tmp_path / "run"
    cfg = tiny_cfg(
        out, **{"MODEL.WEIGHTS": base_weights, "FORGET.LOSS.FORGET_WEIGHT": float("nan")}
    )
    with pytest.raises(FloatingPointError, match="'loss_forget_bounded' is nan at step 0"):
        _run(cfg)
    assert not (out / "model_merged.pth").exists()
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_job_reports_progress_and_cancel_keeps_caller_model(tmp_path, tiny_shapes, base_weights):
    from detectron2.modeling import build_model

    from det_forget.checkpoint import ForgetCheckpointer
    from det_forget.engine import ForgetJob, JobCancelled

    cfg = tiny_cfg(tmp_path / "run", **{"MODEL.WEIGHTS": base_weights, "FORGET.MAX_ITER": 4})
    held = build_model(cfg)
    ForgetCheckpointer(held).load(base_weights)
    snapshot = {k: v.clone() for k, v in held.state_dict().items()}
    seen = []
    job = ForgetJob(cfg)

    def on_progress(p):
        seen.append(p)
        if p.iteration == 2:
            job.cancel()

    job.on_progress = on_progress
    with pytest.raises(JobCancelled, match="iteration 2"):
        job.run()
    assert [p.iteration for p in seen] == [1, 2]
    assert seen[0].max_iter == 4 and seen[0].num_tasks == 1 and "total_loss" in seen[0].losses
    assert all(torch.equal(v, held.state_dict()[k]) for k, v in snapshot.items())
    assert not (tmp_path / "run" / "model_merged.pth").exists()


@pytest.mark.parametrize("arch", ["detr", "deformable_detr"])
def test_detr_family_forgetting_run_and_merged_checkpoint(tmp_path, tiny_shapes, arch):
    """The same trainer, report and merged checkpoint for DETR and Deformable DETR."""
    config = f"detr/shapes_{arch}_tiny_forget.yaml"
    overrides = {"MODEL.DETR.IN_FEATURES": ["p3", "p4"]} if arch != "detr" else {}
    base = save_base_checkpoint(tiny_cfg(tmp_path, config, **overrides), tmp_path / "base.pth")
    out = tmp_path / "run"
    cfg = tiny_cfg(out, config, **{"MODEL.WEIGHTS": base, **overrides})
    trainer, history = _run(cfg)
    assert history[0]["classes"]["forget"] == ["blue_triangle", "cyan_ring"]
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert {"loss_forget_bounded", "loss_forget_giou", "retain_loss_ce"} <= set().union(*metrics)
    assert (out / "adapters" / "task_00").is_dir()

    merged_cfg = build_config(out / "merged_config.yaml")
    assert merged_cfg.MODEL.META_ARCHITECTURE == ("DETR" if arch == "detr" else "DeformableDETR")
    predictor = DefaultPredictor(merged_cfg)
    base_params = sum(v.numel() for v in torch.load(base)["model"].values())
    assert sum(p.numel() for p in predictor.model.state_dict().values()) == base_params
    import numpy as np
    from PIL import Image

    d = DatasetCatalog.get(TINY_VAL)[0]
    image = np.asarray(Image.open(d["file_name"]).convert("RGB"))
    merged = predictor(image[:, :, ::-1])["instances"]
    with torch.no_grad():
        x = torch.as_tensor(image.transpose(2, 0, 1).copy())
        ref = trainer.model.eval()([{"image": x, "height": 64, "width": 64}])[0]["instances"]
    assert len(merged) == len(ref) > 0
    torch.testing.assert_close(merged.scores, ref.scores, atol=1e-4, rtol=0)
    torch.testing.assert_close(merged.pred_boxes.tensor, ref.pred_boxes.tensor, atol=1e-3, rtol=0)


def test_before_report_is_reused_instead_of_evaluating(tmp_path, tiny_shapes, base_weights):
    from det_forget.engine.forget_data import thing_classes_of
    from det_forget.evaluation.coco_forget import load_before

    first = tmp_path / "first"
    _run(tiny_cfg(first, **{"MODEL.WEIGHTS": base_weights}))
    report = first / "inference" / "task_00" / "forget_report.json"  # an evaluator report
    second = tmp_path / "second"
    cfg = tiny_cfg(second, **{"MODEL.WEIGHTS": base_weights, "FORGET.BEFORE_REPORT": str(report)})
    _, history = _run(cfg)
    ap, _ = load_before(report, thing_classes_of(cfg))
    assert history[0]["before"] == ap
    assert "drop" in history[0]["summary"] and "h_mean" in history[0]["summary"]
    saved = json.loads((second / "history.json").read_text())["tasks"][0]
    assert saved["before"] == history[0]["before"]
