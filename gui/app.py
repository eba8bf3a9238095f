"""Entry point: ``det-forget-gui`` / ``python -m gui``.

det-forget-gui [--demo | --config FILE [--weights FILE] [--adapter DIR ...]]
               [--dataset NAME | --images FOLDER] [--run DIR] [--output DIR]
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["build_parser", "main"]


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


def main(argv: list[str] | None = None) -> int:
    """Start the app; returns the exit code of the Qt event loop."""
    args = build_parser().parse_args(argv)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("det_forget")

    from .main_window import MainWindow  # after QApplication: imports torch and detectron2

    window = MainWindow(output_root=args.output)
    window.show()
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
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
