#!/usr/bin/env python
"""Every forgetting method and baseline on one Fashion-MNIST task, as one table.

Like Table 1 of GS-LoRA: each method starts from the shipped ViT
(``det_forget/model_zoo/fmnist_vit.safetensors``) and forgets the same classes (Trouser and
Bag by default); the table lists Acc_r, Acc_f (test split, %), H-Mean, the trainable share
of parameters and the training wall time. Each method's settings are its yaml config in
``configs/classification/``; trailing ``KEY VALUE`` overrides apply to all of them.

    python benchmarks/classification_table.py            # full run, writes results JSON
    python benchmarks/classification_table.py --tiny     # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch

from det_forget.classification.cli import setup_cfg, setup_logging
from det_forget.classification.config import resolve_weights_path
from det_forget.classification.data import load_splits
from det_forget.classification.evaluate import evaluate_per_class
from det_forget.classification.model import build_classifier, load_classifier
from det_forget.classification.trainer import (
    ClassificationForgetter,
    summarize_run,
)
from det_forget.evaluation.metrics import group_mean
from det_forget.forgetting import tasks_from_config
from det_forget.utils.io import atomic_write

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs" / "classification"
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "classification.json"

#: (row label, config file), in table order.
METHODS = (
    ("GS-LoRA", "gs_lora.yaml"),
    ("GS-LoRA++", "gs_lora_pp.yaml"),
    ("Low-rank, no retain (Poppi)", "no_retain.yaml"),
    ("Retrain (retain data)", "baseline_retrain.yaml"),
    ("Fine-tune (retain data)", "baseline_finetune.yaml"),
    ("Neg. gradient + retain", "baseline_neg_grad.yaml"),
    ("Neg. gradient + L1, no retain", "baseline_neg_grad_l1.yaml"),
    ("Random labels", "baseline_random_labels.yaml"),
    ("GS-LoRA loss + L1, no LoRA (retain)", "baseline_bounded_retain_l1.yaml"),
    ("L2*", "baseline_l2.yaml"),
    ("EWC*", "baseline_ewc.yaml"),
)

#: Overrides of ``--tiny``: a couple of steps on a sliver of the data.
TINY_OPTS = [
    "FORGET.MAX_ITER", "2",
    "FORGET.DATA_RATIO", "0.005",
    "FORGET.EARLY_STOP.PERIOD", "0",
    "FORGET.BASELINE.EWC_SAMPLES", "16",
    "CLS.TEST_PER_CLASS", "10",
    "CLS.VAL_EVAL_PER_CLASS", "5",
]  # fmt: skip

logger = logging.getLogger("det_forget.benchmarks.classification_table")


def format_table(rows: list[dict], before: dict) -> str:
    """A fixed-width text table of the rows (plus the pre-trained model's line)."""
    header = ("Method", "Acc_r", "Acc_f", "H-Mean", "Trainable %", "Time (s)")
    lines = [
        ("Pre-trained (before)", f"{before['acc_r']:.2f}", f"{before['acc_f']:.2f}", "-", "-", "-")
    ]
    for r in rows:
        lines.append(
            (
                r["method"],
                f"{r['acc_r']:.2f}",
                f"{r['acc_f']:.2f}",
                f"{r['h_mean']:.2f}",
                f"{r['trainable_share']:.2f}",
                f"{r['train_seconds']:.1f}",
            )
        )
    widths = [max(len(str(x[i])) for x in (header, *lines)) for i in range(len(header))]
    fmt = "  ".join([f"{{:<{widths[0]}}}"] + [f"{{:>{w}}}" for w in widths[1:]])
    sep = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([fmt.format(*header), sep, *(fmt.format(*x) for x in lines)])


def main(argv: list[str] | None = None) -> dict:
    """Run every method, print the table, write the JSON; returns the JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few steps on tiny data (smoke)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="results JSON path")
    parser.add_argument(
        "--methods", nargs="*", default=None, help="config file names to run (default: all)"
    )
    parser.add_argument(
        "--classes", nargs="*", default=["Trouser", "Bag"], help="classes every method forgets"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    opts = [
        "FORGET.CLASSES",
        repr(list(args.classes)),
        *(TINY_OPTS if args.tiny else []),
        *args.opts,
    ]
    methods = [m for m in METHODS if args.methods is None or m[1] in args.methods]
    if not methods:
        raise ValueError(f"--methods {args.methods} matches none of {[m[1] for m in METHODS]}")
    setup_logging(None)

    base_cfg = setup_cfg(str(CONFIG_DIR / methods[0][1]), opts)
    data = load_splits(base_cfg)
    model, _ = load_classifier(resolve_weights_path(base_cfg.CLS.WEIGHTS))
    before_per_class = evaluate_per_class(
        model, data.test.images, data.test.labels, data.test.num_classes
    )
    (task,) = tasks_from_config(base_cfg, data.test.classes)
    before = {
        "acc_r": group_mean(before_per_class, task.retain),
        "acc_f": group_mean(before_per_class, task.forget),
    }
    rows, runs = [], {}
    for label, config in methods:
        cfg = setup_cfg(str(CONFIG_DIR / config), opts)
        if cfg.CLS.WEIGHTS != base_cfg.CLS.WEIGHTS or cfg.CLS.DATASET != base_cfg.CLS.DATASET:
            raise ValueError(f"{config} uses other weights or data than {methods[0][1]}")
        torch.manual_seed(cfg.SEED)
        model, _ = load_classifier(resolve_weights_path(cfg.CLS.WEIGHTS))
        forgetter = ClassificationForgetter(
            cfg, model, data, model_factory=lambda cfg=cfg: build_classifier(cfg)
        )
        start = time.perf_counter()
        result = forgetter.run(tasks_from_config(cfg, data.test.classes), before=before_per_class)
        summary = summarize_run(result)
        t = summary["tasks"][0]
        rows.append(
            {
                "method": label,
                "config": config,
                "forget_method": cfg.FORGET.METHOD,
                "acc_r": t["acc_r"],
                "acc_f": t["acc_f"],
                "h_mean": t["h_mean"],
                "drop": t["drop"],
                "trainable_share": summary["trainable_share"],
                "trainable_params": summary["trainable_params"],
                "train_seconds": t["seconds"],
                "total_seconds": time.perf_counter() - start,
                "steps": t["steps"],
                "stopped_at": t["stopped_at"],
            }
        )
        runs[config] = summary
        logger.info(
            "%s: Acc_r %.2f Acc_f %.2f H-Mean %.2f", label, t["acc_r"], t["acc_f"], t["h_mean"]
        )
    table = format_table(rows, before)
    print(table)  # the table is this script's output
    doc = {
        "setting": {
            "dataset": "Fashion-MNIST",
            "forget_classes": list(args.classes),
            "tiny": args.tiny,
            "overrides": opts,
            "test_images": len(data.test),
            "weights": base_cfg.CLS.WEIGHTS,
            "torch_threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
        },
        "before": before,
        "rows": rows,
        "table": table,
        "runs": runs,
    }
    with atomic_write(args.output) as f:
        json.dump(doc, f, indent=2)
    logger.info("wrote %s", args.output)
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
