"""Fixtures of the app's tests: offscreen Qt, the demo model, a small validation subset."""

from __future__ import annotations

import glob
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # shared report fixtures

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_WEIGHTS = os.path.join(REPO, "det_forget", "model_zoo", "shapes_vit_tiny_frcnn.pth")
#: 8 validation images: the forgetting job evaluates on these, not on all 200.
MINI_VAL = "gui_test_shapes_val_mini"


def _demo_weights() -> str | None:
    """The embedded demo model; while it is being trained, its newest checkpoint."""
    if os.path.isfile(DEMO_WEIGHTS):
        return DEMO_WEIGHTS
    interim = sorted(glob.glob(os.path.join(REPO, "output", "base_shapes_vit_tiny", "model_*.pth")))
    return interim[-1] if interim else None


@pytest.fixture(scope="session")
def demo_weights() -> str:
    path = _demo_weights()
    if path is None:
        pytest.fail("shipped checkpoint det_forget/model_zoo/shapes_vit_tiny_frcnn.pth missing")
    return path


@pytest.fixture(scope="session")
def mini_val() -> str:
    from detectron2.data import DatasetCatalog

    import det_forget  # noqa: F401  (registers shapes_val)
    from det_forget.data import register_view

    register_view(
        MINI_VAL, lambda: DatasetCatalog.get("shapes_val")[:8], "shapes_val", overwrite=True
    )
    return MINI_VAL


@pytest.fixture
def window(qtbot, tmp_path, demo_weights):
    """A main window (not loaded) whose jobs write under ``tmp_path``."""
    from gui.main_window import MainWindow

    w = MainWindow(demo_weights=demo_weights, output_root=str(tmp_path / "runs"))
    qtbot.addWidget(w)
    w.show()
    w.confirm_answer = True  # "cancel the running job?" is answered yes without a dialog
    w.errors = []
    w.error_shown.connect(lambda title, message: w.errors.append((title, message)))
    yield w
    w.close()


@pytest.fixture
def loaded(qtbot, window):
    """The window with the demo model loaded and the first validation image detected."""
    with qtbot.waitSignals([window.model_loaded, window.images_loaded], timeout=60000):
        window.load_demo()
    qtbot.waitUntil(lambda: window.compare.before.box_count() > 0, timeout=30000)
    assert window.errors == []
    return window
