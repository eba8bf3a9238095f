"""The membership testbed's split and its image folders (what the usual tools read)."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_threads import one_torch_thread

from det_forget.audit.testbed import split_testbed, write_testbed
from det_forget.classification import ImageClassData, load_image_folder

ROOT = Path(__file__).resolve().parents[2]


def _pool() -> ImageClassData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (21, 1, 8, 8), generator=gen, dtype=torch.uint8)
    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 4)
    return ImageClassData(images, labels, ("T-shirt/top", "Bag", "c2"))


def test_split_halves_each_class_without_overlap():
    pool = _pool()
    t = split_testbed(pool, seed=3)
    assert torch.bincount(t.train.labels).tolist() == [5, 3, 2]
    assert torch.bincount(t.heldout.labels).tolist() == [5, 4, 2]
    rows = {bytes(x.numpy()) for x in t.train.images}
    assert not rows & {bytes(x.numpy()) for x in t.heldout.images}
    assert split_testbed(pool, seed=3).train.labels.equal(t.train.labels)
    with pytest.raises(ValueError, match="at least 2 images"):
        split_testbed(pool.subset([0, 1, 10]))


def test_write_testbed_round_trips_through_load_image_folder(tmp_path):
    t = split_testbed(_pool(), seed=0)
    train_dir, test_dir = write_testbed(t, tmp_path / "tb")
    assert sorted(p.name for p in train_dir.iterdir()) == ["Bag", "T-shirt_top", "c2"]
    back = load_image_folder(train_dir, image_size=8, channels=1)
    assert len(back) == len(t.train)
    # Same images per class (folder order sorts classes by name, not by source id).
    for name, folder in (("T-shirt/top", "T-shirt_top"), ("Bag", "Bag")):
        src = t.train.images[t.train.labels == t.train.classes.index(name)]
        got = back.images[back.labels == back.classes.index(folder)]
        assert torch.equal(src, got)
    with pytest.raises(FileExistsError, match="exists"):
        write_testbed(t, tmp_path / "tb")
    assert len(load_image_folder(test_dir, image_size=8, channels=1)) == len(t.heldout)


def _fake_fashion_mnist(folder, per_class: int) -> None:
    """IDX files of random 28x28 images, ``per_class`` training images per class."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 10 * per_class), ("t10k", 10)):
        for kind, array in (
            ("images-idx3", rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)),
            ("labels-idx1", (np.arange(n) % 10).astype(np.uint8)),
        ):
            header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
                struct.pack(">I", d) for d in array.shape
            )
            (folder / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())


def test_main_writes_folders_and_a_last_epoch_base_the_audit_can_reference(tmp_path):
    from det_forget.audit.testbed import main
    from det_forget.classification import load_classifier, read_checkpoint_info

    _fake_fashion_mnist(tmp_path / "fmnist", per_class=4)
    out = tmp_path / "tb"
    opts = ["CLS.MODEL.EMBED_DIM", "16", "CLS.MODEL.DEPTH", "1", "CLS.MODEL.NUM_HEADS", "1"]
    opts += ["CLS.PRETRAIN.EPOCHS", "2", "CLS.PRETRAIN.BATCH_SIZE", "8"]
    opts += ["CLS.PRETRAIN.AUGMENT", "False", "CLS.NUM_THREADS", "1"]
    with one_torch_thread():
        assert main(["--output", str(out), "--per-class", "4", "--data-root"] + [
            str(tmp_path / "fmnist"), *opts
        ]) == 0  # fmt: skip
    train = load_image_folder(out / "data" / "train", image_size=28, channels=1)
    assert len(train) == 20 and "T-shirt_top" in train.classes
    info = read_checkpoint_info(out / "base.safetensors")
    history = info["metadata"]["history"]
    assert len(history) == 2 and "val_acc" not in history[-1]  # no epoch selection
    model, _ = load_classifier(out / "base.safetensors")
    assert model.arch["embed_dim"] == 16
    # tools/audit.py --references trains with the recorded recipe.
    spec = importlib.util.spec_from_file_location("audit_tool_tb", ROOT / "tools" / "audit.py")
    audit_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(audit_tool)
    from det_forget.classification import get_classification_cfg

    recipe = audit_tool.reference_recipe(get_classification_cfg(), info)
    assert (recipe.epochs, recipe.batch_size, recipe.augment) == (2, 8, False)
    assert audit_tool.reference_recipe(get_classification_cfg(), info, epochs=5).epochs == 5
    info["metadata"]["recipe"]["INIT_WEIGHTS"] = "stage1.safetensors"
    with pytest.raises(ValueError, match="trained on every image"):
        audit_tool.reference_recipe(get_classification_cfg(), info)
