#!/usr/bin/env python
"""Export a trained base detector as a small shipped checkpoint (fp16 tensors) + JSON card.

    python tools/export_base_model.py output/base_shapes_vit_tiny/model_final.pth \
        --config configs/base/shapes_vit_tiny_frcnn.yaml \
        --out det_forget/model_zoo/shapes_vit_tiny_frcnn.pth [--ap 72.1]

Weights are stored in float16 (half the size; they load into the float32 model
unchanged in shape) and evaluated again after export by ``--eval-only`` in the README.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from det_forget.checkpoint.safe_load import load_weights_file  # noqa: E402
from det_forget.errors import UnfitFileError, run_tool  # noqa: E402
from det_forget.utils.io import atomic_torch_save, atomic_write  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="detectron2 checkpoint (model_final.pth)")
    parser.add_argument("--config", required=True, help="config the model was trained with")
    parser.add_argument("--out", required=True, help="output .pth")
    parser.add_argument("--ap", type=float, default=None, help="measured val AP to record")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    args = parser.parse_args(argv)
    state = load_weights_file(args.checkpoint)  # no code from the file runs
    if not isinstance(state, dict):
        raise UnfitFileError(f"{args.checkpoint} holds a {type(state).__name__}, not weights")
    model = state["model"] if "model" in state else state
    half = {k: v.half() if torch.is_floating_point(v) else v for k, v in model.items()}
    atomic_torch_save({"model": half, "__author__": "det_forget"}, args.out)
    digest = hashlib.sha256(open(args.out, "rb").read()).hexdigest()
    card = {
        "file": os.path.basename(args.out),
        "sha256": digest,
        "config": args.config,
        "trained_from": os.path.basename(args.checkpoint),
        "iteration": state.get("iteration"),
        "parameters": int(sum(v.numel() for v in model.values())),
        "dtype": "float16 storage, loads into float32",
        "val_AP": args.ap,
    }
    with atomic_write(os.path.splitext(args.out)[0] + ".json") as f:
        json.dump(card, f, indent=2)
    print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
