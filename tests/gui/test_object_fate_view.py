"""Forgotten objects in the view (issue 18.2): on the demo model with a hand-made result,
each forgotten ground-truth object is marked gone / still detected / relabelled, and the
filter steps through the images that still hold one."""

from __future__ import annotations

import numpy as np
from detectron2.structures import BoxMode

from det_forget.data import SHAPES_CLASS_NAMES
from det_forget.engine import JobResult
from det_forget.engine.inference import Detections
from gui.fates import fate_text, image_fates
from gui.models import ImageEntry
from gui.session import SOURCE_RESULT

HEX = SHAPES_CLASS_NAMES.index("purple_hexagon")
CROSS = SHAPES_CLASS_NAMES.index("magenta_cross")


def _xyxy(annotation) -> list[float]:
    return BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"], BoxMode.XYXY_ABS)


def _dets(*rows) -> Detections:
    """Detections from ``(box, class, score)`` rows."""
    if not rows:
        return Detections.empty()
    return Detections(
        np.asarray([r[0] for r in rows], np.float32),
        np.asarray([r[2] for r in rows], np.float32),
        np.asarray([r[1] for r in rows], np.int64),
    )


def _hand_made_result(w, tmp_path, after: dict[str, Detections]) -> None:
    """A forgetting result of purple_hexagon whose after detections are ``after``."""
    session = w.session
    history = [{"classes": {"forget": ["purple_hexagon"], "retain": []}}]
    result = JobResult(history=history, output_dir=str(tmp_path), model=session.loaded.model)
    session.set_result(result, session.loaded.cfg, [])
    for path, dets in after.items():
        session._cache[(SOURCE_RESULT, path)] = dets


def test_fates_of_an_image_with_and_without_annotations():
    box = [10.0, 10.0, 50.0, 50.0]
    annotations = [{"bbox": [10, 10, 40, 40], "bbox_mode": BoxMode.XYWH_ABS, "category_id": HEX}]
    after = _dets((box, CROSS, 0.77))
    fates, source = image_fates(annotations, None, after, [HEX])
    assert source == "ground truth" and [f.fate for f in fates] == ["relabelled"]
    assert fate_text(fates[0], SHAPES_CLASS_NAMES) == "purple_hexagon -> magenta_cross 0.77"
    # No annotations: the before model's forgotten-class detections are the objects.
    before = _dets((box, HEX, 0.9), ([60, 60, 90, 90], CROSS, 0.9))
    fates, source = image_fates((), before, _dets(), [HEX])
    assert source == "before detections" and [f.fate for f in fates] == ["gone"]
    assert fate_text(fates[0], SHAPES_CLASS_NAMES) == "purple_hexagon: gone"
    assert image_fates((), None, after, [HEX]) == ([], "")


def test_after_view_marks_relabelled_gone_and_detected_objects(qtbot, loaded, tmp_path):
    w = loaded
    entries = [
        e
        for e in w.image_panel.model.entries()
        if any(a["category_id"] == HEX for a in e.annotations)
    ][:3]
    assert len(entries) == 3
    hexes = [[_xyxy(a) for a in e.annotations if a["category_id"] == HEX] for e in entries]
    after = {
        # image 0: every hexagon comes back as magenta_cross 0.77
        entries[0].path: _dets(*[(b, CROSS, 0.77) for b in hexes[0]]),
        # image 1: nothing detected: every hexagon is gone
        entries[1].path: _dets(),
        # image 2: still detected as itself
        entries[2].path: _dets(*[(b, HEX, 0.91) for b in hexes[2]]),
    }
    w._set_images("hand-made", entries)
    _hand_made_result(w, tmp_path, after)
    w._redraw(new_image=True)
    qtbot.waitUntil(lambda: w.compare.before.box_count("gt") > 0, timeout=30000)

    def marks(row: int) -> list[str]:
        w.image_panel.select_row(row)
        qtbot.waitUntil(lambda: "detecting" not in w.compare.before_title.text(), timeout=30000)
        return w.compare.after.box_labels("fate")

    assert marks(0) == ["purple_hexagon -> magenta_cross 0.77"] * len(hexes[0])
    assert f"{len(hexes[0])} relabelled" in w.compare.after_title.text()
    # The marked ground truth is not drawn a second time as a plain GT box on the after side.
    assert "GT purple_hexagon" not in w.compare.after.box_labels("gt")
    assert "GT purple_hexagon" in w.compare.before.box_labels("gt")
    assert marks(1) == ["purple_hexagon: gone"] * len(hexes[1])
    assert marks(2) == ["purple_hexagon: still detected 0.91"] * len(hexes[2])
    spec = w.compare.after.box_specs()[-1]
    assert spec.kind == "fate" and "IoU 1.00" in spec.detail

    # The filter steps through the images that still hold a detected or relabelled object.
    with qtbot.waitSignal(w.surviving_found, timeout=60000) as found:
        w.surviving_action.trigger()
    assert found.args == [2] and w.surviving_paths == {entries[0].path, entries[2].path}
    assert w.image_panel.count() == 2
    assert w.image_panel.current_entry().path == entries[2].path  # the current one stays
    w.image_panel.select_row(0)
    names = []
    for _ in range(3):
        names.append(w.image_panel.current_entry().path)
        w.next_action.trigger()
    assert names == [entries[0].path, entries[2].path, entries[2].path]
    w.surviving_action.trigger()
    assert w.image_panel.count() == 3


def test_without_annotations_the_before_detections_are_the_objects(qtbot, loaded, tmp_path):
    w = loaded
    entries = w.image_panel.model.entries()
    photo = next(e for e in entries if any(a["category_id"] == HEX for a in e.annotations))
    w._set_images("folder", [ImageEntry(photo.path)])  # a photo: no annotations
    qtbot.waitUntil(lambda: "detecting" not in w.compare.before_title.text(), timeout=30000)
    before = w.session.cached(w.session.before_source(), photo.path)
    hex_boxes = before.filter(w.score_threshold, [HEX]).boxes
    assert len(hex_boxes), "the demo model finds the hexagon"
    _hand_made_result(w, tmp_path, {photo.path: _dets(*[(b, CROSS, 0.8) for b in hex_boxes])})
    w._redraw(new_image=True)
    assert w.compare.after.box_labels("fate") == ["purple_hexagon -> magenta_cross 0.80"] * len(
        hex_boxes
    )
    assert "the before model's detections" in w.compare.after_title.text()
    assert w.compare.before.box_count("gt") == 0
