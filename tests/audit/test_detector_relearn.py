"""Held-out AP_f / object fate and relearn time of a tiny shapes R-CNN, and the CLI path.

The tiny detector (``trained_tiny_detector``) finds its two most frequent val classes
with some AP; wiping their box-classifier rows makes it lose them (AP_f 0), as a crude
forgetting whose strength the bias sets.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from torch_threads import one_torch_thread

from det_forget.audit import (
    AuditReport,
    HeldoutForgetAP,
    RelearnResult,
    detector_relearn_time,
    few_shot_images,
    select_images,
)

ROOT = Path(__file__).resolve().parents[2]


def wipe_box_classes(model, classes, bias: float):
    """A copy of an R-CNN whose box classifier rows for ``classes`` are zero, bias ``-bias``
    (a crude forgetting: the classes lose their detections, the rest of the model stays)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.roi_heads.box_predictor.cls_score.weight[classes] = 0.0
        out.roi_heads.box_predictor.cls_score.bias[classes] = -bias
    return out


@pytest.fixture(scope="module")
def relearn_det(trained_tiny_detector):
    from detection_fixtures import TINY_TRAIN, TINY_VAL
    from detectron2.data import DatasetCatalog

    t = trained_tiny_detector
    heldout = HeldoutForgetAP(
        t["cfg"], TINY_VAL, select_images(DatasetCatalog.get(TINY_VAL), t["forget"], 0), t["forget"]
    )
    with one_torch_thread():
        original = heldout(t["model"])
    return t, heldout, original, DatasetCatalog.get(TINY_TRAIN)


def _relearn(model, relearn_det, **kwargs) -> RelearnResult:
    t, heldout, original, train = relearn_det
    with one_torch_thread():
        return detector_relearn_time(
            model, train, heldout, cfg=t["cfg"], original_ap=original.forget, **kwargs
        )


def test_heldout_ap_and_object_fate(relearn_det):
    from detection_fixtures import TINY_VAL
    from detectron2.data import DatasetCatalog

    t, heldout, original, _ = relearn_det
    forget = set(t["forget"])
    val = DatasetCatalog.get(TINY_VAL)
    objects = sum(int(a["category_id"]) in forget for d in val for a in d["annotations"])
    assert heldout.num_objects == objects and len(heldout) > 0
    assert original.forget > 0.0 and original.retain is not None
    total = original.object_fate["total"]
    assert total["objects"] == objects
    assert total["detected"] + total["relabelled"] + total["gone"] == objects
    assert sorted(original.object_fate["per_class"]) == sorted(
        t["class_names"][c] for c in t["forget"]
    )
    with one_torch_thread():
        wiped = heldout(wipe_box_classes(t["model"], t["forget"], 50.0))
        again = heldout(t["model"])
    assert wiped.forget == 0.0 and wiped.object_fate["total"]["detected"] == 0
    assert again == original  # the same images and evaluator: the same numbers


def test_base_model_relearns_at_step_zero(relearn_det):
    t, _, original, _ = relearn_det
    r = _relearn(t["model"], relearn_det, shots=2, steps=5)
    assert r.metric == "AP_f" and r.describe() == "0 steps (never lost it)"
    assert r.steps == 0 and r.samples_seen == 0 and r.steps_run == 0
    assert r.start_accuracy == pytest.approx(original.forget)
    assert r.target_accuracy == pytest.approx(original.forget / 2)
    assert r.curve == [[0, r.start_accuracy]] and r.retain_accuracy == original.retain


def test_lost_classes_do_not_come_back_in_one_step(relearn_det):
    t, heldout, original, _ = relearn_det
    wiped = wipe_box_classes(t["model"], t["forget"], 50.0)
    before = {k: v.clone() for k, v in wiped.state_dict().items()}
    r = _relearn(wiped, relearn_det, shots=2, steps=1, lr=1e-4)
    assert r.steps is None and r.samples_seen is None and not r.within_budget
    assert r.describe() == "not within 1 steps" and r.steps_run == 1
    assert [s for s, _ in r.curve] == [0, 1] and r.start_accuracy == 0.0
    assert r.final_accuracy < r.target_accuracy
    # The model passed in is untouched, and a second run with the same seed is the same.
    assert all(torch.equal(v, wiped.state_dict()[k]) for k, v in before.items())
    assert _relearn(wiped, relearn_det, shots=2, steps=1, lr=1e-4).curve == r.curve
    assert RelearnResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_mildly_forgotten_classes_come_back_within_budget(relearn_det):
    t, _, original, _ = relearn_det
    wiped = wipe_box_classes(t["model"], t["forget"], 3.0)
    r = _relearn(wiped, relearn_det, shots=5, steps=40, lr=1e-3, batch_size=4, eval_period=2)
    assert r.within_budget and 0 < r.steps <= 40, r.curve
    assert r.samples_seen == r.steps * 4 and r.steps_run == r.steps
    assert r.final_accuracy >= r.target_accuracy and r.curve[-1] == [r.steps, r.final_accuracy]
    assert all(ap < r.target_accuracy for _, ap in r.curve[:-1])  # the first check that did
    assert r.shots == r.retain_shots == 5 and r.retain_accuracy is not None


def test_few_shot_images_take_k_images_per_class(relearn_det):
    t, heldout, _, train = relearn_det
    chosen = few_shot_images(train, t["forget"], heldout.retain, shots=2, retain_shots=1, seed=3)
    ids = [d["image_id"] for d in chosen]
    assert len(ids) == len(set(ids))
    for c in t["forget"]:
        assert sum(any(a["category_id"] == c for a in d["annotations"]) for d in chosen) >= 2
    assert len(chosen) <= 2 * len(t["forget"]) + len(heldout.retain)
    assert few_shot_images(train, t["forget"], [], shots=2, retain_shots=0, seed=3) == chosen[:4]
    first = t["forget"][0]
    no_images = [d for d in train if all(a["category_id"] != first for a in d["annotations"])]
    with pytest.raises(ValueError, match="no training image"):
        few_shot_images(no_images, t["forget"], [], shots=2, retain_shots=0)
    with pytest.raises(ValueError, match="nothing to relearn"):
        detector_relearn_time(t["model"], train, heldout, cfg=t["cfg"], original_ap=0.0)


def _write_run(run: Path, names: list[str], forget: list[str], fate: dict) -> None:
    """A one-task run folder whose evaluator report has an object-fate section."""
    from det_forget.forgetting import RunDirectory, RunHistory, build_tasks

    (task,) = build_tasks(range(len(names)), explicit=[[names.index(c) for c in forget]])
    record = RunDirectory.task_record(
        task, names, before=None, after=dict.fromkeys(names, 0.0), summary=None, adapter=None
    )
    RunDirectory(run).write_history(RunHistory("gs_lora", "rcnn", "AP", list(names), [record]))
    report = run / "inference" / "task_00" / "forget_report.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"format": "det_forget.forget_report/1", "object_fate": fate}))


def test_cli_detection_relearn_and_object_fate(relearn_det, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("audit_tool_relearn", ROOT / "tools" / "audit.py")
    audit_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(audit_tool)
    t, _, original, _ = relearn_det
    names = t["class_names"]
    forget = [names[c] for c in t["forget"]]
    run = tmp_path / "run"
    _write_run(run, names, forget, original.object_fate)
    torch.save(
        {"model": wipe_box_classes(t["model"], t["forget"], 50.0).state_dict()},
        run / "model_merged.pth",
    )
    retrained = tmp_path / "retrained.pth"
    shutil.copy(t["random_weights"], retrained)
    out = tmp_path / "audit.json"
    args = ["--task", "detection", "--config-file", str(t["config_file"])]
    args += ["--base", t["weights"], "--forgotten", str(run), "--retrained", str(retrained)]
    args += ["--output", str(out), "--relearn-shots", "2", "--relearn-steps", "2"]
    args += ["--relearn-lr", "1e-6", "--relearn-eval-period", "1", "--max-samples", "0"]
    with one_torch_thread():
        assert audit_tool.main(args) == 0
    doc = json.loads(out.read_text())
    models = doc["models"]
    assert models["base"]["relearn"]["steps"] == 0 and models["base"]["relearn"]["metric"] == "AP_f"
    for role in ("forgotten", "retrained"):
        r = models[role]["relearn"]
        assert r["steps"] is None and r["samples_seen"] is None and r["budget_steps"] == 2
        assert r["batch_size"] == 4 and r["shots"] == 2 and r["lr"] == 1e-6
    assert models["base"]["forget_ap"] == pytest.approx(original.forget)
    assert models["forgotten"]["forget_ap"] == 0.0
    assert doc["data"]["relearn"]["original_forget_ap"] == pytest.approx(original.forget)
    objects = original.object_fate["total"]["objects"]
    for role in ("base", "forgotten", "retrained"):
        assert models[role]["object_fate"]["total"]["objects"] == objects
    assert models["forgotten"]["object_fate"]["total"]["detected"] == 0
    assert doc["data"]["run_object_fate"]["total"] == original.object_fate["total"]
    assert "forget_report.json" in doc["data"]["run_object_fate"]["source"]
    verdict = doc["verdict"]
    assert "Relearn time (fine-tuning every weight on 2 training images" in verdict
    assert "not within 2 steps after forgetting (0 steps (never lost it) before" in verdict
    assert "box AP (AP_f) is 0.0 after forgetting" in verdict and "% not detected" in verdict
    table = capsys.readouterr().out
    assert "relearn steps" in table and "AP_f" in table and "fate det/relab/gone %" in table
    report = AuditReport.from_dict(doc)
    assert report.models["forgotten"].object_fate == models["forgotten"]["object_fate"]
    assert report.models["base"].relearn.metric == "AP_f" and report.verdict == verdict


def test_heldout_scorer_leaves_the_dataset_catalog_as_it_was(trained_tiny_detector):
    """Its temporary COCO json must not stay in the dataset's metadata: a later evaluator
    of the same dataset in the process (the app's next job) would open a deleted file."""
    import gc

    from detection_fixtures import TINY_VAL
    from detectron2.data import DatasetCatalog, MetadataCatalog

    t = trained_tiny_detector
    # A registered view without a COCO json (as the app's validation subsets are).
    name = "audit_test_val_view"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DatasetCatalog.get(TINY_VAL))
        MetadataCatalog.get(name).set(thing_classes=MetadataCatalog.get(TINY_VAL).thing_classes)
    meta = MetadataCatalog.get(name)
    assert meta.get("json_file", None) is None
    heldout = HeldoutForgetAP(
        t["cfg"], name, select_images(DatasetCatalog.get(name), t["forget"], 0), t["forget"]
    )
    with one_torch_thread():
        assert heldout(t["model"]).forget > 0.0  # still scores with its own json
    del heldout
    gc.collect()
    assert meta.get("json_file", None) is None
