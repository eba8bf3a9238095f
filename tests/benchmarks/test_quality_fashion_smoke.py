"""benchmarks/quality.py --dataset fashion: fate columns and the retrained reference row."""

from __future__ import annotations

import json
import os
import sys

from detection_fixtures import save_base_checkpoint, tiny_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import quality  # noqa: E402


def test_quality_fashion_smoke_with_reference(tmp_path):
    # A random detector of the smoke size stands in for the retrained reference.
    retrained = save_base_checkpoint(
        tiny_cfg(tmp_path / "unused", "fashion_det_forget.yaml"), tmp_path / "retrained.pth"
    )
    out = tmp_path / "quality_fashion.json"
    quality.main(
        [
            "--smoke",
            "--dataset", "fashion",
            "--methods", "gs_lora",
            "--retrained", retrained,
            "--classification", str(tmp_path / "missing.json"),
            "--output", str(out),
            "--work-dir", str(tmp_path),
        ]
    )  # fmt: skip
    doc = json.loads(out.read_text())
    det = doc["detection"]
    assert det["forget_classes"] == ["Shirt", "Sneaker"]
    assert det["config"] == "configs/fashion_det_forget.yaml"
    (row,) = det["rows"]
    assert "error" not in row, row
    assert row["command"].startswith("tools/train_net.py --config-file configs/fashion_det_forget")
    for r in (row, det["reference"], det["before"]):
        fate = r["object_fate"]
        assert set(fate["per_class"]) == {"Shirt", "Sneaker"}
        total = fate["total"]
        assert total["detected"] + total["relabelled"] + total["gone"] == total["objects"] > 0
        assert r["relabelled_pct"] == total["relabelled_pct"]
    assert det["reference"]["method"].startswith("Retrained")
    assert "Relab. %" in det["table"] and "Retrained" in det["table"]
    assert doc["setting"]["dataset"] == "fashion" and doc["classification"] is None
