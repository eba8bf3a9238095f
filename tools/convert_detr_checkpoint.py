#!/usr/bin/env python
"""Convert an official DETR / Deformable DETR COCO checkpoint for det_forget.

    python tools/convert_detr_checkpoint.py detr-r50-e632da11.pth detr_r50_converted.pth
    python tools/convert_detr_checkpoint.py r50_deformable_detr-checkpoint.pth \
        deformable_detr_r50_converted.pth

The input is read without unpickling anything but tensors, numpy arrays and
``argparse.Namespace`` (a file holding other objects is refused: exit status 2);
the output (written atomically) is a detectron2 checkpoint for ``configs/detr/*_r50_*``
with the 80 COCO thing classes in detectron2's order.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from det_forget.errors import run_tool  # noqa: E402
from det_forget.modeling.detr import convert_official_detr, load_official_checkpoint  # noqa: E402
from det_forget.utils.io import atomic_torch_save  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "official",
        help="official .pth (facebookresearch/detr or fundamentalvision/Deformable-DETR)",
    )
    parser.add_argument("output", help="detectron2 checkpoint to write")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    args = parser.parse_args(argv)
    if os.path.abspath(args.official) == os.path.abspath(args.output):
        parser.error("the output must not overwrite the official checkpoint")
    converted = convert_official_detr(load_official_checkpoint(args.official))
    atomic_torch_save({"model": converted, "__author__": "det_forget (official DETR)"}, args.output)
    print(f"wrote {args.output}: {len(converted)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
