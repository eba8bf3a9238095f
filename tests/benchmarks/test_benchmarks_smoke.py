"""The benchmark scripts at ``--smoke`` size: JSON structure, sane numbers, plots.

Each script runs for seconds on 2-block models and 64 px images; cost and scale start
their measurement workers (``benchmarks/measure.py``) as separate processes, as at full
size. The acceptance arithmetic is checked on made-up numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # ``benchmarks`` is a folder of scripts at the repository root

from benchmarks import cost, quality, scale  # noqa: E402

MACHINE_KEYS = {"cpu", "usable_cores", "memory_gb", "load_average", "torch", "detectron2"}


def _read(path) -> dict:
    with open(path) as f:
        return json.load(f)


def _check_machine(machine: dict) -> None:
    assert MACHINE_KEYS <= set(machine), set(machine)
    assert machine["device"] == "cpu" and machine["usable_cores"] >= 1
    assert machine["summary"].startswith(machine["cpu"])


def test_cost_smoke(tmp_path):
    out = tmp_path / "cost.json"
    cost.main(
        ["--smoke", "--models", "vitdet_b", "--output", str(out), "--work-dir", str(tmp_path)]
    )
    doc = _read(out)
    _check_machine(doc["machine"])
    model = doc["models"]["vitdet_b"]
    rows = {r["method"]: r for r in model["training"]}
    assert list(rows) == ["gs_lora", "bounded_ft", "finetune", "neg_grad"]
    for r in rows.values():
        assert r["step_s"] > 0 and all(t > 0 for t in r["step_times_s"])
        assert r["peak_mb"] >= r["step_peak_mb"] >= r["model_mb"] > 0
        assert r["overhead_mb"] == pytest.approx(r["step_peak_mb"] - r["model_mb"])
        assert 0 < r["train_peak_mb"] < r["step_peak_mb"]
        # Ratios are GS-LoRA's measured number over this row's.
        gs = rows["gs_lora"]
        assert r["gs_lora_ratio"]["step_s"] == pytest.approx(gs["step_s"] / r["step_s"])
        assert r["gs_lora_ratio"]["peak_mb"] == pytest.approx(gs["peak_mb"] / r["peak_mb"])
        assert r["gs_lora_ratio"]["train_peak_mb"] == pytest.approx(
            gs["train_peak_mb"] / r["train_peak_mb"]
        )
    assert rows["gs_lora"]["gs_lora_ratio"]["step_s"] == pytest.approx(1.0)
    assert 0 < rows["gs_lora"]["trainable_share"] < 100 == rows["finetune"]["trainable_share"]
    assert rows["bounded_ft"]["trainable_share"] == 100
    assert rows["bounded_ft"]["sides"] == ["forget", "retain"]
    assert "loss_forget_bounded" in rows["bounded_ft"]["loss_terms"]
    assert rows["finetune"]["sides"] == ["retain"] and rows["neg_grad"]["sides"] == [
        "forget",
        "retain",
    ]
    lat = model["latency"]
    ms = lat["median_ms"]
    assert all(v > 0 for v in ms.values())
    assert lat["ratio_to_base"]["merged"] == pytest.approx(ms["merged"] / ms["base"])
    assert lat["params"]["merged"] == lat["params"]["base"] < lat["params"]["adapters"]
    assert lat["adapters_vs_merged_max_box_diff_px"] in (None, pytest.approx(0, abs=1e-2))
    assert {c["what"] for c in doc["checks"]} >= {
        "step time GS-LoRA / bounded_ft",
        "peak memory GS-LoRA / bounded_ft",
        "step time GS-LoRA / finetune",
        "peak memory GS-LoRA / finetune",
        "latency merged / base",
    }
    assert all(c["pass"] is None for c in doc["checks"])  # smoke sizes are not judged
    assert "GS-LoRA" in doc["report"]


def test_acceptance_checks_from_measured_numbers():
    def run(step, peak):
        return {
            "step_times_s": [step, step],
            "step_median_s": step,
            "trainable_params": 1,
            "total_params": 10,
            "trainable_share": 10.0,
            "loss_terms": [],
            "sides": ["retain"],
            "memory": {"peak_mb": peak + 700.0, "step_peak_mb": peak + 700.0,
                       "model_mb": 800.0, "overhead_mb": peak - 100.0,
                       "runtime_mb": 700.0, "train_peak_mb": peak},
        }  # fmt: skip

    rows = [
        cost.summarize_training("gs_lora", [run(0.6, 500.0), run(0.8, 500.0)]),
        cost.summarize_training("finetune", [run(1.0, 1000.0)]),
    ]
    cost._add_ratios(rows)
    assert rows[0]["step_s"] == pytest.approx(0.7)
    assert rows[1]["gs_lora_ratio"]["step_s"] == pytest.approx(0.7)
    latency = {"ratio_to_base": {"merged": 1.01, "adapters": 1.2}}
    models = {
        "base": {"training": rows, "latency": latency},
        "tiny": {"training": rows, "latency": latency},
    }
    checks = {(c["model"], c["what"]): c for c in cost.acceptance_checks(models, "cpu")}
    assert checks["base", "step time GS-LoRA / finetune"]["pass"] is True
    assert checks["base", "peak memory GS-LoRA / finetune"]["value"] == pytest.approx(0.5)
    assert checks["base", "peak memory GS-LoRA / finetune"]["pass"] is True
    assert checks["tiny", "peak memory GS-LoRA / finetune"]["pass"] is None  # no limit
    assert checks["base", "latency merged / base"]["pass"] is True
    assert checks["base", "latency adapters / base"]["pass"] is False


def test_scale_smoke_writes_curves_and_plots(tmp_path):
    out = tmp_path / "scale.json"
    scale.main(["--smoke", "--output", str(out), "--work-dir", str(tmp_path)])
    doc = _read(out)
    _check_machine(doc["machine"])
    assert [p["classes_count"] for p in doc["classes"]] == [1, 2]
    for p in doc["classes"]:
        assert len(p["classes"]) == p["classes_count"]
        assert p["step_s"] > 0 and p["peak_mb"] > 0
        assert p["curve"][0]["iteration"] == 0
        if p["reached_iteration"] is not None:
            assert p["curve"][-1]["ap_f"] <= doc["setting"]["target_ap"]
            assert p["time_to_target_s"] > 0
    assert [p["image_size"] for p in doc["image_forgetting"]] == [64, 96]
    assert doc["image_forgetting"][0] == doc["classes"][1]  # 2 classes at 64 px: one run
    assert [r["model"] for r in doc["model_sizes"]] == ["tiny", "small"]
    assert doc["model_sizes"][0]["total_params"] < doc["model_sizes"][1]["total_params"]
    assert [r["image_size"] for r in doc["image_sizes"]] == [64, 96]
    assert doc["image_sizes"][0] == doc["model_sizes"][0]  # the shared point is measured once
    assert all(r["step_s"] > 0 and r["peak_mb"] > 0 for r in doc["image_sizes"])
    assert set(doc["plots"]) == {"classes", "model", "image"}
    for name in doc["plots"].values():
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_quality_smoke_merges_classification(tmp_path):
    out = tmp_path / "quality.json"
    classification = os.path.join(ROOT, "benchmarks", "results", "classification.json")
    quality.main(
        [
            "--smoke",
            "--methods", "gs_lora", "finetune",
            "--classification", classification,
            "--output", str(out),
            "--work-dir", str(tmp_path),
        ]
    )  # fmt: skip
    doc = _read(out)
    det = doc["detection"]
    assert [r["forget_method"] for r in det["rows"]] == ["gs_lora", "finetune"]
    for r in det["rows"]:
        assert "error" not in r, r
        assert {"ap_f", "ap_r", "drop", "h_mean", "trainable_share", "command"} <= set(r)
        assert r["command"].startswith("tools/train_net.py --config-file configs/coco_forget.yaml")
    assert det["rows"][0]["trainable_share"] < det["rows"][1]["trainable_share"] == 100
    assert det["before"] is not None
    assert doc["classification"]["rows"][0]["method"] == "GS-LoRA"
    assert det["table"] in doc["report"] and doc["classification"]["table"] in doc["report"]


def test_run_all_command_line(tmp_path):
    """``python benchmarks/run_all.py`` as a user runs it: one summary over the scripts."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        os.path.join(ROOT, "benchmarks", "run_all.py"),
        "--smoke",
        "--only", "quality",
        "--results-dir", str(tmp_path),
        "--work-dir", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = _read(tmp_path / "summary.json")
    assert list(summary["benchmarks"]) == ["quality"]
    entry = summary["benchmarks"]["quality"]
    assert entry["seconds"] > 0 and os.path.isfile(entry["output"])
    assert "quality: " in proc.stdout
