#!/usr/bin/env python
"""Make a classifier (or face model) forget classes: GS-LoRA, GS-LoRA++, no-retain, baselines.

Examples::

    python tools/forget_classification.py --config-file configs/classification/gs_lora.yaml
    python tools/forget_classification.py --config-file configs/classification/no_retain.yaml \
        FORGET.CLASSES "['Sandal']" OUTPUT_DIR output/cls/no_retain_sandal

Writes the run directory of every task type (:mod:`det_forget.forgetting.run_dir`) into
``OUTPUT_DIR``: ``history.json`` (per-class accuracy before/after each task, Acc_f, Acc_r,
Acc_o, Acc_m, Drop, H-Mean, and the run summary with trainable share and wall time),
``config.yaml``, ``adapters/task_XX/`` (LoRA methods) and, with ``FORGET.SAVE_MERGED``,
``model_merged.safetensors``. Files are written when a task finishes: a run that fails in
its first task (e.g. a NaN loss) leaves an earlier run's results as they were. An
``OUTPUT_DIR`` that holds a finished run is refused before anything is written (choose
another, or set ``FORGET.OVERWRITE True`` to replace it). User errors print one
``error:`` line and exit with status 2 (``--debug``: with the traceback).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch

from det_forget.classification.cli import build_argument_parser, setup_cfg, setup_logging
from det_forget.classification.config import resolve_weights_path
from det_forget.classification.data import load_splits
from det_forget.classification.evaluate import embed, verification_report
from det_forget.classification.face import FaceRecognizer
from det_forget.classification.model import build_classifier, load_classifier
from det_forget.classification.trainer import ClassificationForgetter, summarize_run
from det_forget.errors import run_tool
from det_forget.forgetting import RunDirectory, tasks_from_config

logger = logging.getLogger("det_forget.tools.forget_classification")


def expected_arch(cfg) -> dict:
    """The architecture keys a checkpoint must match for this config."""
    m = cfg.CLS.MODEL
    return {
        "name": m.NAME,
        "num_classes": m.NUM_CLASSES,
        "img_size": m.IMG_SIZE,
        "in_chans": m.IN_CHANS,
        "patch_size": m.PATCH_SIZE,
        "embed_dim": m.EMBED_DIM,
        "depth": m.DEPTH,
        "num_heads": m.NUM_HEADS,
    }


def face_verification(cfg, model, data, last_task) -> dict:
    """TAR at ``CLS.FACE.FAR`` on all test identities and on the retained ones only."""
    emb = embed(model, data.test.images, cfg.CLS.EVAL_BATCH_SIZE)
    keep = torch.isin(data.test.labels, torch.tensor(list(last_task.retain)))
    return {
        "all": verification_report(emb, data.test.labels, cfg.CLS.FACE.FAR),
        "retained": verification_report(emb[keep], data.test.labels[keep], cfg.CLS.FACE.FAR),
    }


def run(cfg, write: bool = True) -> dict:
    """Load data and weights, forget, and (optionally) write the outputs.

    Args:
        cfg: a frozen classification config.
        write: write the run directory into ``OUTPUT_DIR``.

    Returns:
        ``{"summary": ..., "result": ...}``.
    """
    if write:
        RunDirectory(cfg.OUTPUT_DIR).check_new_run(overwrite=cfg.FORGET.OVERWRITE)
    torch.manual_seed(cfg.SEED)
    data = load_splits(cfg)
    model, meta = load_classifier(resolve_weights_path(cfg.CLS.WEIGHTS), expected_arch(cfg))
    if model.num_classes != data.test.num_classes:
        raise ValueError(
            f"checkpoint {cfg.CLS.WEIGHTS} has {model.num_classes} classes, the dataset "
            f"{data.test.num_classes}"
        )
    tasks = tasks_from_config(cfg, data.test.classes)
    forgetter = ClassificationForgetter(
        cfg, model, data, model_factory=lambda: build_classifier(cfg)
    )
    out = Path(cfg.OUTPUT_DIR)
    verification = {}
    if isinstance(model, FaceRecognizer):
        verification["before"] = face_verification(cfg, model, data, tasks[-1])
    result = forgetter.run(tasks, output_dir=out if write else None)
    summary = summarize_run(result)
    if verification:
        verification["after"] = face_verification(cfg, forgetter.model, data, tasks[-1])
        summary["verification"] = verification
    report = {"summary": summary, "result": result, "config": json.loads(json.dumps(cfg))}
    if write:
        run_dir = RunDirectory(out)
        history = run_dir.read_history()
        history.info["summary"] = summary
        run_dir.write_history(history)
        logger.info("wrote %s", run_dir.history_path)
    for row in summary["tasks"]:
        logger.info(
            "task %d forget %s: Acc_f %.2f -> %.2f | Acc_r %.2f -> %.2f | Acc_o %s | Acc_m %s "
            "| H-Mean %.2f",
            row["task"],
            row["forget"],
            row["acc_f_before"],
            row["acc_f"],
            row["acc_r_before"],
            row["acc_r"],
            "-" if row["acc_o"] is None else f"{row['acc_o']:.2f}",
            "-" if row["acc_m"] is None else f"{row['acc_m']:.2f}",
            row["h_mean"] or 0.0,
        )
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    cfg = setup_cfg(args.config_file, args.opts)
    # Before log.txt is opened: a finished run there stays as it is.
    RunDirectory(cfg.OUTPUT_DIR).check_new_run(overwrite=cfg.FORGET.OVERWRITE)
    setup_logging(cfg.OUTPUT_DIR)
    try:
        run(cfg)
    except FloatingPointError as err:
        logger.error("forgetting diverged: %s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
