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


def test_rows_run_the_background_term_only_where_the_config_sets_it():
    """The fashion config's GS-LoRA row runs its background term and says so, GS-LoRA
    without it follows; every other row (and every shapes row) runs without it."""
    weight = quality.config_background_weight("fashion_det_forget.yaml")
    assert weight > 0
    rows = quality._detection_rows("fashion_det_forget.yaml")
    (label, key, method, extra), (nb_label, nb_key, nb_method, nb_extra), *others = rows
    assert (key, method, extra) == ("gs_lora", "gs_lora", ())
    assert f"background term {weight:g}" in label
    assert (nb_key, nb_method) == ("gs_lora_no_background", "gs_lora")
    assert list(nb_extra[-2:]) == ["FORGET.LOSS.BACKGROUND_WEIGHT", 0.0]
    assert [r[1] for r in others] == [m for _, m, _ in quality.DETECTION_METHODS[1:]]
    assert all(list(r[3][-2:]) == ["FORGET.LOSS.BACKGROUND_WEIGHT", 0.0] for r in others)

    assert quality.config_background_weight("coco_forget.yaml") == 0.0
    shapes = quality._detection_rows("coco_forget.yaml")
    assert [r[1] for r in shapes] == [m for _, m, _ in quality.DETECTION_METHODS]
    assert shapes[0][0] == "GS-LoRA"
