"""Runs and adapters that cannot lie (issue 19): resume checks, adapter integrity, save
order, data checked up front. Tiny detectors and images; each case asserts the message and
what is (or is not) left in OUTPUT_DIR."""

import hashlib
import importlib.util
import json
import math
import os
import shutil
import stat

import pytest
import torch
from detection_fixtures import REPO, TINY_TRAIN, save_base_checkpoint, tiny_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from det_forget.data.checks import DatasetError
from det_forget.engine import ForgetTrainer, finalize_forget_config
from det_forget.engine.forget_trainer import check_resume
from det_forget.forgetting import RunDirectory
from det_forget.forgetting.request import RunRequestMismatchError
from det_forget.lora import (
    AdapterMismatchError,
    LoraConfig,
    inject_lora,
    load_adapter,
    save_adapter,
)


def _trainer(cfg):
    finalize_forget_config(cfg)
    cfg.freeze()
    return ForgetTrainer(cfg)


def _run(cfg, resume=False):
    trainer = _trainer(cfg)
    trainer.resume_or_load(resume=resume)
    return trainer, trainer.train()


def _hashes(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_shapes):
    root = tmp_path_factory.mktemp("integrity_base")
    return save_base_checkpoint(tiny_cfg(root), root / "base.pth")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, base):
    """A finished one-task run that forgot red_circle."""
    out = tmp_path_factory.mktemp("finished") / "run"
    _run(tiny_cfg(out, **{"MODEL.WEIGHTS": base, "FORGET.CLASSES": ["red_circle"]}))
    return out


# ------------------------------------------------------------------------------ resume


@pytest.mark.parametrize(
    "change, named",
    [
        ({"FORGET.CLASSES": ["green_square"]}, "tasks: [['red_circle']] -> [['green_square']]"),
        ({"FORGET.METHOD": "gs_lora_pp"}, "method: 'gs_lora' -> 'gs_lora_pp'"),
        ({"FORGET.LOSS.BOUND": 4.0}, "FORGET.LOSS.BOUND: 3.0 -> 4.0"),
    ],
    ids=["classes", "method", "loss"],
)
def test_resume_with_another_request_is_refused_and_touches_nothing(
    finished_run, base, change, named
):
    before = _hashes(finished_run)
    cfg = tiny_cfg(finished_run, **{"MODEL.WEIGHTS": base, "FORGET.CLASSES": ["red_circle"]})
    for key, value in change.items():
        cfg.merge_from_list([key, value])
    finalize_forget_config(cfg)
    with pytest.raises(RunRequestMismatchError) as info:
        check_resume(cfg)  # what tools/train_net.py runs before writing anything
    assert named in str(info.value) and "config.yaml" in str(info.value)
    cfg.freeze()
    with pytest.raises(RunRequestMismatchError):
        ForgetTrainer(cfg).resume_or_load(resume=True)
    assert _hashes(finished_run) == before


def test_resume_with_other_base_weights_is_refused(finished_run, tmp_path):
    other = save_base_checkpoint(tiny_cfg(tmp_path), tmp_path / "other.pth", seed=1)
    cfg = tiny_cfg(finished_run, **{"MODEL.WEIGHTS": other, "FORGET.CLASSES": ["red_circle"]})
    finalize_forget_config(cfg)
    with pytest.raises(RunRequestMismatchError, match=r"base weights \(sha256\)"):
        check_resume(cfg)


def test_train_net_refuses_before_rewriting_the_config(finished_run, base):
    spec = importlib.util.spec_from_file_location(
        "train_net_tool", os.path.join(REPO, "tools", "train_net.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    config = finished_run / "config.yaml"
    text = config.read_text()
    (finished_run.parent / "asked.yaml").write_text(
        tiny_cfg(finished_run, **{"MODEL.WEIGHTS": base, "FORGET.CLASSES": ["green_square"]}).dump()
    )
    args = tool.default_argument_parser().parse_args(
        ["--config-file", str(finished_run.parent / "asked.yaml"), "--resume"]
    )
    with pytest.raises(RunRequestMismatchError):
        tool.setup(args)
    assert config.read_text() == text


@pytest.mark.parametrize("tag", ["/etc/passwd", "../elsewhere/x.pth", "missing.pth", ""])
def test_last_checkpoint_must_name_a_file_of_the_run(finished_run, base, tag, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "last_checkpoint").write_text(tag)
    cfg = tiny_cfg(run, **{"MODEL.WEIGHTS": base, "FORGET.CLASSES": ["red_circle"]})
    trainer = _trainer(cfg)
    with pytest.raises(ValueError, match="last_checkpoint names"):
        trainer.resume_or_load(resume=True)


def test_resume_of_the_same_request_still_works(finished_run, base, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    cfg = tiny_cfg(run, **{"MODEL.WEIGHTS": base, "FORGET.CLASSES": ["red_circle"]})
    trainer, history = _run(cfg, resume=True)
    assert trainer.start_iter == trainer.max_iter and len(history) == 1


# ------------------------------------------------------------------------------ adapters


def _adapter(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    config = LoraConfig(rank=2, alpha=2.0, target_modules=["0"])
    inject_lora(model, config)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_()
    folder = save_adapter(model, tmp_path / "adapter", config)
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 4))
    fresh.load_state_dict(
        {"0.weight": model[0].base_layer.weight, "0.bias": model[0].base_layer.bias}
    )
    inject_lora(fresh, config)
    return folder, fresh


def _edit_config(folder, edit):
    path = folder / "adapter_config.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda f: _edit_config(f, lambda d: d["lora_config"].update(alpha=math.nan)), "alpha"),
        (lambda f: _edit_config(f, lambda d: d["lora_config"].update(alpha=2000.0)), "scaling"),
        (lambda f: _edit_config(f, lambda d: d.pop("weights_sha256")), "lacks weights_sha256"),
        (
            lambda f: (f / "adapter_config.json").write_text('{"format_version": 2, "lo'),
            "not valid JSON",
        ),
    ],
    ids=["alpha-nan", "alpha-1000x", "no-checksum", "truncated-json"],
)
def test_adapter_with_bad_values_is_refused_naming_the_file(tmp_path, corrupt, message):
    folder, fresh = _adapter(tmp_path)
    reference = {k: v.clone() for k, v in fresh.state_dict().items()}
    corrupt(folder)
    with pytest.raises(AdapterMismatchError, match=message) as info:
        load_adapter(fresh, folder)
    assert str(folder) in str(info.value)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in reference.items())


def test_flipped_byte_or_nan_in_the_weights_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    folder, fresh = _adapter(tmp_path)
    weights = folder / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one bit of the tensor data
    weights.write_bytes(bytes(data))
    with pytest.raises(AdapterMismatchError, match="sha256 differs") as info:
        load_adapter(fresh, folder)
    assert str(weights) in str(info.value)

    folder, fresh = _adapter(tmp_path / "b")
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    key = next(k for k in tensors if ".lora_B." in k)
    tensors[key][0, 0] = math.nan
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    # Even with a checksum recomputed to match (a file written so on purpose), NaN is refused.
    _edit_config(
        folder,
        lambda d: d.update(
            weights_sha256=hashlib.sha256(
                (folder / "adapter_model.safetensors").read_bytes()
            ).hexdigest()
        ),
    )
    with pytest.raises(AdapterMismatchError, match="non-finite"):
        load_adapter(fresh, folder)


def test_saved_adapter_has_normal_permissions_and_loads(tmp_path):
    old = os.umask(0o022)
    try:
        folder, fresh = _adapter(tmp_path)
    finally:
        os.umask(old)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o644
    load_adapter(fresh, folder)


# ------------------------------------------------------------------------------ save order


def test_failure_writing_outputs_keeps_the_trained_model_and_resume_finishes(base, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "adapters").write_text("a file where the adapters folder goes")
    cfg = tiny_cfg(out, **{"MODEL.WEIGHTS": base, "FORGET.CLASSES": ["red_circle"]})
    with pytest.raises(OSError, match="--resume") as info:
        _run(cfg)
    assert "model_final.pth" in str(info.value)
    assert (out / "model_final.pth").is_file() and (out / "last_checkpoint").is_file()
    assert not (out / "history.json").exists() and not (out / "model_merged.pth").exists()

    (out / "adapters").unlink()  # the cause fixed
    cfg = tiny_cfg(out, **{"MODEL.WEIGHTS": base, "FORGET.CLASSES": ["red_circle"]})
    trainer, history = _run(cfg, resume=True)
    assert trainer.start_iter == trainer.max_iter  # no step trained twice
    assert len(history) == 1 and history[0]["adapter"] == "adapters/task_00"
    run = RunDirectory(out)
    assert run.read_history().tasks == history
    assert run.adapters() == [out / "adapters" / "task_00"]
    assert run.merged_model() == out / "model_merged.pth"


def test_stale_temporaries_are_removed_when_a_run_starts(base, tmp_path):
    out = tmp_path / "run"
    (out / "adapters").mkdir(parents=True)
    stale = [out / ".model_final.pth.x1y2.tmp", out / "adapters" / ".task_00.ab12.tmp"]
    stale[0].write_text("half")
    stale[1].mkdir()
    _run(tiny_cfg(out, **{"MODEL.WEIGHTS": base, "FORGET.MAX_ITER": 1}))
    assert not any(p.exists() for p in stale)
    assert not list(out.rglob("*.tmp"))


def test_after_numbers_are_reported_without_a_before_evaluation(base, tmp_path):
    out = tmp_path / "run"
    _, (record,) = _run(
        tiny_cfg(out, **{"MODEL.WEIGHTS": base, "FORGET.EVAL_BEFORE": False, "FORGET.MAX_ITER": 1})
    )
    assert record["before"] is None and record["summary"]["drop"] is None
    assert record["summary"]["after"]["retain"] is not None


# ------------------------------------------------------------------------------ data


def _copy_of_tiny_train(tmp_path, name, edit=None):
    meta = MetadataCatalog.get(TINY_TRAIN)
    DatasetCatalog.get(TINY_TRAIN)  # materialise the generated files
    doc = json.loads(open(meta.json_file).read())
    if edit is not None:
        edit(doc)
    ann = tmp_path / f"{name}.json"
    ann.write_text(json.dumps(doc))
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, str(ann), meta.image_root)
    return doc


def test_a_missing_training_image_is_named_before_training(base, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(MetadataCatalog.get(TINY_TRAIN).image_root, images)
    doc = _copy_of_tiny_train(tmp_path, "integrity_missing")
    MetadataCatalog.remove("integrity_missing")
    DatasetCatalog.remove("integrity_missing")
    register_coco_instances(
        "integrity_missing", {}, str(tmp_path / "integrity_missing.json"), str(images)
    )
    gone = images / doc["images"][3]["file_name"]
    gone.unlink()
    (images / doc["images"][5]["file_name"]).write_bytes(b"not an image at all")
    out = tmp_path / "run"
    cfg = tiny_cfg(out, **{"MODEL.WEIGHTS": base, "DATASETS.TRAIN": ("integrity_missing",)})
    with pytest.raises(DatasetError) as info:
        _run(cfg)
    message = str(info.value)
    assert f"{gone} (image_id {doc['images'][3]['id']}) does not exist" in message
    assert "is not a readable image" in message
    assert not list(out.glob("model_*.pth"))  # failed before any step


def test_an_empty_annotations_file_is_named(tmp_path, tiny_shapes):
    from det_forget.data.checks import load_dataset

    _copy_of_tiny_train(
        tmp_path, "integrity_empty", lambda d: d.update(images=[], annotations=[], categories=[])
    )
    with pytest.raises(DatasetError, match="'integrity_empty'.*no categories"):
        load_dataset("integrity_empty")


def test_an_unknown_category_id_is_named(tmp_path, tiny_shapes):
    from det_forget.data.checks import load_dataset

    def edit(doc):
        doc["annotations"][0]["category_id"] = 999

    _copy_of_tiny_train(tmp_path, "integrity_unknown_category", edit)
    with pytest.raises(DatasetError, match="'integrity_unknown_category'.*category_id=999"):
        load_dataset("integrity_unknown_category")
    with pytest.raises(KeyError):  # an unregistered name stays detectron2's KeyError
        load_dataset("never_registered_dataset")
