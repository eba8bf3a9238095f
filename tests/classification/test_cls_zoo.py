"""The shipped Fashion-MNIST ViT and the benchmark table's smoke mode."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from det_forget.classification import (
    evaluate_per_class,
    load_classifier,
    load_fashion_mnist,
    resolve_weights_path,
    subsample_per_class,
)

ROOT = Path(__file__).resolve().parents[2]
ZOO = resolve_weights_path("model_zoo://fmnist_vit.safetensors")


def test_shipped_checkpoint_is_small_and_accurate():
    assert ZOO.stat().st_size < 5 * 2**20
    info = json.loads(ZOO.with_suffix(".json").read_text())
    assert info["metadata"]["test_accuracy"] >= 88.0
    model, meta = load_classifier(ZOO)
    test = load_fashion_mnist("test")
    idx = subsample_per_class(test.labels, range(10), shots=40, seed=0)
    acc = evaluate_per_class(model, test.images[idx], test.labels[idx], 10)
    # 400 images: the subset's accuracy is close to the full split's.
    assert sum(acc.values()) / 10 >= meta["test_accuracy"] - 6.0


def test_benchmark_table_tiny(tmp_path, capsys):
    path = ROOT / "benchmarks" / "classification_table.py"
    spec = importlib.util.spec_from_file_location("cls_benchmark_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "table.json"
    doc = module.main(["--tiny", "--output", str(out)])
    printed = capsys.readouterr().out
    assert [r["config"] for r in doc["rows"]] == [c for _, c in module.METHODS]
    for row in doc["rows"]:
        assert row["method"] in printed
        assert 0.0 <= row["acc_r"] <= 100.0 and 0.0 <= row["acc_f"] <= 100.0
        assert 0.0 < row["trainable_share"] <= 100.0
    shares = {r["forget_method"]: r["trainable_share"] for r in doc["rows"]}
    assert shares["gs_lora"] < 10.0 and shares["finetune"] == 100.0
    assert json.loads(out.read_text())["setting"]["tiny"] is True
