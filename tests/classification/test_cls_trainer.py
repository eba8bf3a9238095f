"""The forgetting loop on tiny synthetic data: tasks, every method, settings, errors."""

from __future__ import annotations

import math

import pytest
import torch

from det_forget.classification import load_classifier, load_splits
from det_forget.classification.trainer import (
    ClassificationForgetter,
    build_task_data,
    summarize_run,
)
from det_forget.forgetting import build_tasks, get_method, methods_for, tasks_from_config
from det_forget.lora import inject_lora, load_adapter, lora_layers

NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")


@pytest.fixture
def cfg_for(identity_dirs, tiny_classifier, make_tiny_cfg):
    """``cfg_for(**FORGET overrides)``: a tiny config starting from the tiny classifier."""

    def build(**forget):
        return _cfg(make_tiny_cfg, identity_dirs, tiny_classifier, **forget)

    return build


def _cfg(make_tiny_cfg, identity_dirs, tiny_classifier, **forget):
    cfg = make_tiny_cfg(*identity_dirs, weights=str(tiny_classifier[0]))
    for key, value in forget.items():
        setattr(cfg.FORGET, key, value)
    return cfg


def _run(cfg, tiny_classifier, output_dir=None):
    data = load_splits(cfg)
    model, _ = load_classifier(tiny_classifier[0])
    forgetter = ClassificationForgetter(
        cfg, model, data, model_factory=lambda: load_classifier(tiny_classifier[0])[0]
    )
    result = forgetter.run(tasks_from_config(cfg, data.test.classes), output_dir=output_dir)
    return forgetter, result


def test_tasks_from_config_names_ids_and_errors(identity_dirs, make_tiny_cfg):
    cfg = make_tiny_cfg(*identity_dirs)
    cfg.FORGET.CLASSES = ["trouser", 4]
    (task,) = tasks_from_config(cfg, NAMES)
    assert task.forget == (1, 4) and task.retain == (0, 2, 3)
    cfg.FORGET.CLASSES = ["Shoe"]
    with pytest.raises(ValueError, match="unknown class 'Shoe'"):
        tasks_from_config(cfg, NAMES)
    cfg.FORGET.CLASSES = []
    with pytest.raises(ValueError, match="empty forget set"):
        tasks_from_config(cfg, NAMES)
    cfg.FORGET.CLASSES = list(NAMES)
    with pytest.raises(ValueError, match="every class"):
        tasks_from_config(cfg, NAMES)
    cfg.FORGET.CLASSES = []
    cfg.FORGET.TASK_SIZES = [2, 2]
    tasks = tasks_from_config(cfg, NAMES)
    assert [len(t.forget) for t in tasks] == [2, 2]
    assert tasks[1].old == tasks[0].forget
    assert tasks == tasks_from_config(cfg, NAMES)  # fixed class-order seed


def test_build_task_data_shots_old_and_missing(identity_dirs, make_tiny_cfg):
    data = load_splits(make_tiny_cfg(*identity_dirs))
    (_, task) = build_tasks(range(5), explicit=[[0], [1]], missing=[3])
    td = build_task_data(data.train, task, shots=3, seed=0)
    assert torch.bincount(td.forget.labels, minlength=5).tolist() == [0, 3, 0, 0, 0]
    # Old class 0 and missing class 3 get no data.
    assert torch.bincount(td.retain.labels, minlength=5).tolist() == [0, 0, 3, 0, 3]


@pytest.mark.parametrize(
    "task_type, method",
    [(t, m.name) for t in ("classification", "face") for m in methods_for(t)],
)
def test_every_allowed_pair_trains_its_declared_terms_and_weights(
    identity_dirs, make_tiny_cfg, tiny_classifier, tiny_face, task_type, method
):
    """The registry's contract for classifiers and face models: every method it allows
    trains two steps, with exactly its declared loss terms, on the weights it declares."""
    tiny = tiny_face if task_type == "face" else tiny_classifier
    name = "FaceRecognizer" if task_type == "face" else "ViTClassifier"
    cfg = make_tiny_cfg(*identity_dirs, weights=str(tiny[0]), name=name)
    cfg.FORGET.METHOD = method
    cfg.FORGET.MAX_ITER = 2
    cfg.FORGET.EARLY_STOP.PERIOD = 0
    spec = get_method(method)
    if not spec.uses_lora:
        cfg.CLS.SOLVER.BASE_LR = 1e-3
    reference = {k: v.clone() for k, v in tiny[1].state_dict().items()}
    forgetter, result = _run(cfg, tiny)
    stats = result["tasks"][0]["train"]
    assert stats["steps"] == 2
    assert list(stats["last_terms"]) == list(spec.terms)
    assert all(math.isfinite(v) for v in stats["last_terms"].values())
    head = "head.weight" if task_type == "face" else "vit.head.weight"
    if spec.uses_lora:
        assert result["params"]["trainable_share"] < 30
        layers = dict(lora_layers(forgetter.model))
        suffix = {"ffn": ("mlp.fc1", "mlp.fc2"), "qkv": ("attn.qkv",)}[spec.adapters]
        assert layers and all(n.endswith(suffix) for n in layers)
        assert any(
            float(layer.lora_B[p].detach().abs().sum()) > 0
            for layer in layers.values()
            for p in layer.parts
        )
        # Base weights never move; only adapters train.
        for layer_name, layer in layers.items():
            assert torch.equal(layer.base_layer.weight, reference[layer_name + ".weight"])
        assert torch.equal(forgetter.model.state_dict()[head], reference[head])
    else:
        assert result["params"]["trainable_share"] == 100.0
        assert not torch.equal(forgetter.model.state_dict()[head], reference[head])


def test_gs_lora_forgets_and_saves_a_loadable_adapter(cfg_for, tiny_classifier, tmp_path):
    cfg = cfg_for()
    forgetter, result = _run(cfg, tiny_classifier, output_dir=tmp_path)
    row = summarize_run(result)["tasks"][0]
    assert row["acc_f_before"] >= 95 and row["acc_f"] <= 2.0
    assert row["acc_r"] >= row["acc_r_before"] - 2.0
    assert row["h_mean"] > 90
    # The adapter file reloads into a freshly injected copy of the pre-trained model.
    fresh, _ = load_classifier(tiny_classifier[0])
    inject_lora(fresh, forgetter.lora_config)
    load_adapter(fresh, tmp_path / "adapters" / "task_00")
    x = load_splits(cfg).test.images[:8]
    assert torch.allclose(fresh.eval()(x), forgetter.model(x), atol=1e-5)
    merged, _ = load_classifier(tmp_path / "model_merged.safetensors")
    assert torch.allclose(merged(x), forgetter.model(x), atol=1e-4)


def test_no_retain_uses_qkv_adapters_and_no_retain_loss(cfg_for, tiny_classifier):
    cfg = cfg_for(METHOD="no_retain", MAX_ITER=60)
    cfg.FORGET.EARLY_STOP.PERIOD = 2
    cfg.FORGET.OPTIMIZER = "Adam"
    cfg.CLS.SOLVER.WEIGHT_DECAY = 0.0
    cfg.FORGET.LR_SCHEDULE = "constant"
    cfg.CLS.SOLVER.BASE_LR = 3e-3
    forgetter, result = _run(cfg, tiny_classifier)
    train = result["tasks"][0]["train"]
    assert set(train["last_terms"]) == {"loss_forget_reciprocal", "loss_lora_b_l1"}
    assert [n for n, _ in lora_layers(forgetter.model)] == [
        "vit.blocks.0.attn.qkv",
        "vit.blocks.1.attn.qkv",
    ]
    row = summarize_run(result)["tasks"][0]
    assert row["acc_f"] <= 2.0
    # The stopping rule ended the task once the class was forgotten on the held-out split.
    stop = train["stopping"]
    assert stop["stopped_at"] == train["steps"] < 60
    assert all(s <= 2.0 for s in stop["checks"][-1]["scores"].values())


def test_continual_keeps_old_classes_forgotten(cfg_for, tiny_classifier):
    cfg = cfg_for(CLASSES=[], TASKS=[["id_1"], ["id_3"]])
    _, result = _run(cfg, tiny_classifier)
    rows = summarize_run(result)["tasks"]
    assert [r["forget"] for r in rows] == [["id_1"], ["id_3"]]
    assert rows[1]["old"] == ["id_1"]
    assert rows[0]["acc_f"] <= 2.0 and rows[1]["acc_f"] <= 2.0
    assert rows[1]["acc_o"] <= 2.0


def test_gs_lora_pp_few_shot_with_missing_class(cfg_for, tiny_classifier):
    cfg = cfg_for(METHOD="gs_lora_pp", SHOTS=4, MISSING_CLASSES=["id_4"])
    cfg.FORGET.PROTOTYPE.FORGET_WEIGHT = 0.1
    forgetter, result = _run(cfg, tiny_classifier)
    row = summarize_run(result)["tasks"][0]
    assert row["missing"] == ["id_4"]
    assert row["acc_m"] is not None and row["acc_m_before"] >= 95
    assert result["tasks"][0]["train"]["retain_images"] == 3 * 4
    assert "loss_prototype" in result["tasks"][0]["train"]["last_terms"]
    assert row["acc_f"] <= 2.0


def test_nan_loss_is_reported_clearly(cfg_for, tiny_classifier, tmp_path):
    cfg = cfg_for()
    cfg.FORGET.LOSS.RETAIN_WEIGHT = float("nan")
    with pytest.raises(FloatingPointError, match="loss_retain.*no output file was written"):
        _run(cfg, tiny_classifier)
