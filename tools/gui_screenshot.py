#!/usr/bin/env python
"""Screenshot of the desktop app after a forgetting run (``docs/gui_screenshot.png``).

Runs the real app in a real window: loads the embedded demo model, checks the classes to
forget, runs a short forgetting job (evaluated on the first 32 validation images), shows
an image where a forgotten object is marked -- relabelled ("purple_hexagon ->
magenta_cross 0.77") when the job left one, else still detected, else gone -- with the
ground truth drawn, and grabs the window. It needs a display; on a headless machine use Xvfb::

    apt-get install -y xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 \\
        libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0 libxcb-shape0 \\
        libxcb-randr0 libxcb-xinerama0
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tools/gui_screenshot.py

Options: ``--weights`` (another checkpoint), ``--forget`` (class), ``--iters``, ``--lr``,
``--out``. The forgetting run is written under ``--output`` (``output/gui_screenshot``).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: the demo model)")
    parser.add_argument(
        "--forget",
        nargs="+",
        default=["green_square", "purple_hexagon"],
        help="classes to forget",
    )
    parser.add_argument("--iters", type=int, default=30, help="FORGET.MAX_ITER")
    parser.add_argument("--lr", type=float, default=0.005, help="SOLVER.BASE_LR")
    parser.add_argument("--data-ratio", type=float, default=0.2, help="FORGET.DATA_RATIO")
    parser.add_argument("--threshold", type=float, default=0.5, help="score threshold shown")
    parser.add_argument("--output", default="output/gui_screenshot", help="runs go here")
    parser.add_argument("--out", default="docs/gui_screenshot.png", help="PNG to write")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds to wait for the job")
    parser.add_argument("--scan", type=int, default=80, help="images searched for a fate")
    parser.add_argument(
        "--audit-out", default="", help="also audit the run and grab the Audit tab here"
    )
    return parser.parse_args(argv)


def _wait(app, signal, timeout_s: float) -> list:
    """Run the event loop until ``signal`` fires; returns its arguments."""
    from PySide6.QtCore import QEventLoop, QTimer

    got: list = []
    loop = QEventLoop()

    def on_signal(*args):
        got.extend(args or [None])
        loop.quit()

    signal.connect(on_signal)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(on_signal)
    if not got:
        raise TimeoutError(f"no signal within {timeout_s} s")
    return got


def _settle(app, ms: int = 300) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def _wait_detections(app, window, timeout_s: float = 60) -> None:
    import time

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        titles = window.compare.before_title.text() + window.compare.after_title.text()
        if "detecting" not in titles:
            return
        _settle(app, 50)
    raise TimeoutError("detections did not arrive")


def main(argv=None) -> int:
    args = parse_args(argv)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from gui.main_window import MainWindow

    window = MainWindow(demo_weights=args.weights, output_root=args.output)
    errors = []
    window.error_shown.connect(lambda title, message: errors.append(f"{title}: {message}"))
    window.resize(1560, 940)
    window.show()
    window.load_demo()
    _wait(app, window.images_loaded, 300)
    if errors:
        raise SystemExit("\n".join(errors))

    from detectron2.data import DatasetCatalog

    from det_forget.data import register_view

    register_view(
        "shapes_val_first32",
        lambda: DatasetCatalog.get("shapes_val")[:32],
        "shapes_val",
        overwrite=True,
    )
    window.select_categories(list(args.forget))
    panel = window.forget_panel
    panel.iterations.setValue(args.iters)
    panel.learning_rate.setValue(args.lr)
    panel.data_ratio.setValue(args.data_ratio)
    panel.extra_options.setText(
        "SOLVER.WARMUP_ITERS 0 SOLVER.IMS_PER_BATCH 4 DATASETS.TEST \"('shapes_val_first32',)\""
    )
    window.start_forget()
    _wait(app, window.job_finished, args.timeout)
    window.set_score_threshold(args.threshold)

    # The image whose forgotten objects show the most: a relabelled one first, then one
    # still detected, then one gone (the fates the after view marks).
    rank = {"relabelled": 3, "detected": 2, "gone": 1}
    chosen, best = 0, 0
    for row in range(min(window.image_panel.count(), args.scan)):
        window.image_panel.select_row(row)
        _wait_detections(app, window)
        fates, _ = window.current_fates()
        score = max((rank[f.fate] for f in fates), default=0)
        if score > best:
            chosen, best = row, score
        if best == 3:
            break
    window.image_panel.select_row(chosen)
    _wait_detections(app, window)
    window.left_tabs.setCurrentWidget(window.image_panel)
    window.forget_panel.tabs.setCurrentIndex(0)
    window.compare.fit()
    _settle(app, 500)

    screen = window.screen()
    image = screen.grabWindow(window.winId()) if screen is not None else None
    if image is None or image.isNull():
        image = window.grab()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if not image.save(args.out, "PNG"):
        raise SystemExit(f"could not write {args.out}")
    print(
        f"wrote {args.out} ({image.width()}x{image.height()}), image row {chosen}: "
        + "; ".join(window.compare.after.box_labels("fate"))
    )
    if args.audit_out:
        # The Audit tab after the app's own audit of the run (membership inference and
        # the box-feature probe, base vs forgotten).
        window.run_audit()
        _wait(app, window.audited, args.timeout)
        window.left_tabs.setCurrentWidget(window.audit_view)
        _settle(app, 500)
        shot = screen.grabWindow(window.winId()) if screen is not None else window.grab()
        if shot.isNull():
            shot = window.grab()
        shot.save(args.audit_out, "PNG")
        print(f"wrote {args.audit_out}: {window.audit_view.status.text()}")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
