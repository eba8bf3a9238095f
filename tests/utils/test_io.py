import os

import pytest

from det_forget.utils import atomic_directory, atomic_write


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "a.txt"
    with atomic_write(path) as f:
        f.write("one")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("two, half written")
            raise RuntimeError("killed")
    assert path.read_text() == "one"
    assert os.listdir(tmp_path) == ["a.txt"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(path, "a"):
            pass


def test_atomic_directory(tmp_path):
    target = tmp_path / "adapter"
    with atomic_directory(target) as d:
        (d / "x").write_text("1")
    with pytest.raises(OSError):
        with atomic_directory(target) as d:
            (d / "x").write_text("2")
            raise OSError("disk full")
    assert (target / "x").read_text() == "1"
    with atomic_directory(target) as d:
        (d / "y").write_text("3")
    assert sorted(os.listdir(target)) == ["y"]
    assert os.listdir(tmp_path) == ["adapter"]


def test_written_files_get_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f") as f:
            f.write("x")
        with atomic_directory(tmp_path / "d") as d:
            (d / "x").write_text("1")
    finally:
        os.umask(mask)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
