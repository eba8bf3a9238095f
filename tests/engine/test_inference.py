"""Inference helpers on a tiny random model: loading, one-image prediction, history, export."""

import json
import os

import numpy as np
import pytest
import torch
from detection_fixtures import TINY_VAL, save_base_checkpoint, tiny_cfg
from detectron2.data import DatasetCatalog

from det_forget.checkpoint import CheckpointMismatchError
from det_forget.config import lora_config_from_cfg
from det_forget.engine.inference import (
    Detections,
    ImagePredictor,
    build_config,
    detector_config,
    evaluate_per_class_ap,
    export_directory,
    export_file,
    forgetting_config,
    list_images,
    load_detector,
    read_forget_history,
    read_image,
    records_from_history,
    save_merged_checkpoint,
)
from det_forget.lora import (
    AdapterMismatchError,
    disabled_adapters,
    inject_lora,
    lora_layers,
    save_adapter,
)


@pytest.fixture
def tiny(tmp_path, tiny_shapes):
    cfg = tiny_cfg(tmp_path, **{"MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0})
    return cfg, save_base_checkpoint(cfg, tmp_path / "base.pth")


def _image():
    return read_image(DatasetCatalog.get(TINY_VAL)[0]["file_name"])


def _adapter(cfg, weights, directory, seed=1):
    """An adapter with non-zero B trained "on" ``weights`` (random, not by training)."""
    loaded = load_detector(cfg, weights)
    inject_lora(loaded.model, lora_config_from_cfg(cfg))
    torch.manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(loaded.model):
            for part in layer.parts:
                layer.lora_B[part].normal_(0, 0.5)
    save_adapter(loaded.model, directory, lora_config_from_cfg(cfg), metadata={"task": 0})
    return loaded.model.eval()


def test_build_config_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        build_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  NOT_A_KEY: 1\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        build_config(bad)


def test_config_flavours(tiny):
    cfg, _ = tiny
    assert cfg.MODEL.META_ARCHITECTURE == "ForgettingDetector"
    assert detector_config(cfg).MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    plain = detector_config(cfg)
    back = forgetting_config(plain)
    assert back.MODEL.META_ARCHITECTURE == "ForgettingDetector"
    assert back.FORGET.DETECTOR == "GeneralizedRCNN"


def test_load_and_predict_one_image(tiny):
    cfg, weights = tiny
    loaded = load_detector(cfg, weights, score_thresh=0.0)
    assert not loaded.model.training and loaded.adapter_layers == []
    assert loaded.class_names[0] == "red_circle" and len(loaded.class_names) == 10
    dets = ImagePredictor(loaded.cfg, loaded.model)(_image())
    assert len(dets) > 0 and dets.boxes.shape == (len(dets), 4)
    assert dets.boxes.max() <= 64 + 1e-3 and dets.classes.max() < 10
    high = dets.filter(float(np.median(dets.scores)))
    assert 0 < len(high) < len(dets) or len(set(dets.scores.tolist())) == 1
    only = dets.filter(0.0, classes=[int(dets.classes[0])])
    assert set(only.classes.tolist()) == {int(dets.classes[0])}
    assert len(Detections.empty()) == 0


def test_load_refuses_bad_files(tiny, tmp_path):
    cfg, weights = tiny
    with pytest.raises(FileNotFoundError):
        load_detector(cfg, tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_detector(cfg, garbage)
    other = tiny_cfg(tmp_path, **{"MODEL.VIT.EMBED_DIM": 32, "MODEL.VIT.NUM_HEADS": 2})
    wrong = save_base_checkpoint(other, tmp_path / "other.pth")
    with pytest.raises(CheckpointMismatchError, match="other.pth"):
        load_detector(cfg, wrong)
    with pytest.raises(FileNotFoundError, match="not an adapter folder"):
        load_detector(cfg, weights, adapters=[tmp_path])


def test_adapters_load_in_order_and_can_be_disabled(tiny, tmp_path):
    cfg, weights = tiny
    source = _adapter(cfg, weights, tmp_path / "task_00")
    loaded = load_detector(cfg, weights, adapters=[tmp_path / "task_00"], score_thresh=0.0)
    assert loaded.adapter_layers == [n for n, _ in lora_layers(source)]
    image = _image()
    with_adapter = ImagePredictor(loaded.cfg, loaded.model)(image)
    expected = ImagePredictor(loaded.cfg, source)(image)
    np.testing.assert_allclose(with_adapter.scores, expected.scores, rtol=1e-5, atol=1e-6)
    base = ImagePredictor(loaded.cfg, load_detector(cfg, weights, score_thresh=0.0).model)(image)
    with disabled_adapters(loaded.model):
        disabled = ImagePredictor(loaded.cfg, loaded.model)(image)
    np.testing.assert_allclose(disabled.scores, base.scores, rtol=1e-5, atol=1e-6)
    other = save_base_checkpoint(cfg, tmp_path / "other_seed.pth", seed=7)
    with pytest.raises(AdapterMismatchError, match="base weights differ"):
        load_detector(cfg, other, adapters=[tmp_path / "task_00"])

    merged = save_merged_checkpoint(loaded.model, tmp_path / "merged.pth")
    assert list(lora_layers(loaded.model))  # the held model keeps its adapters
    plain = load_detector(cfg, merged, score_thresh=0.0)
    assert plain.adapter_layers == []
    from_merged = ImagePredictor(plain.cfg, plain.model)(image)
    np.testing.assert_allclose(from_merged.scores, with_adapter.scores, rtol=1e-4, atol=1e-5)


def test_continual_adapters_load_on_top_of_each_other(tiny, tmp_path):
    from det_forget.lora import merge_and_reset_adapters

    cfg, weights = tiny
    first = _adapter(cfg, weights, tmp_path / "task_00")
    merge_and_reset_adapters(first)  # task 1 trains on the weights with task 0 merged
    torch.manual_seed(2)
    with torch.no_grad():
        for _, layer in lora_layers(first):
            for part in layer.parts:
                layer.lora_B[part].normal_(0, 0.5)
    save_adapter(first, tmp_path / "task_01", lora_config_from_cfg(cfg), metadata={"task": 1})
    loaded = load_detector(
        cfg, weights, adapters=[tmp_path / "task_00", tmp_path / "task_01"], score_thresh=0.0
    )
    image = _image()
    expected = ImagePredictor(loaded.cfg, first.eval())(image)
    got = ImagePredictor(loaded.cfg, loaded.model)(image)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-4, atol=1e-5)
    with pytest.raises(AdapterMismatchError):  # task 1 alone does not fit the base
        load_detector(cfg, weights, adapters=[tmp_path / "task_01"])


def test_read_forget_history_from_run_dir_and_manifest(tiny, tmp_path):
    from det_forget.forgetting import RunDirectory, TaskRunner, build_tasks, get_method

    cfg, weights = tiny
    loaded = load_detector(cfg, weights)
    names = loaded.class_names
    inject_lora(loaded.model, lora_config_from_cfg(cfg))
    (task,) = build_tasks(range(len(names)), explicit=[[0]])
    run = RunDirectory(tmp_path / "run")
    runner = TaskRunner(
        loaded.model,
        [task],
        class_names=names,
        method=get_method("gs_lora"),
        task_type="rcnn",
        metric="AP",
        run_dir=run,
        lora_config=lora_config_from_cfg(cfg),
    )
    before = {n: 50.0 for n in names}
    after = {**before, "red_circle": 1.0, names[1]: None}
    runner.end_task(task, before=before, after=after, details={"AP50_after": after})

    (rec,) = read_forget_history(run.path)
    assert rec.task == 0 and rec.classes["forget"] == ["red_circle"] and rec.metric == "AP"
    assert rec.before == before and rec.after["red_circle"] == 1.0 and rec.after[names[1]] is None
    assert rec.summary["after"]["forget"] == 1.0 and rec.details["AP50_after"] == after
    assert rec.adapter == str(run.adapter_dir(0)) and rec.date is not None
    assert read_forget_history(run.history_path)[0].after == rec.after  # a file of the run
    (from_manifest,) = read_forget_history(run.adapter_dir(0))
    assert from_manifest.task == 0 and from_manifest.adapter == rec.adapter
    assert from_manifest.classes == rec.classes and from_manifest.after == rec.after
    assert records_from_history(runner.records)[0].adapter is None  # no run folder given
    assert records_from_history(runner.records, run.path)[0].adapter == rec.adapter
    with pytest.raises(ValueError, match="not a det_forget task record"):
        records_from_history([{"before": {}}])


def test_read_forget_history_errors(tiny, tmp_path):
    from det_forget.forgetting import LegacyRunError

    cfg, weights = tiny
    with pytest.raises(FileNotFoundError, match="history.json"):
        read_forget_history(tmp_path / "empty")
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "forget_report.json").write_text(json.dumps({"tasks": []}))
    with pytest.raises(LegacyRunError, match="tools/convert_run.py"):
        read_forget_history(legacy)
    _adapter(cfg, weights, tmp_path / "old_adapter")  # manifest without a task record
    with pytest.raises(LegacyRunError, match="tools/convert_run.py"):
        read_forget_history(tmp_path / "old_adapter")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "history.json").write_text("{")
    with pytest.raises(ValueError, match="history.json"):
        read_forget_history(tmp_path / "bad")


def test_evaluate_per_class_ap(tiny):
    cfg, weights = tiny
    loaded = load_detector(cfg, weights)
    ap = evaluate_per_class_ap(loaded.cfg, loaded.model, TINY_VAL)
    assert set(ap) == set(loaded.class_names)
    assert all(v is None or 0.0 <= v <= 100.0 for v in ap.values())


def test_list_images_and_export(tmp_path):
    (tmp_path / "imgs").mkdir()
    for name in ("b.PNG", "a.jpg", "notes.txt"):
        (tmp_path / "imgs" / name).write_bytes(b"x")
    assert [os.path.basename(p) for p in list_images(tmp_path / "imgs")] == ["a.jpg", "b.PNG"]
    with pytest.raises(NotADirectoryError):
        list_images(tmp_path / "nope")
    dst = export_file(tmp_path / "imgs" / "a.jpg", tmp_path / "out" / "a.jpg")
    assert open(dst, "rb").read() == b"x"
    export_directory(tmp_path / "imgs", tmp_path / "out" / "copy")
    assert sorted(os.listdir(tmp_path / "out" / "copy")) == ["a.jpg", "b.PNG", "notes.txt"]
    assert not [p for p in os.listdir(tmp_path / "out") if p.endswith(".tmp")]
