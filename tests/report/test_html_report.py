"""The reviewer's HTML report: every section is there, filled from the run's files, and the
file stands on its own (images embedded, nothing fetched)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from det_forget.data import SHAPES_CLASS_NAMES
from det_forget.forgetting.request import file_sha256, write_request
from det_forget.forgetting.run_dir import RunDirectory, RunHistory

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_CONFIG = os.path.join(REPO, "configs", "coco_forget.yaml")
DEMO_WEIGHTS = os.path.join(REPO, "det_forget", "model_zoo", "shapes_vit_tiny_frcnn.pth")
MINI_VAL = "report_test_shapes_val_mini"
FORGET = "purple_hexagon"
RELABEL = "magenta_cross"


@pytest.fixture(scope="module")
def mini_val() -> str:
    from detectron2.data import DatasetCatalog

    import det_forget  # noqa: F401  (registers shapes_val)
    from det_forget.data import register_view

    register_view(
        MINI_VAL, lambda: DatasetCatalog.get("shapes_val")[:12], "shapes_val", overwrite=True
    )
    return MINI_VAL


def _audit_report():
    """An audit of the forgotten class: the forgotten model's AUC near the reference."""
    from det_forget.audit import AuditReport, MembershipResult, ModelAudit, ProbeResult

    def model(role: str, auc: float, probe: float) -> ModelAudit:
        membership = {
            attack: MembershipResult(
                attack=attack,
                auc=auc,
                auc_std_error=0.01,
                best_balanced_accuracy=0.52,
                threshold=0.0,
                members=300,
                nonmembers=300,
                member_mean=0.0,
                nonmember_mean=0.0,
            )
            for attack in ("loss", "confidence")
        }
        probe_result = ProbeResult(
            balanced_accuracy=probe,
            auc=0.99,
            train_samples=400,
            test_positives=100,
            test_negatives=100,
            feature_dim=96,
            seed=0,
            train_balanced_accuracy=0.99,
        )
        return ModelAudit(role, f"/models/{role}", membership, probe_result, None)

    return AuditReport(
        task="detection",
        forget_classes=[FORGET],
        models={"base": model("base", 0.58, 0.99), "forgotten": model("forgotten", 0.51, 0.97)},
        data={"members": "shapes_train boxes (300)", "nonmembers": "shapes_val boxes (300)"},
    )


def _make_run(path, mini_val: str, *, with_fate_section: bool, merged: bool = True) -> str:
    """A finished one-task run, by hand: history, request, evaluator report, audit."""
    from det_forget.engine.inference import build_config, detector_config

    run = RunDirectory(path)
    retain = [n for n in SHAPES_CLASS_NAMES if n != FORGET]
    before = {n: 80.0 for n in SHAPES_CLASS_NAMES}
    after = {**before, FORGET: 0.0, "red_circle": 60.0}
    task = {
        "task": {"index": 0},
        "classes": {"forget": [FORGET], "retain": retain, "old": [], "missing": []},
        "before": before,
        "after": after,
        "summary": {"before": {"forget": 80.0}, "after": {"forget": 0.0}, "h_mean": 70.1},
        "adapter": "adapters/task_00",
        "train": {"steps": 12, "seconds": 3.5},
        "details": {"dataset": mini_val},
    }
    run.write_history(
        RunHistory(
            "gs_lora",
            "rcnn",
            "AP",
            list(SHAPES_CLASS_NAMES),
            [task],
            info={"base_weights": DEMO_WEIGHTS},
        )
    )
    adapter = run.path / "adapters" / "task_00"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"format_version": 2, "weights_sha256": "ab" * 32, "layers": ["x", "y"]})
    )
    config = {"FORGET.METHOD": "gs_lora", "FORGET.MAX_ITER": 12, "DATASETS.TEST": [mini_val]}
    write_request(
        run.path,
        {
            "method": "gs_lora",
            "tasks": [[FORGET]],
            "missing": [],
            "weights": DEMO_WEIGHTS,
            "weights_sha256": file_sha256(DEMO_WEIGHTS),
            "config": config,
        },
    )
    if merged:
        # The "after" model of this hand-made run is the base model itself: every
        # forgotten object is still detected, so the image pairs are failures.
        shutil.copy(DEMO_WEIGHTS, run.merged_model_path(".pth"))
        cfg = detector_config(build_config(DEMO_CONFIG))
        cfg.DATASETS.TEST = (mini_val,)
        run.merged_config_path.write_text(cfg.dump())
    inference = run.path / "inference" / "task_00"
    inference.mkdir(parents=True)
    report = {"format": "det_forget.forget_report/1", "object_fate": None}
    if with_fate_section:
        report["object_fate"] = {
            "score_thresh": 0.5,
            "iou_thresh": 0.5,
            "per_class": {
                FORGET: {
                    "objects": 4,
                    "detected": 1,
                    "relabelled": 2,
                    "gone": 1,
                    "detected_pct": 25.0,
                    "relabelled_pct": 50.0,
                    "gone_pct": 25.0,
                    "relabelled_as": {RELABEL: 2},
                }
            },
            "total": {"objects": 4, "detected": 1, "relabelled": 2, "gone": 1},
        }
    else:
        # The evaluator's after predictions: every hexagon of the mini set as magenta_cross.
        from detectron2.data import DatasetCatalog, MetadataCatalog

        to_dataset = {
            v: k for k, v in MetadataCatalog.get(mini_val).thing_dataset_id_to_contiguous_id.items()
        }
        hexagon = SHAPES_CLASS_NAMES.index(FORGET)
        results = [
            {
                "image_id": d["image_id"],
                "category_id": to_dataset[SHAPES_CLASS_NAMES.index(RELABEL)],
                "bbox": list(a["bbox"]),
                "score": 0.77,
            }
            for d in DatasetCatalog.get(mini_val)
            for a in d["annotations"]
            if a["category_id"] == hexagon
        ]
        (inference / "coco_instances_results.json").write_text(json.dumps(results))
    (inference / "forget_report.json").write_text(json.dumps(report))
    _audit_report().save(run.path / "audit.json")
    return str(run.path)


def _section(html: str, sid: str) -> str:
    match = re.search(rf"<section id='{sid}'>(.*?)</section>", html, re.S)
    assert match, f"section {sid} missing"
    return match.group(1)


def test_report_holds_every_section(tmp_path, mini_val):
    from det_forget.report import REPORT_FILE, SECTIONS, write_report

    run = _make_run(tmp_path / "run", mini_val, with_fate_section=True)
    path = write_report(run, pairs=2)
    assert path == tmp_path / "run" / REPORT_FILE
    html = path.read_text()
    for sid in SECTIONS:
        _section(html, sid)
    request = _section(html, "request")
    assert f"task 0: {FORGET}" in request and "gs_lora" in request
    models = _section(html, "models")
    assert file_sha256(DEMO_WEIGHTS) in models and "ab" * 32 in models
    assert "model_merged.pth" in models
    method = _section(html, "method")
    assert "FORGET.MAX_ITER" in method and "task 0 steps" in method
    ap = _section(html, "ap")
    assert f"<tr class='pass'><td>{FORGET}</td>" in ap  # 80 -> 0
    assert "<tr class='fail'><td>red_circle</td>" in ap  # lost 20 points
    fate = _section(html, "fate")
    assert f"{RELABEL} ×2" in fate and "(forget_report.json)" in fate
    audit = _section(html, "audit")
    assert "membership-inference AUC 0.510" in audit and "class='verdict'" in audit
    assert "PASS" not in audit  # the headline states the number; the verdict says what it means
    examples = _section(html, "examples")
    images = re.findall(r"src='data:image/png;base64,([^']+)'", examples)
    assert len(images) == 2  # one pair, before and after
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "failure: purple_hexagon still detected" in examples
    # Self-contained: no stylesheet, script or image is fetched from anywhere.
    assert not re.search(r"(src|href)=['\"](?!data:)", html)
    assert "<script" not in html and "<link" not in html


def test_report_counts_object_fate_from_predictions(tmp_path, mini_val):
    from det_forget.report import collect_evidence, render_report

    run = _make_run(tmp_path / "run", mini_val, with_fate_section=False, merged=False)
    evidence = collect_evidence(run, pairs=2)
    fate = evidence.fate[0]
    assert fate["per_class"][FORGET]["relabelled"] == fate["per_class"][FORGET]["objects"] > 0
    assert fate["per_class"][FORGET]["relabelled_as"] == {
        RELABEL: fate["per_class"][FORGET]["objects"]
    }
    html = render_report(evidence)
    assert "after predictions" in _section(html, "fate")
    # Without a merged model the pairs are left out, and the report says why.
    assert "no merged model" in _section(html, "examples")


def test_report_tool(tmp_path, mini_val):
    run = _make_run(tmp_path / "run", mini_val, with_fate_section=True, merged=False)
    out = tmp_path / "review.html"
    tool = [sys.executable, os.path.join(REPO, "tools", "report.py")]
    done = subprocess.run(
        [*tool, "--run", run, "--output", str(out), "--pairs", "0"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "<section id='fate'>" in out.read_text()
    bad = subprocess.run(
        [*tool, "--run", str(tmp_path / "nothing")], capture_output=True, text=True, cwd=REPO
    )
    assert bad.returncode == 2
    last = bad.stderr.strip().splitlines()[-1]  # after the libraries' warnings
    assert last.startswith("error:") and "not a det_forget run" in last
