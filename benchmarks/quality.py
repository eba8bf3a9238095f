#!/usr/bin/env python
"""Quality: every forgetting method on an embedded detection benchmark, and the
classification table, in one report.

Detection (``--dataset``): each method starts from the shipped tiny ViT Faster R-CNN of the
dataset and forgets its classes for ``--iters`` iterations with ``ForgetTrainer``, exactly
as ``tools/train_net.py`` runs it with ``FORGET.METHOD`` set (each row stores that command):

* ``shapes``: ``configs/coco_forget.yaml`` (blue_triangle and cyan_ring) on the synthetic
  shapes;
* ``fashion``: ``configs/fashion_det_forget.yaml`` (Shirt and Sneaker, which have look-alike
  kept classes) on fashion_det (Fashion-MNIST items on photographs).

AP_f / AP_r (COCO AP, %) on the whole val split, Drop, H-Mean (``forgetting_summary``),
object fate of the forgotten classes' objects (share re-labelled as another class and
gone, at score >= 0.5 and IoU 0.5, :mod:`det_forget.evaluation.object_fate`), trainable
share, time. The model is evaluated before forgetting once, by the first run; every row is
scored against those numbers. ``--retrained WEIGHTS`` adds the retrained reference as a
row: a detector trained with the same recipe without the forget classes' annotations
(fashion: ``configs/base/fashion_vit_tiny_frcnn_retrain.yaml``), evaluated the same way.

Method settings: the LoRA methods use the demo's settings (no-retain puts its adapters on
the attention q/k/v, as Poppi et al.); the full-weight baselines the same with the
learning rate lowered to 1e-4 (the classification baselines' rate: 1e-3 on all weights
wrecks the detector). Nothing is tuned per method. GS-LoRA runs the config as shipped;
every other row runs without det_forget's background term (``FORGET.LOSS.BACKGROUND_WEIGHT``
0), as its paper has it. Where the config sets the term (fashion), the GS-LoRA row says so
and "GS-LoRA, no background term" follows it. Retrain (train the base detector again
without the forget classes) is not a row of its own: it is the base training recipe, and
``--retrained`` adds its result as the reference row.

Classification: the rows of ``benchmarks/results/classification.json`` (made by
``benchmarks/classification_table.py``; ``--run-classification`` runs it first).

    python benchmarks/quality.py                # full: about 10 runs of 200 iterations
    python benchmarks/quality.py --dataset fashion --retrained RETRAINED.pth
    python benchmarks/quality.py --iters 50     # shorter runs
    python benchmarks/quality.py --smoke        # seconds-long check of the script
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    CONFIG_DIR,
    DEMO_FORGET_CLASSES,
    RESULTS_DIR,
    ROOT,
    add_common_arguments,
    default_output,
    describe_machine,
    format_table,
    median,
    model_setup,
    register_smoke_dataset,
    write_json,
)

__all__ = ["DETECTION_METHODS", "main", "run_detection_method"]

logger = logging.getLogger("det_forget.benchmarks.quality")

_FULL_WEIGHTS = ("SOLVER.BASE_LR", 1e-4)

_NO_BACKGROUND = ("FORGET.LOSS.BACKGROUND_WEIGHT", 0.0)

#: (row label, FORGET.METHOD, extra overrides), in table order. Every row but the first
#: runs without det_forget's background term (FORGET.LOSS.BACKGROUND_WEIGHT 0): the
#: baselines as their papers have them. The first row, the default method, runs the
#: config as shipped; where the config sets the background term, the table also gets
#: :data:`GS_LORA_NO_BACKGROUND`, GS-LoRA without it.
DETECTION_METHODS = (
    ("GS-LoRA", "gs_lora", ()),
    ("GS-LoRA++", "gs_lora_pp", ()),
    ("Low-rank, no retain (Poppi)", "no_retain", ()),
    ("Fine-tune (retain data)", "finetune", _FULL_WEIGHTS),
    ("Neg. gradient + retain", "neg_grad", _FULL_WEIGHTS),
    ("Neg. gradient + L1, no retain", "neg_grad_l1", _FULL_WEIGHTS),
    ("Random labels", "random_labels", _FULL_WEIGHTS),
    ("GS-LoRA loss + L1, no LoRA (retain)", "bounded_retain_l1", _FULL_WEIGHTS),
    ("L2*", "l2", _FULL_WEIGHTS),
    ("EWC*", "ewc", _FULL_WEIGHTS),
)

#: The row added after the first when the config sets FORGET.LOSS.BACKGROUND_WEIGHT; its
#: key (for --methods and its work folder) is not a FORGET.METHOD name.
GS_LORA_NO_BACKGROUND = ("GS-LoRA, no background term", "gs_lora_no_background", "gs_lora")

_SMOKE_OPTS = ["DATALOADER.NUM_WORKERS", 0, "FORGET.BASELINE.EWC_SAMPLES", 4]

#: --dataset -> (config file under configs/, forget classes, shipped weights, description).
DATASETS: dict[str, tuple[str, list[str], str, str]] = {
    "shapes": (
        "coco_forget.yaml",
        DEMO_FORGET_CLASSES,
        "det_forget/model_zoo/shapes_vit_tiny_frcnn.pth",
        "embedded shapes (val split)",
    ),
    "fashion": (
        "fashion_det_forget.yaml",
        ["Shirt", "Sneaker"],
        "det_forget/model_zoo/fashion_vit_tiny_frcnn.pth",
        "fashion_det: Fashion-MNIST items on photographs (val split)",
    ),
}

#: Train / val names of the ``--smoke --dataset fashion`` data (tiny fashion_det).
SMOKE_FASHION = ("bench_smoke_fashion_train", "bench_smoke_fashion_val")


def config_background_weight(config: str) -> float:
    """``FORGET.LOSS.BACKGROUND_WEIGHT`` of ``configs/<config>`` as shipped."""
    from det_forget.engine.inference import build_config

    return float(build_config(CONFIG_DIR / config).FORGET.LOSS.BACKGROUND_WEIGHT)


def _detection_rows(config: str) -> list[tuple[str, str, str, tuple[Any, ...]]]:
    """``(label, key, FORGET.METHOD, extra overrides)`` of every row for ``config``.

    The first row (GS-LoRA) runs the config as shipped; the others without the background
    term. When the config sets it, the first row says so and GS-LoRA without it follows.
    """
    weight = config_background_weight(config)
    (label, method, extra), *others = DETECTION_METHODS
    if weight <= 0:
        rows = [(label, method, method, extra)]
    else:
        no_bg_label, no_bg_key, no_bg_method = GS_LORA_NO_BACKGROUND
        rows = [
            (f"{label} + background term {weight:g} (config)", method, method, extra),
            (no_bg_label, no_bg_key, no_bg_method, (*extra, *_NO_BACKGROUND)),
        ]
    rows += [(lab, m, m, (*ex, *_NO_BACKGROUND)) for lab, m, ex in others]
    return rows


def _command(opts: list[Any], config: str = "coco_forget.yaml") -> str:
    """The ``tools/train_net.py`` command line that runs the same job."""
    args = [
        "tools/train_net.py",
        "--config-file",
        f"configs/{config}",
        *(str(o) if not isinstance(o, list) else json.dumps(o) for o in opts),
    ]
    return " ".join(shlex.quote(a) for a in args)


def run_detection_method(opts: list[Any], config: str = "coco_forget.yaml") -> dict[str, Any]:
    """Forget with ``configs/<config>`` + ``opts`` in this process.

    Returns:
        The task's record in the run folder's ``history.json`` (AP per class before/after,
        summary), wall seconds of the run, the median step time and the trainable
        parameter counts.
    """
    from det_forget.engine import ForgetTrainer, finalize_forget_config
    from det_forget.engine.inference import build_config
    from det_forget.forgetting import RunDirectory
    from det_forget.lora import count_parameters

    cfg = build_config(CONFIG_DIR / config, opts)
    finalize_forget_config(cfg)
    cfg.freeze()
    trainer = ForgetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainable, total = count_parameters(trainer.model)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    (record,) = RunDirectory(cfg.OUTPUT_DIR).read_history().tasks
    # detectron2's IterationTimer: seconds per iteration after its 3 warm-up iterations.
    timer = trainer.storage.histories().get("time")
    steps = [v for v, _ in timer.values()] if timer else []
    return {
        "record": record,
        "object_fate": _read_fate(Path(cfg.OUTPUT_DIR) / "inference" / "task_00"),
        "seconds": seconds,
        "step_median_s": median(steps),
        "trainable_params": trainable,
        "total_params": total,
    }


def _read_fate(folder: Path) -> dict[str, Any] | None:
    """The ``object_fate`` section of the evaluator's report in ``folder``."""
    path = folder / "forget_report.json"
    return json.loads(path.read_text()).get("object_fate") if path.is_file() else None


def _fate_columns(fate: dict[str, Any] | None) -> dict[str, Any]:
    total = (fate or {}).get("total") or {}
    return {
        "detected_pct": total.get("detected_pct"),
        "relabelled_pct": total.get("relabelled_pct"),
        "gone_pct": total.get("gone_pct"),
        "relabelled_as": total.get("relabelled_as"),
        "object_fate": fate,
    }


def evaluate_weights(
    config: str, opts: list[Any], weights: str, output_dir: Path
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``tools/train_net.py --eval-only`` of ``weights`` with ``configs/<config>`` + ``opts``.

    Returns:
        Per-class ``{"AP": ..}`` (the form of a history's "after") and the report's
        object-fate section.
    """
    from det_forget.engine import ForgetTrainer, finalize_forget_config
    from det_forget.engine.inference import build_config

    cfg = build_config(
        CONFIG_DIR / config, [*opts, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(output_dir)]
    )
    finalize_forget_config(cfg)
    cfg.freeze()
    model = ForgetTrainer.build_model(cfg)
    ForgetTrainer.build_checkpointer(model, cfg).resume_or_load(weights, resume=False)
    results = ForgetTrainer.test(cfg, model)
    flat = results.get("forget", {})
    per_class = {
        k[len("AP-") :]: (None if v != v else v) for k, v in flat.items() if k.startswith("AP-")
    }
    return per_class, _read_fate(output_dir / "inference")


def _ap_only(per_class: dict[str, float | None]) -> dict[str, float]:
    return {k: v for k, v in per_class.items() if v is not None}


def _row(label: str, method: str, run: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """A table row: group means, Drop and H-Mean of the run against the shared "before"."""
    from det_forget.evaluation.metrics import ClassGroups, forgetting_summary

    record = run["record"]
    groups = ClassGroups(**{g: tuple(v) for g, v in record["classes"].items()})
    s = forgetting_summary(_ap_only(before), _ap_only(record["after"]), groups)
    before, after = s["before"], s["after"]
    return {
        "method": label,
        "forget_method": method,
        "ap_f": after.get("forget"),
        "ap_r": after.get("retain"),
        "drop": s.get("drop"),
        "h_mean": s.get("h_mean"),
        "retain_change": s.get("retain_change"),
        "ap_f_before": before.get("forget"),
        "ap_r_before": before.get("retain"),
        "trainable_params": run["trainable_params"],
        "trainable_share": 100.0 * run["trainable_params"] / max(run["total_params"], 1),
        "seconds": run["seconds"],
        "step_median_s": run["step_median_s"],
        "per_class_after": dict(record["after"]),
        "groups": {g: list(v) for g, v in record["classes"].items()},
        **_fate_columns(run.get("object_fate")),
    }


def _reference_row(
    label: str, per_class: dict[str, Any], fate: dict | None, groups: Any, before: dict
) -> dict[str, Any]:
    """The retrained reference's row, scored against the same "before" as the methods."""
    from det_forget.evaluation.metrics import forgetting_summary

    s = forgetting_summary(_ap_only(before), _ap_only(per_class), groups)
    return {
        "method": label,
        "ap_f": s["after"].get("forget"),
        "ap_r": s["after"].get("retain"),
        "drop": s.get("drop"),
        "h_mean": s.get("h_mean"),
        "retain_change": s.get("retain_change"),
        "per_class_after": per_class,
        **_fate_columns(fate),
    }


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def detection_table(rows: list[dict[str, Any]], before: dict[str, Any] | None) -> str:
    """AP_f, AP_r, Drop, H-Mean, AP_r change, trainable share and median time per iteration.

    (Whole-run seconds are in the JSON; the first run's include the "before" evaluation.)
    """
    header = (
        "Method", "AP_f", "AP_r", "Drop", "H-Mean", "dAP_r", "Relab. %", "Gone %",
        "Relabelled as", "Trainable %", "s/iter",
    )  # fmt: skip

    def fate(r: dict[str, Any]) -> tuple[str, str, str]:
        top = ", ".join(f"{k} {v}" for k, v in list((r.get("relabelled_as") or {}).items())[:2])
        return _fmt(r.get("relabelled_pct")), _fmt(r.get("gone_pct")), top or "-"

    lines = []
    if before:
        lines.append(
            ("Before forgetting", _fmt(before["ap_f"]), _fmt(before["ap_r"]), "-", "-", "-")
            + fate(before)
            + ("-", "-")
        )
    for r in rows:
        if "error" in r:
            lines.append((r["method"], "failed") + ("",) * 9)
            continue
        lines.append(
            (
                r["method"],
                _fmt(r["ap_f"]),
                _fmt(r["ap_r"]),
                _fmt(r["drop"]),
                _fmt(r["h_mean"]),
                _fmt(r["retain_change"], "+.1f"),
            )
            + fate(r)
            + (_fmt(r.get("trainable_share"), ".2f"), _fmt(r.get("step_median_s"), ".2f"))
        )
    return format_table(header, lines)


def run_detection(args: argparse.Namespace) -> dict[str, Any]:
    """Every selected method on the embedded benchmark; the detection part of the report."""
    setup = model_setup(
        "tiny", smoke=args.smoke, batch=2 if args.smoke else None, device=args.device
    )
    config, forget_classes, weights, description = DATASETS[args.dataset]
    data_opts: list[Any] = []
    if args.dataset != "shapes":
        # The shapes' weights in setup.opts are replaced by the dataset's own.
        data_opts = ["MODEL.WEIGHTS", "" if args.smoke else str(ROOT / weights)]
        if args.smoke:
            data_opts += ["DATASETS.TRAIN", [SMOKE_FASHION[0]], "DATASETS.TEST", [SMOKE_FASHION[1]]]
    base_opts = [
        *setup.opts,
        *data_opts,
        "FORGET.CLASSES", forget_classes,
        "SEED", 0,
        "FORGET.MAX_ITER", args.iters,
        "FORGET.SAVE_MERGED", False,
        "SOLVER.CHECKPOINT_PERIOD", 10**9,
        *(_SMOKE_OPTS if args.smoke else []),
    ]  # fmt: skip
    work = Path(args.work_dir) / ("quality_smoke" if args.smoke else "quality")
    if args.dataset != "shapes":
        work = work.with_name(f"{work.name}_{args.dataset}")
    rows: list[dict[str, Any]] = []
    before_per_class = None
    for label, key, method, extra in _detection_rows(config):
        if key not in args.methods:
            continue
        method_opts = ["FORGET.METHOD", method, *extra]
        # The model is evaluated before forgetting once, by the first run; the others
        # are scored against those numbers (FORGET.EVAL_BEFORE off).
        opts = [
            *base_opts,
            *method_opts,
            "FORGET.EVAL_BEFORE", before_per_class is None,
            "OUTPUT_DIR", str(work / key),
            "FORGET.OVERWRITE", True,  # scratch folders: a rerun replaces its own runs
        ]  # fmt: skip
        logger.info("detection: %s (%d iterations)", label, args.iters)
        try:
            run = run_detection_method(opts, config)
            if before_per_class is None:
                before_per_class = run["record"]["before"]
            row = _row(label, method, run, before_per_class)
        except Exception as e:  # one failed method must not lose the others' numbers
            logger.error("%s failed:\n%s", label, traceback.format_exc())
            rows.append({"method": label, "forget_method": method, "error": repr(e)})
            continue
        row["command"] = _command([*method_opts, "FORGET.MAX_ITER", args.iters, "SEED", 0], config)
        rows.append(row)
        for checkpoint in (work / key).glob("*.pth"):  # keep reports and adapters only
            checkpoint.unlink()
    ok = [r for r in rows if "error" not in r]
    before = {"ap_f": ok[0]["ap_f_before"], "ap_r": ok[0]["ap_r_before"]} if ok else None
    eval_opts = [o for o in base_opts]
    if before is not None and not args.no_before_fate:
        # The base model's object fate (where the objects are before forgetting).
        _, fate = evaluate_weights(config, eval_opts, _weights_of(eval_opts), work / "before_eval")
        before.update(_fate_columns(fate))
    reference = None
    if args.retrained and before_per_class is not None:
        from det_forget.evaluation.metrics import ClassGroups

        per_class, fate = evaluate_weights(config, eval_opts, args.retrained, work / "retrained")
        groups = ClassGroups(**{g: tuple(v) for g, v in ok[0]["groups"].items()})
        reference = _reference_row(
            "Retrained without forget classes (reference)", per_class, fate, groups,
            before_per_class,
        )  # fmt: skip
        reference["weights"] = os.path.relpath(args.retrained, ROOT)
    table_rows = rows + ([reference] if reference else [])
    return {
        "dataset": description,
        "config": f"configs/{config}",
        "forget_classes": list(forget_classes),
        "iterations": args.iters,
        "before": before,
        "rows": rows,
        "reference": reference,
        "table": detection_table(table_rows, before),
    }


def _weights_of(opts: list[Any]) -> str:
    """The last ``MODEL.WEIGHTS`` value in a flat ``KEY VALUE`` list."""
    value = ""
    for key, val in zip(opts[::2], opts[1::2]):
        if key == "MODEL.WEIGHTS":
            value = str(val)
    return value


def load_classification(path: str, run: bool, smoke: bool) -> dict[str, Any] | None:
    """The classification table's JSON (run first when asked); None when missing."""
    from benchmarks import classification_table

    if run:
        classification_table.main(["--output", path, *(["--tiny"] if smoke else [])])
    if not os.path.isfile(path):
        logger.warning("no classification results at %s (run classification_table.py)", path)
        return None
    doc = json.loads(Path(path).read_text())
    return {
        "source": os.path.relpath(path, ROOT),
        "setting": doc["setting"],
        "before": doc["before"],
        "rows": doc["rows"],
        "table": classification_table.format_table(doc["rows"], doc["before"]),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--iters", type=int, default=None, help="per method, default 200")
    parser.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        default="shapes",
        help="detection benchmark: the shapes demo or fashion_det (Shirt + Sneaker)",
    )
    parser.add_argument(
        "--retrained",
        default="",
        help="weights of a detector trained without the forget classes: a reference row",
    )
    parser.add_argument(
        "--no-before-fate",
        action="store_true",
        help="skip the extra evaluation of the base model's object fate",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="rows to run, by FORGET.METHOD (and gs_lora_no_background, run only where "
        "the config sets the background term); default: all in the table",
    )
    parser.add_argument(
        "--classification",
        default=str(RESULTS_DIR / "classification.json"),
        help="classification table JSON to merge in",
    )
    parser.add_argument(
        "--run-classification",
        action="store_true",
        help="run benchmarks/classification_table.py first (--tiny with --smoke)",
    )
    args = parser.parse_args(argv)
    known = {m for _, m, _ in DETECTION_METHODS} | {GS_LORA_NO_BACKGROUND[1]}
    if args.methods is None:
        args.methods = sorted(known)
    if set(args.methods) - known:
        raise ValueError(f"--methods {sorted(set(args.methods) - known)}: valid {sorted(known)}")
    if args.iters is None:
        args.iters = 2 if args.smoke else 200
    name = "quality" if args.dataset == "shapes" else f"quality_{args.dataset}"
    args.output = args.output or str(default_output(name, args.device))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run, print the report, write the JSON; returns the JSON document.

    Exits with status 1 (after writing the JSON) when a detection method failed.
    """
    import torch

    from det_forget.classification.cli import setup_logging

    args = parse_args(argv)
    setup_logging(None)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        register_smoke_dataset(Path(args.work_dir) / "smoke_shapes")
        if args.dataset == "fashion":
            from det_forget.data import register_fashion_det_dataset

            register_fashion_det_dataset(
                Path(args.work_dir) / "smoke_fashion",
                SMOKE_FASHION,
                num_train=24,
                num_val=8,
                image_size=64,
                min_size=12,
                max_size=32,
            )
    machine = describe_machine(args.device)
    start = time.perf_counter()
    detection = run_detection(args)
    classification = load_classification(args.classification, args.run_classification, args.smoke)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    parts = [
        f"Machine: {machine['summary']}",
        f"\nDetection: forget {', '.join(detection['forget_classes'])} on "
        f"{detection['dataset']}, {args.iters} iterations per method (COCO AP %, whole val "
        "split; object fate of the forgotten objects at score >= 0.5, IoU >= 0.5)",
        detection["table"],
    ]
    if classification:
        s = classification["setting"]
        parts += [
            f"\nClassification: forget {', '.join(s['forget_classes'])} on {s['dataset']} "
            f"(accuracy %, from {classification['source']})",
            classification["table"],
        ]
    doc: dict[str, Any] = {
        "benchmark": "quality",
        "machine": machine,
        "setting": {
            "device": args.device,
            "smoke": args.smoke,
            "iterations": args.iters,
            "dataset": args.dataset,
            "threads": args.threads or machine["torch_threads"],
        },
        "detection": detection,
        "classification": classification,
        "seconds": time.perf_counter() - start,
        "report": "\n".join(parts),
    }
    print(doc["report"])  # the report is this script's output
    write_json(args.output, doc)
    logger.info("wrote %s", args.output)
    failed = [r["method"] for r in detection["rows"] if "error" in r]
    if failed:
        logger.error("failed: %s", ", ".join(failed))
        raise SystemExit(1)
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
