"""Entry point: ``det-forget-gui`` / ``python -m gui``.

det-forget-gui [--demo | --config FILE [--weights FILE] [--adapter DIR ...]]
               [--dataset NAME | --images FOLDER] [--run DIR] [--output DIR]
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["PROBE_ENV", "build_parser", "main", "open_startup_arguments"]

#: A JSON path: record launch timings there and quit once the demo is shown
#: (``benchmarks/gui_startup.py``).
PROBE_ENV = "DET_FORGET_GUI_PROBE"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="det-forget-gui",
        description="Make a trained detectron2 detector forget chosen classes (GS-LoRA).",
    )
    parser.add_argument("--demo", action="store_true", help="load the embedded demo model")
    parser.add_argument("--config", help="detectron2/det_forget yaml config of the model")
    parser.add_argument("--weights", help="checkpoint (default: the config's MODEL.WEIGHTS)")
    parser.add_argument(
        "--adapter",
        action="append",
        default=[],
        help="adapter folder to load on top (repeat in task order)",
    )
    parser.add_argument("--dataset", help="registered dataset to browse, e.g. shapes_val")
    parser.add_argument("--images", help="folder of images to browse")
    parser.add_argument("--run", help="run folder whose forgetting history to show")
    parser.add_argument(
        "--output", default="output/gui", help="parent folder of forgetting runs (output/gui)"
    )
    return parser


def open_startup_arguments(window, args: argparse.Namespace) -> None:
    """Do what the command line asks of a new main window (all of it in the background)."""
    if args.config:
        window.load_model(args.config, args.weights, args.adapter)
    elif args.demo:
        window.load_demo()
    if args.images:
        window.open_folder(args.images)
    elif args.dataset:
        window.open_dataset(args.dataset)
    if args.run:
        window.open_run(args.run)


def main(argv: list[str] | None = None) -> int:
    """Start the app; returns the exit code of the Qt event loop.

    The first window is :class:`gui.startup.StartupWindow` (plain Qt, painted at once); it
    imports torch/detectron2/det_forget in a thread and hands over to the main window,
    which loads the model and the images in its background runner.
    """
    args = build_parser().parse_args(argv)
    from PySide6.QtWidgets import QApplication

    from .startup import StartupWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("det_forget")
    startup = StartupWindow()
    probe = None
    if os.environ.get(PROBE_ENV):
        from .startup_probe import StartupProbe

        probe = StartupProbe(os.environ[PROBE_ENV], startup)
    windows = []

    def hand_over(module) -> None:
        window = module.MainWindow(output_root=args.output)
        window.setGeometry(startup.geometry())
        window.show()
        startup.hide()
        startup.deleteLater()
        windows.append(window)
        if probe is not None:
            probe.attach(window)
        open_startup_arguments(window, args)

    startup.ready.connect(hand_over)
    startup.show()
    startup.start()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
