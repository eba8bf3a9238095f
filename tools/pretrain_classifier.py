#!/usr/bin/env python
"""Pre-train the classifier that forgetting starts from (Fashion-MNIST ViT by default).

Example (writes the shipped checkpoint and its JSON)::

    python tools/pretrain_classifier.py \
        --config-file configs/classification/pretrain_fmnist.yaml \
        --output det_forget/model_zoo/fmnist_vit.safetensors CLS.NUM_THREADS 1

The epoch is selected on the validation split carved from train; the test accuracy of the
selected model is measured once and stored in the JSON next to the weights.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import torch

from det_forget.classification.cli import build_argument_parser, setup_cfg, setup_logging
from det_forget.classification.config import resolve_weights_path
from det_forget.classification.data import load_splits
from det_forget.classification.evaluate import evaluate_per_class
from det_forget.classification.model import build_classifier, load_classifier, save_classifier
from det_forget.classification.pretrain import PretrainRecipe, train_classifier
from det_forget.utils.io import atomic_write

logger = logging.getLogger("det_forget.tools.pretrain_classifier")


def main(argv: list[str] | None = None) -> dict:
    """Pre-train, evaluate on test, save weights + JSON; returns the JSON metadata."""
    parser = build_argument_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--output", default="", help="checkpoint path (default: OUTPUT_DIR/model.safetensors)"
    )
    args = parser.parse_args(argv)
    cfg = setup_cfg(args.config_file, args.opts, freeze=False)
    cfg.CLS.MODEL.DROP_PATH_RATE = cfg.CLS.PRETRAIN.DROP_PATH_RATE
    cfg.freeze()
    setup_logging(cfg.OUTPUT_DIR)
    output = args.output or os.path.join(cfg.OUTPUT_DIR, "model.safetensors")
    torch.manual_seed(cfg.SEED)
    data = load_splits(cfg)
    model = build_classifier(cfg)
    if cfg.CLS.PRETRAIN.INIT_WEIGHTS:
        init, init_meta = load_classifier(resolve_weights_path(cfg.CLS.PRETRAIN.INIT_WEIGHTS))
        missing, unexpected = model.load_state_dict(init.state_dict(), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"CLS.PRETRAIN.INIT_WEIGHTS {cfg.CLS.PRETRAIN.INIT_WEIGHTS} does not fit "
                f"{cfg.CLS.MODEL.NAME}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        logger.info("continuing from %s", cfg.CLS.PRETRAIN.INIT_WEIGHTS)
    logger.info(
        "pre-training %s (%d params) on %d images, %d validation",
        cfg.CLS.MODEL.NAME,
        sum(p.numel() for p in model.parameters()),
        len(data.train),
        len(data.val),
    )
    result = train_classifier(
        model, data.train, data.val, PretrainRecipe.from_config(cfg), cfg.CLS.EVAL_BATCH_SIZE
    )
    per_class = evaluate_per_class(
        model, data.test.images, data.test.labels, data.test.num_classes, cfg.CLS.EVAL_BATCH_SIZE
    )
    test_acc = sum(per_class.values()) / len(per_class)
    logger.info("test accuracy %.2f%% (best epoch %s)", test_acc, result["best_epoch"])
    metadata = {
        "dataset": cfg.CLS.DATASET,
        "classes": list(data.test.classes),
        "test_accuracy": round(test_acc, 3),
        "test_accuracy_per_class": {
            data.test.classes[c]: round(a, 2) for c, a in per_class.items()
        },
        "val_accuracy": result["best_val_acc"],
        "best_epoch": result["best_epoch"],
        "train_images": len(data.train),
        "val_images": len(data.val),
        "train_seconds": round(result["seconds"], 1),
        "history": result["history"],
        "recipe": json.loads(json.dumps(cfg.CLS.PRETRAIN)),
        "model_config": json.loads(json.dumps(cfg.CLS.MODEL)),
        "command": " ".join(["tools/pretrain_classifier.py", *(argv or sys.argv[1:])]),
    }
    model.vit.drop_path_rate = 0.0
    save_classifier(model, output, metadata)
    with atomic_write(os.path.join(cfg.OUTPUT_DIR, "pretrain_metrics.json")) as f:
        json.dump(metadata, f, indent=2)
    logger.info("wrote %s", output)
    return metadata


if __name__ == "__main__":
    main()
