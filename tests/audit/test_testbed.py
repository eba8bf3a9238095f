"""The membership testbed's split and its image folders (what the usual tools read)."""

from __future__ import annotations

import pytest
import torch

from det_forget.audit.testbed import split_testbed, write_testbed
from det_forget.classification import ImageClassData, load_image_folder


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
