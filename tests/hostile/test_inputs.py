"""Hostile and clumsy inputs (issue 13): no code runs from a weights file, a finished run is
never overwritten, and every user error is one ``error:`` line with exit status 2.

Each case asserts the message and that nothing (or nothing new) is left in OUTPUT_DIR. The
payload files would create a marker file if anything unpickled them without restriction.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from detection_fixtures import REPO, save_base_checkpoint, tiny_cfg
from torch import nn

from det_forget.checkpoint import ForgetCheckpointer
from det_forget.checkpoint.safe_load import load_pickle_weights
from det_forget.engine import ForgetTrainer, finalize_forget_config
from det_forget.engine.inference import build_config, load_detector
from det_forget.errors import (
    ConfigValueError,
    OutputDirError,
    UnfitFileError,
    UnknownNameError,
    UnsafeFileError,
    UserError,
    format_user_error,
    run_tool,
)
from det_forget.forgetting import RunDirectory
from det_forget.lora import LoraConfig, inject_lora, load_adapter, save_adapter


class _Payload:
    """Unpickling this opens (creates) ``path``: what a hostile model file would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _load_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The classification tests' data and model makers (a conftest cannot be imported by name).
_cls = _load_file(
    "classification_fixtures", os.path.join(REPO, "tests", "classification", "conftest.py")
)


@pytest.fixture(scope="module")
def identity_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("identities")
    train = _cls.make_identity_folder(base / "train", per_id=40, seed=0)
    test = _cls.make_identity_folder(base / "test", per_id=30, seed=1)
    return train, test


@pytest.fixture(scope="module")
def tiny_classifier(identity_dirs, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_vit.safetensors"
    model, info = _cls._train_tiny(_cls.ViTClassifier, identity_dirs[0], path)
    return path, model, info


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tools", f"{name}.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _hashes(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _write_payload(path, marker):
    state = {"model": {"w": _Payload(marker)}, "__author__": "someone"}
    if str(path).endswith(".pkl"):
        path.write_bytes(pickle.dumps(state, protocol=2))
    else:
        torch.save(state, path)
    return str(path)


# --------------------------------------------------------------------------------------------
# 1. No code runs from a weights file
# --------------------------------------------------------------------------------------------


@pytest.fixture
def detector_yaml(tmp_path, tiny_shapes):
    """A tiny forgetting config written to yaml, its base weights, and its OUTPUT_DIR."""
    out = tmp_path / "run"
    cfg = tiny_cfg(out)
    base = save_base_checkpoint(cfg, tmp_path / "base.pth")
    cfg.MODEL.WEIGHTS = base
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.dump())
    return path, base, out


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_payload_never_runs_through_any_loader(tmp_path, detector_yaml, suffix):
    cfg_path, base, out = detector_yaml
    marker = tmp_path / "marker"
    evil = _write_payload(tmp_path / f"evil{suffix}", marker)
    cfg = build_config(cfg_path)
    loaders = {
        "ForgetCheckpointer": lambda: ForgetCheckpointer(nn.Linear(1, 1), strict=False).load(evil),
        "load_detector": lambda: load_detector(cfg, evil),
        "ForgetTrainer": lambda: _trainer(
            build_config(cfg_path, ["MODEL.WEIGHTS", evil])
        ).resume_or_load(resume=False),
    }
    for name, load in loaders.items():
        with pytest.raises(UnsafeFileError, match="io.open") as info:
            load()
        assert not marker.exists(), name
        assert "only if you trust" in info.value.hint
    audit = _load_tool("audit")
    args = ["--task", "detection", "--config-file", str(cfg_path), "--base", evil]
    assert audit.main([*args, "--forgotten", base, "--output", str(tmp_path / "a.json")]) == 2
    export = _load_tool("export_base_model")
    assert (
        run_tool(export.main, [evil, "--config", "x.yaml", "--out", str(tmp_path / "e.pth")]) == 2
    )
    assert not (tmp_path / "e.pth").exists() and not (tmp_path / "a.json").exists()
    if suffix == ".pth":
        convert = _load_tool("convert_detr_checkpoint")
        assert run_tool(convert.main, [evil, str(tmp_path / "c.pth")]) == 2
        assert not (tmp_path / "c.pth").exists()
    assert not marker.exists()


def _trainer(cfg):
    finalize_forget_config(cfg)
    cfg.freeze()
    return ForgetTrainer(cfg)


def test_model_zoo_pkl_still_loads(tmp_path):
    model = nn.Linear(3, 2)
    state = {k: v.detach().numpy().copy() + 1 for k, v in model.state_dict().items()}
    path = tmp_path / "zoo.pkl"
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(pickle.dumps({"model": state, "__author__": "Detectron2 zoo"}, protocol))
        ForgetCheckpointer(model, strict=True).load(str(path))
        np.testing.assert_array_equal(model.weight.detach().numpy(), state["weight"])
    # Caffe2-style (no __author__): blobs, momentum dropped, as detectron2 reads them.
    raw = {"blobs": {"w": np.ones(2, np.float32), "w_momentum": np.ones(2, np.float32)}}
    path.write_bytes(pickle.dumps(raw, protocol=2))
    loaded = ForgetCheckpointer(model)._load_file(str(path))
    assert loaded["matching_heuristics"] and list(loaded["model"]) == ["w"]
    assert load_pickle_weights(path)["blobs"]["w"].dtype == np.float32


# --------------------------------------------------------------------------------------------
# 2. Corrupt and truncated files
# --------------------------------------------------------------------------------------------


def _truncated(src, dst, keep=0.5):
    data = open(src, "rb").read()
    dst.write_bytes(data[: int(len(data) * keep)])
    return str(dst)


def test_corrupt_checkpoints_name_the_file(tmp_path, detector_yaml):
    cfg_path, base, _ = detector_yaml
    cfg = build_config(cfg_path)
    from safetensors.torch import save_file

    state = torch.load(base, weights_only=True)["model"]
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "good.safetensors")
    pkl = tmp_path / "good.pkl"
    pkl.write_bytes(pickle.dumps({"model": {k: v.numpy() for k, v in state.items()}}))
    cases = {
        "trunc.pth": _truncated(base, tmp_path / "trunc.pth"),
        "trunc.pkl": _truncated(pkl, tmp_path / "trunc.pkl"),
        "trunc.safetensors": _truncated(tmp_path / "good.safetensors", tmp_path / "t.safetensors"),
        "empty.pth": _truncated(base, tmp_path / "empty.pth", keep=0),
        "text.pth": str(tmp_path / "text.pth"),
        # Text and random bytes fail inside torch's legacy reader and the unpickler with
        # IndexError ("pop from empty list"), KeyError, UnicodeDecodeError...: all unfit.
        "notes.txt": str(tmp_path / "notes.txt"),
        "notes.pkl": str(tmp_path / "notes.pkl"),
        "random.pth": str(tmp_path / "random.pth"),
        "random.pkl": str(tmp_path / "random.pkl"),
    }
    (tmp_path / "text.pth").write_text("not a checkpoint")
    (tmp_path / "notes.txt").write_text("these are not weights\n")
    (tmp_path / "notes.pkl").write_text("these are not weights\n")
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (tmp_path / "random.pth").write_bytes(noise)
    (tmp_path / "random.pkl").write_bytes(noise)
    for name, path in cases.items():
        with pytest.raises(UnfitFileError) as info:
            load_detector(cfg, path)
        assert os.path.basename(path) in str(info.value), name
        assert "\n" not in format_user_error(info.value), name
    assert load_detector(cfg, str(tmp_path / "good.safetensors")).model is not None


@pytest.fixture
def adapter_dir(tmp_path):
    config = LoraConfig(rank=2, alpha=2, target_modules=["0", "2"])
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    inject_lora(model, config)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p)
    save_adapter(model, tmp_path / "adapter", config)

    def fresh():
        model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        inject_lora(model, config)
        return model

    return tmp_path / "adapter", fresh


def _edit_config(directory, edit):
    path = directory / "adapter_config.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "case, message",
    [
        ("truncated weights", "sha256 differs"),
        ("truncated json", "not valid JSON"),
        ("wrong types", "adapter_config.json"),
        ("unknown keys", "adapter_config.json"),
        ("path-like layer name", "../../x"),
    ],
)
def test_hostile_adapters_are_refused(adapter_dir, case, message):
    directory, fresh = adapter_dir
    weights = directory / "adapter_model.safetensors"
    config = directory / "adapter_config.json"
    if case == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:40])
    elif case == "truncated json":
        config.write_text(config.read_text()[:30])
    elif case == "wrong types":
        _edit_config(directory, lambda d: d["lora_config"].update(r="eight", alpha=[1]))
    elif case == "unknown keys":
        _edit_config(directory, lambda d: d["lora_config"].update(exec_on_load="rm -rf /"))
    else:  # a layer name that would climb out of a folder if it were used as a path
        _edit_config(directory, lambda d: d.update(layers={"../../x": d["layers"]["0"]}))
    before = _hashes(directory)
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        load_adapter(fresh(), directory)
    assert _hashes(directory) == before


@pytest.mark.parametrize(
    "case, message",
    [
        ("rank of the wrong type", "bad lora_config"),
        ("unknown manifest key", "unknown keys ['surprise']"),
        ("target outside the model", "does not fit this model"),
        ("NaN in lora_B, checksum updated", "non-finite values"),
    ],
)
def test_hostile_adapters_through_the_sequence_loader(adapter_dir, case, message):
    """The path the app and the tools take (a model without adapters yet): every refusal is
    a UserError naming the file, never a bare ValueError."""
    from safetensors.torch import load_file, save_file

    from det_forget.lora import load_adapter_sequence

    directory, _ = adapter_dir
    if case == "rank of the wrong type":
        _edit_config(directory, lambda d: d["lora_config"].update(rank="eight"))
    elif case == "unknown manifest key":
        _edit_config(directory, lambda d: d.update(surprise=1))
    elif case == "target outside the model":
        _edit_config(directory, lambda d: d["lora_config"].update(target_modules=["../../x"]))
    else:
        weights = directory / "adapter_model.safetensors"
        tensors = load_file(str(weights))
        key = next(k for k in sorted(tensors) if "lora_B" in k)
        tensors[key][0, 0] = float("nan")
        save_file(tensors, str(weights))
        sha = hashlib.sha256(weights.read_bytes()).hexdigest()
        _edit_config(directory, lambda d: d.update(weights_sha256=sha))
    base = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(UserError, match=re.escape(message)) as info:
        load_adapter_sequence(base, [directory])
    assert str(directory) in str(info.value)


def test_broken_classifier_checkpoints(tmp_path, tiny_classifier):
    from det_forget.classification import load_classifier

    path = tmp_path / "c.safetensors"
    _truncated(tiny_classifier[0], path)
    info = tiny_classifier[0].with_suffix(".json")
    (tmp_path / "c.json").write_text(info.read_text())
    with pytest.raises(UnfitFileError, match="c.safetensors"):
        load_classifier(path)
    (tmp_path / "c.json").write_text(info.read_text()[:20])
    with pytest.raises(UnfitFileError, match="not valid JSON"):
        load_classifier(path)
    doc = json.loads(info.read_text())
    doc["arch"]["exec"] = "x"
    (tmp_path / "c.json").write_text(json.dumps(doc))
    path.write_bytes(tiny_classifier[0].read_bytes())
    with pytest.raises(UnfitFileError, match="does not build"):
        load_classifier(path)


# --------------------------------------------------------------------------------------------
# 3. Finished runs are never overwritten
# --------------------------------------------------------------------------------------------


def test_second_detection_run_leaves_the_first_byte_identical(tmp_path, tiny_shapes):
    out = tmp_path / "run"
    base = save_base_checkpoint(tiny_cfg(out), tmp_path / "base.pth")
    trainer = _trainer(tiny_cfg(out, **{"MODEL.WEIGHTS": base}))
    trainer.resume_or_load(resume=False)
    trainer.train()
    first = _hashes(out)
    assert "model_merged.pth" in first and "adapters/task_00/adapter_model.safetensors" in first
    again = _trainer(tiny_cfg(out, **{"MODEL.WEIGHTS": base}))
    with pytest.raises(OutputDirError) as info:
        again.resume_or_load(resume=False)
    for option in ("--resume", "another OUTPUT_DIR", "FORGET.OVERWRITE True"):
        assert option in str(info.value)
    now = _hashes(out)
    assert {k: now[k] for k in first} == first
    # The explicit key replaces the run: the old outputs go before the new ones are written.
    replace = _trainer(tiny_cfg(out, **{"MODEL.WEIGHTS": base, "FORGET.OVERWRITE": True}))
    replace.resume_or_load(resume=False)
    assert not (out / "model_merged.pth").exists() and not (out / "adapters").exists()


def test_second_classification_run_leaves_the_first_byte_identical(
    identity_dirs, tiny_classifier, tmp_path
):
    tool = _load_tool("forget_classification")
    out = tmp_path / "run"
    opts = _cls_opts(identity_dirs, tiny_classifier[0], out)
    assert tool.main(opts) == 0
    first = _hashes(out)
    assert "model_merged.safetensors" in first
    with pytest.raises(OutputDirError, match="FORGET.OVERWRITE True"):
        tool.main(opts)
    assert _hashes(out) == first
    assert run_tool(tool.main, opts) == 2
    assert _hashes(out) == first


def _cls_opts(identity_dirs, weights, out, **extra):
    train, test = identity_dirs
    opts = {
        "CLS.DATASET": "image_folder",
        "CLS.DATA_ROOT": str(train),
        "CLS.TEST_ROOT": str(test),
        "CLS.WEIGHTS": str(weights),
        "CLS.VAL_PER_CLASS": 8,
        "CLS.VAL_EVAL_PER_CLASS": 8,
        "CLS.MODEL.NUM_CLASSES": 5,
        "CLS.MODEL.IMG_SIZE": 16,
        "CLS.MODEL.IN_CHANS": 1,
        "CLS.MODEL.PATCH_SIZE": 4,
        "CLS.MODEL.EMBED_DIM": 32,
        "CLS.MODEL.DEPTH": 2,
        "CLS.MODEL.NUM_HEADS": 2,
        "CLS.MODEL.PIXEL_MEAN": "[0.5]",
        "CLS.MODEL.PIXEL_STD": "[0.25]",
        "FORGET.CLASSES": "['id_1']",
        "FORGET.MAX_ITER": 4,
        "FORGET.EARLY_STOP.PERIOD": 2,
        "CLS.SOLVER.BATCH_SIZE": 16,
        "OUTPUT_DIR": str(out),
        **extra,
    }
    return [str(x) for kv in opts.items() for x in kv]


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_unusable_output_dir(tmp_path, kind):
    if kind == "file":
        target = tmp_path / "out"
        target.write_text("a file")
        match = "is a file"
    elif os.geteuid() == 0:
        # Root ignores a folder's mode bits; /proc/sys is a folder nobody may create in.
        if os.access("/proc/sys", os.W_OK):
            pytest.skip("root writes anywhere and /proc/sys is writable here")
        parent = None
        target = Path("/proc/sys/det_forget_test_out")
        match = "not a writable folder"
    else:
        parent = tmp_path / "locked"
        parent.mkdir()
        parent.chmod(0o500)
        target = parent / "out"
        match = "not a writable folder"
    try:
        with pytest.raises(OutputDirError, match=match):
            RunDirectory(target).check_new_run(overwrite=False)
    finally:
        if kind != "file" and parent is not None:
            parent.chmod(0o700)
    assert not (target.is_dir())


# --------------------------------------------------------------------------------------------
# 4. Clear one-line errors from the tools (subprocesses: the real command line)
# --------------------------------------------------------------------------------------------

LAUNCHER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, os.path.join({repo!r}, "tools"))
    sys.path.insert(0, os.path.join({repo!r}, "tests"))
    from detection_fixtures import register_tiny_shapes
    register_tiny_shapes(os.environ["TINY_SHAPES_ROOT"])
    import train_net
    from det_forget.errors import run_tool
    sys.exit(run_tool(train_net.entry))
    """
)


def _tiny_root():
    import detection_fixtures
    from detectron2.data import DatasetCatalog, MetadataCatalog

    DatasetCatalog.get(detection_fixtures.TINY_TRAIN)  # materialise the generated files
    return os.path.dirname(
        os.path.dirname(MetadataCatalog.get(detection_fixtures.TINY_VAL).json_file)
    )


def _train_net(tmp_path, *argv, root=None):
    root = root or _tiny_root()
    (tmp_path / "launch.py").write_text(LAUNCHER.format(repo=REPO))
    env = {**os.environ, "TINY_SHAPES_ROOT": root, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "launch.py"), *map(str, argv)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc


def _one_error_line(proc):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    return errors[0]


def test_train_net_user_errors_are_one_line(tmp_path, detector_yaml):
    cfg_path, base, out = detector_yaml
    marker = tmp_path / "marker"
    evil = _write_payload(tmp_path / "evil.pkl", marker)
    cases = [
        (["MODEL.WEIGHTS", evil], "loading it would call io.open"),
        (["FORGET.METHOD", "nonsense"], "valid methods: ['gs_lora'"),
        (["FORGET.MAX_ITER", 2, "--resume"], "put --resume before the KEY VALUE overrides"),
        (["FORGET.NO_SUCH_KEY", 1], "Non-existent"),
        (["SOLVER.IMS_PER_BATCH", 0], "SOLVER.IMS_PER_BATCH 0 cannot be used"),
        (["OUTPUT_DIR", cfg_path], "is a file, not a folder"),
    ]
    for opts, message in cases:
        proc = _train_net(tmp_path, "--config-file", cfg_path, *opts)
        line = _one_error_line(proc)
        assert message in line, line
        print(f"{opts} -> exit {proc.returncode}: {line}")
    assert not marker.exists()
    assert not out.exists()  # no run started, nothing written
    # --debug keeps the traceback of a user error.
    proc = _train_net(tmp_path, "--config-file", cfg_path, "--debug", "FORGET.METHOD", "x")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_train_net_data_errors_leave_no_output(tmp_path, detector_yaml):
    """A dataset problem found after set-up (a training image missing on disk, an
    annotation with an unknown category) is one line naming the file, and the OUTPUT_DIR
    the run created is gone again."""
    import shutil

    cfg_path, _, out = detector_yaml
    for case in ("missing image", "unknown category"):
        root = tmp_path / case.replace(" ", "_")
        shutil.copytree(_tiny_root(), root)
        ann = next(p for p in root.rglob("*.json") if "train" in p.name)
        doc = json.loads(ann.read_text())
        if case == "missing image":
            name = doc["images"][0]["file_name"]
            image = next(p for p in root.rglob(os.path.basename(name)) if "train" in str(p))
            image.unlink()
            expected = f"{image} (image_id {doc['images'][0]['id']}) does not exist"
        else:
            doc["annotations"][0]["category_id"] = 999
            ann.write_text(json.dumps(doc))
            expected = f"({ann}): Encountered category_id=999"
        proc = _train_net(tmp_path, "--config-file", cfg_path, root=str(root))
        line = _one_error_line(proc)
        assert expected in line, line
        assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_forget_classification_user_errors_are_one_line(identity_dirs, tiny_classifier, tmp_path):
    out = tmp_path / "run"
    tool = os.path.join(REPO, "tools", "forget_classification.py")
    cases = [
        ({"FORGET.CLASSES": "['nobody']"}, "unknown class 'nobody'"),
        ({"FORGET.METHOD": "nonsense"}, "valid methods"),
    ]
    for extra, message in cases:
        opts = _cls_opts(identity_dirs, tiny_classifier[0], out, **extra)
        proc = subprocess.run(
            [sys.executable, tool, *opts],
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO},
            capture_output=True,
            text=True,
            timeout=300,
        )
        line = _one_error_line(proc)
        assert message in line, line
        print(f"{extra} -> exit {proc.returncode}: {line}")
        assert not (out / "history.json").exists()


def test_misplaced_flags_and_bad_overrides(tmp_path):
    path = os.path.join(REPO, "configs", "coco_forget.yaml")
    with pytest.raises(ConfigValueError, match="put --resume before the KEY VALUE overrides"):
        build_config(path, ["FORGET.MAX_ITER", "3", "--resume"])
    with pytest.raises(ConfigValueError, match="has no value"):
        build_config(path, ["FORGET.MAX_ITER"])
    with pytest.raises(ConfigValueError, match="FORGET.NOPE"):
        build_config(path, ["FORGET.NOPE", "1"])
    from det_forget.forgetting.methods import get_method

    with pytest.raises(UnknownNameError, match="valid methods"):
        get_method("nonsense")


def test_run_tool_keeps_tracebacks_of_bugs(capsys):
    def bug(argv):
        return {}["missing"]

    def user(argv):
        raise ConfigValueError("FORGET.X is bad", hint="set it to 1")

    with pytest.raises(KeyError):
        run_tool(bug, [])
    assert run_tool(user, []) == 2
    assert capsys.readouterr().err == "error: FORGET.X is bad\nhint: set it to 1\n"
    assert run_tool(user, ["--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    ns = argparse.Namespace()
    assert ns is not None
