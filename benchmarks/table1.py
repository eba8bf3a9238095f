#!/usr/bin/env python
"""Poppi et al.'s Table 1 protocol on Fashion-MNIST: unlearn each class in turn.

For every row (a method with its yaml config in ``configs/classification/``) and every
class c of the 10, the shipped ViT (``fmnist_vit.safetensors``) forgets class c alone
with Poppi et al.'s early stopping (``FORGET.EARLY_STOP.SELECT val_score``: score
``mean(Acc_r, 100 - Acc_f)`` on the validation split carved from train every ``PERIOD``
steps, keep the best weights, stop after ``PATIENCE`` checks without a better score).
Acc_r / Acc_f of each class's model are measured on the test split; the table gives their
mean and spread (population std) over the classes, and the worst class's Acc_f.

Each method's loss weight (for GS-LoRA and GS-LoRA++ their bound BND, the weight that
decides how hard the forget term pushes) is chosen from a small grid on the **validation
split only**:
every grid value runs on the ``--select`` classes, the value with the best mean validation
score wins, and the remaining classes run with it (the selection classes' runs with the
winning value are reused). The test split is evaluated only for the winning runs.

Acc_r is reported twice: over the retained classes that have training data (det_forget's
convention) and over every not-forgotten class, missing ones included (GS-LoRA's Table 5
convention); with no ``FORGET.MISSING_CLASSES`` (as here) the two are equal.

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/table1.py          # writes JSON
    python benchmarks/table1.py --smoke --output /tmp/t1.json             # seconds
    python benchmarks/table1.py --rows no_retain gs_lora                  # some rows
    python benchmarks/table1.py --merge a.json b.json                    # one table of runs

Rows run in table order and the JSON is rewritten after each row, so an interrupted run
keeps what finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import describe_machine  # noqa: E402
from det_forget.classification.cli import setup_cfg, setup_logging  # noqa: E402
from det_forget.classification.config import resolve_weights_path  # noqa: E402
from det_forget.classification.data import load_splits  # noqa: E402
from det_forget.classification.evaluate import evaluate_per_class  # noqa: E402
from det_forget.classification.model import build_classifier, load_classifier  # noqa: E402
from det_forget.classification.trainer import ClassificationForgetter  # noqa: E402
from det_forget.evaluation.metrics import group_mean  # noqa: E402
from det_forget.forgetting import get_method, tasks_from_config  # noqa: E402
from det_forget.forgetting.stopping import val_selection_score  # noqa: E402
from det_forget.utils.io import atomic_write  # noqa: E402

CONFIG_DIR = ROOT / "configs" / "classification"
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "table1_fmnist.json"
logger = logging.getLogger("det_forget.benchmarks.table1")


@dataclass(frozen=True)
class Row:
    """One row of Table 1: a config, the loss-weight key searched and its grid."""

    key: str
    label: str
    config: str
    grid_key: str = ""
    grid: tuple[float, ...] = ()
    opts: tuple[str, ...] = ()


#: Table order; the first rows are Poppi et al.'s retain-free ablations and GS-LoRA, which
#: the acceptance targets name, so an interrupted run has them.
_RETAIN_FREE = (
    "FORGET.MAX_ITER", "40", "FORGET.EARLY_STOP.PERIOD", "1", "FORGET.EARLY_STOP.PATIENCE", "5",
)  # fmt: skip
_FULL_NO_RETAIN = (
    "FORGET.MAX_ITER", "60", "FORGET.EARLY_STOP.PERIOD", "3", "FORGET.EARLY_STOP.PATIENCE", "5",
)  # fmt: skip
_RETAIN = (
    "FORGET.MAX_ITER", "120", "FORGET.EARLY_STOP.PERIOD", "10", "FORGET.EARLY_STOP.PATIENCE", "3",
)  # fmt: skip
ROWS = (
    Row(
        "no_retain",
        "Bounded (1/CE) + low rank, no retain (Poppi)",
        "no_retain.yaml",
        "FORGET.NO_RETAIN.L1_WEIGHT",
        (3e-4, 1e-3, 3e-3),
        _RETAIN_FREE,
    ),
    Row(
        "gs_lora",
        "GS-LoRA (retain)",
        "gs_lora.yaml",
        "FORGET.LOSS.BOUND",
        (5.0, 15.0),
        _RETAIN,
    ),
    Row(
        "neg_grad_l1",
        "Neg. gradient + L1 on weight change, no retain",
        "baseline_neg_grad_l1.yaml",
        "FORGET.BASELINE.L1_WEIGHT",
        (3e-5, 1e-4, 3e-4),
        _FULL_NO_RETAIN,
    ),
    Row(
        "neg_grad_lora",
        "Neg. gradient + low rank, no retain",
        "neg_grad_lora.yaml",
        "FORGET.NO_RETAIN.L1_WEIGHT",
        (3e-4, 1e-3, 3e-3),
        _RETAIN_FREE,
    ),
    Row(
        "reciprocal_l1",
        "Bounded (1/CE) + L1 on weight change, no retain",
        "baseline_reciprocal_l1.yaml",
        "FORGET.BASELINE.L1_WEIGHT",
        (3e-5, 1e-4, 3e-4),
        _FULL_NO_RETAIN,
    ),
    Row("neg_grad", "Neg. gradient (retain)", "baseline_neg_grad.yaml", opts=_RETAIN),
    Row(
        "random_labels",
        "Random labels (retain)",
        "baseline_random_labels.yaml",
        opts=_RETAIN,
    ),
    Row(
        "finetune",
        "Fine-tune (retain)",
        "baseline_finetune.yaml",
        opts=_RETAIN,
    ),
    Row(
        "gs_lora_pp",
        "GS-LoRA++ (retain)",
        "gs_lora_pp.yaml",
        "FORGET.LOSS.BOUND",
        (5.0, 15.0),
        _RETAIN,
    ),
    Row("retrain", "Retrain (retain)", "baseline_retrain.yaml"),
)

#: Shared overrides: Poppi et al.'s early stopping on a validation subset.
COMMON_OPTS = ["CLS.VAL_EVAL_PER_CLASS", "30", "FORGET.EARLY_STOP.SELECT", "val_score"]
#: ``--smoke``: two classes, two steps, a sliver of data, one grid value.
SMOKE_OPTS = [
    "FORGET.MAX_ITER", "2",
    "FORGET.DATA_RATIO", "0.005",
    "FORGET.EARLY_STOP.PERIOD", "1",
    "FORGET.BASELINE.EWC_SAMPLES", "16",
    "CLS.VAL_EVAL_PER_CLASS", "3",
]  # fmt: skip


def _stats(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
        "max": max(values),
        "min": min(values),
    }


def _run_one(cfg, data, cls: int) -> tuple[dict, torch.nn.Module]:
    """Forget class ``cls`` alone; returns the training record and the model."""
    torch.manual_seed(cfg.SEED)
    model, _ = load_classifier(resolve_weights_path(cfg.CLS.WEIGHTS))
    forgetter = ClassificationForgetter(
        cfg, model, data, model_factory=lambda cfg=cfg: build_classifier(cfg)
    )
    params = forgetter.prepare()
    (task,) = tasks_from_config(cfg, data.test.classes)
    if tuple(task.forget) != (cls,):
        raise AssertionError(f"task forgets {task.forget}, expected ({cls},)")
    start = time.perf_counter()
    stats = forgetter.train_task(task)
    stop = stats["stopping"]
    val = stop.get("best_score")
    if val is None:  # no selection (retrain): score the weights it ended with
        val = val_selection_score(forgetter.evaluate("val_eval"), task.forget, task.retain)
    record = {
        "steps": stats.get("steps"),
        "best_step": stop.get("best_step"),
        "val_score": val,
        "seconds": time.perf_counter() - start,
        "trainable_share": params["trainable_share"],
    }
    return record, forgetter.model


def _accs(per_class: dict[int, float], cls: int, missing: tuple[int, ...] = ()) -> dict:
    others = [c for c in per_class if c != cls]
    return {
        "acc_f": per_class[cls],
        "acc_r": group_mean(per_class, [c for c in others if c not in missing]),
        "acc_r_with_missing": group_mean(per_class, others),
    }


def run_row(row: Row, classes: list[int], select: list[int], opts: list, data, test) -> dict:
    """The row's grid on ``select`` (validation), then every class with the winner."""
    names = list(data.test.classes)
    grid = row.grid or (None,)
    runs: dict[tuple, tuple[dict, torch.nn.Module]] = {}

    def cfg_for(value, cls):
        extra = [row.grid_key, repr(value)] if value is not None else []
        return setup_cfg(
            str(CONFIG_DIR / row.config),
            [*COMMON_OPTS, *row.opts, *opts, *extra, "FORGET.CLASSES", repr([names[cls]])],
        )

    select_scores = {}
    for value in grid:
        if len(grid) == 1:
            break
        for cls in select:
            runs[(value, cls)] = _run_one(cfg_for(value, cls), data, cls)
            logger.info(
                "%s %s=%s class %s: val score %.2f (%d steps, %.0fs)",
                row.key,
                row.grid_key,
                value,
                names[cls],
                runs[(value, cls)][0]["val_score"],
                runs[(value, cls)][0]["steps"],
                runs[(value, cls)][0]["seconds"],
            )
        select_scores[repr(value)] = statistics.fmean(
            runs[(value, c)][0]["val_score"] for c in select
        )
    chosen = grid[0] if len(grid) == 1 else max(grid, key=lambda v: select_scores[repr(v)])
    per_class = []
    for cls in classes:
        record, model = runs.get((chosen, cls)) or _run_one(cfg_for(chosen, cls), data, cls)
        acc = evaluate_per_class(model, test.images, test.labels, test.num_classes)
        record = {**record, **_accs(acc, cls), "class": names[cls]}
        per_class.append(record)
        logger.info(
            "%s class %s: Acc_r %.2f Acc_f %.2f (val %.2f, %s steps)",
            row.key,
            names[cls],
            record["acc_r"],
            record["acc_f"],
            record["val_score"],
            record["steps"],
        )
        runs.pop((chosen, cls), None)
    return {
        "row": row.key,
        "label": row.label,
        "method": row.key,
        "config": row.config,
        "overrides": [*COMMON_OPTS, *row.opts, *opts],
        "uses_retain_data": get_method(row.key).uses_retain_data,
        "grid_key": row.grid_key,
        "grid": list(row.grid),
        "select_val_scores": select_scores,
        "chosen": chosen,
        "acc_r": _stats([r["acc_r"] for r in per_class]),
        "acc_r_with_missing": _stats([r["acc_r_with_missing"] for r in per_class]),
        "acc_f": _stats([r["acc_f"] for r in per_class]),
        "seconds": sum(r["seconds"] for r in per_class),
        "classes": per_class,
    }


def format_table(doc: dict) -> str:
    """Fixed-width Table 1: mean +- std over the classes, worst Acc_f, chosen weight."""
    header = ("Row", "D_r", "Acc_r", "Acc_f", "worst Acc_f", "weight", "classes")
    lines = []
    o = doc["original"]
    lines.append(
        (
            "Original model",
            "-",
            f"{o['acc_r']['mean']:.2f} +- {o['acc_r']['std']:.2f}",
            f"{o['acc_f']['mean']:.2f} +- {o['acc_f']['std']:.2f}",
            f"{o['acc_f']['max']:.2f}",
            "-",
            str(len(o["classes"])),
        )
    )
    for r in doc["rows"]:
        lines.append(
            (
                r["label"],
                "yes" if r["uses_retain_data"] else "no",
                f"{r['acc_r']['mean']:.2f} +- {r['acc_r']['std']:.2f}",
                f"{r['acc_f']['mean']:.2f} +- {r['acc_f']['std']:.2f}",
                f"{r['acc_f']['max']:.2f}",
                "-" if r["chosen"] is None else f"{r['chosen']:g}",
                str(len(r["classes"])),
            )
        )
    widths = [max(len(x[i]) for x in (header, *lines)) for i in range(len(header))]
    fmt = "  ".join([f"{{:<{widths[0]}}}"] + [f"{{:>{w}}}" for w in widths[1:]])
    sep = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([fmt.format(*header), sep, *(fmt.format(*x) for x in lines)])


def _can_join(a: dict, b: dict) -> bool:
    """Two runs of one row on disjoint classes with the same weight and overrides."""
    disjoint = not {c["class"] for c in a["classes"]} & {c["class"] for c in b["classes"]}
    same = a["chosen"] == b["chosen"] and a["overrides"] == b["overrides"]
    return disjoint and same


def _join(a: dict, b: dict, run: dict) -> dict:
    """One row from two runs on disjoint classes: classes combined, statistics redone."""
    classes = a["classes"] + b["classes"]
    runs = a["run"] if isinstance(a["run"], list) else [a["run"]]
    return {
        **a,
        "classes": classes,
        "acc_r": _stats([c["acc_r"] for c in classes]),
        "acc_r_with_missing": _stats([c["acc_r_with_missing"] for c in classes]),
        "acc_f": _stats([c["acc_f"] for c in classes]),
        "seconds": a["seconds"] + b["seconds"],
        "run": [*runs, run],
    }


def merge_runs(paths: list[Path]) -> dict:
    """One Table 1 from several runs' JSON files (rows in table order). A later file's row
    replaces an earlier one's, unless it ran the same weight and overrides on other
    classes: then the classes are joined (a row split over processes). The original-model
    numbers are those of the run with the most classes; each row keeps the machine, commit
    and overrides it was run with (``run``, a list for a joined row)."""
    docs = [json.loads(p.read_text()) for p in paths]
    if any(d["setting"].get("smoke") for d in docs):
        raise ValueError("--merge: smoke runs cannot be merged into a table")
    base = max(docs, key=lambda d: len(d["original"]["classes"]))
    rows: dict[str, dict] = {}
    for path, d in zip(paths, docs, strict=True):
        if d["setting"]["test_per_class"] != base["setting"]["test_per_class"]:
            raise ValueError(f"--merge: {path} used another --test-per-class")
        for r in d["rows"]:
            run = {
                "file": path.name,
                "machine": d["setting"]["machine"].get("summary"),
                "git_commit": d["setting"]["machine"].get("git_commit"),
                "date": d["setting"]["machine"].get("date"),
            }
            prev = rows.get(r["row"])
            if prev is not None and _can_join(prev, r):
                rows[r["row"]] = _join(prev, r, run)
            else:
                rows[r["row"]] = {**r, "run": run}
    order = [r.key for r in ROWS]
    doc = {
        **base,
        "setting": {**base["setting"], "merged_from": [p.name for p in paths]},
        "rows": sorted(rows.values(), key=lambda r: order.index(r["row"])),
        "missing_rows": [k for k in order if k not in rows],
        "seconds": sum(d.get("seconds", 0.0) for d in docs),
    }
    doc["table"] = format_table(doc)
    return doc


def main(argv: list[str] | None = None) -> dict:
    """Run the rows, print Table 1, write the JSON; returns the JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 classes, 2 steps (a test)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="results JSON path")
    parser.add_argument("--rows", nargs="*", default=None, help=f"rows ({[r.key for r in ROWS]})")
    parser.add_argument("--classes", type=int, nargs="*", default=None, help="class ids (all)")
    parser.add_argument(
        "--select", type=int, nargs="*", default=[0, 4, 8], help="grid-selection class ids"
    )
    parser.add_argument(
        "--test-per-class", type=int, default=200, help="test images per class (0: all 1000)"
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="combine the rows of earlier runs' JSON files (e.g. rows run in parallel "
        "processes) into --output, in table order; runs nothing",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides (all rows)")
    args = parser.parse_args(argv)
    if args.merge:
        doc = merge_runs([Path(p) for p in args.merge])
        print(doc["table"])
        with atomic_write(args.output) as f:
            json.dump(doc, f, indent=2)
        return doc
    rows = [r for r in ROWS if args.rows is None or r.key in args.rows]
    if args.rows is not None and len(rows) != len(args.rows):
        raise ValueError(f"--rows {args.rows}: valid rows are {[r.key for r in ROWS]}")
    opts = [*(SMOKE_OPTS if args.smoke else []), *args.opts]
    if args.test_per_class:
        opts += ["CLS.TEST_PER_CLASS", str(args.test_per_class)]
    setup_logging(None)
    torch.set_num_threads(1)

    base = setup_cfg(str(CONFIG_DIR / "gs_lora.yaml"), [*COMMON_OPTS, *opts])
    data = load_splits(base)
    test = data.test
    classes = args.classes if args.classes is not None else list(range(test.num_classes))
    if args.smoke and args.classes is None:
        classes = [0, 1]
    select = [c for c in args.select if c in classes] or classes[:1]
    if args.smoke:
        select = classes[:1]
        rows = [Row(r.key, r.label, r.config, r.grid_key, r.grid[:2], ()) for r in rows[:2]]
    model, _ = load_classifier(resolve_weights_path(base.CLS.WEIGHTS))
    before = evaluate_per_class(model, test.images, test.labels, test.num_classes)
    names = list(test.classes)
    orig = [{**_accs(before, c), "class": names[c]} for c in classes]
    doc = {
        "setting": {
            "dataset": "Fashion-MNIST",
            "protocol": "each class forgotten alone, in turn (Poppi et al. Table 1)",
            "classes": [names[c] for c in classes],
            "grid_selection_classes": [names[c] for c in select],
            "selection": "mean validation score mean(Acc_r, 100 - Acc_f) on the validation "
            "split carved from train (CLS.VAL_PER_CLASS), never the test split",
            "test_images": len(test),
            "test_per_class": args.test_per_class or "all",
            "smoke": args.smoke,
            "overrides": opts,
            "acc_r_conventions": {
                "acc_r": "retained classes with training data (det_forget)",
                "acc_r_with_missing": "every not-forgotten class incl. missing ones "
                "(GS-LoRA Table 5); equal here (no missing classes)",
            },
            "spread": "population std over the classes; worst = max Acc_f",
            "machine": describe_machine("cpu"),
        },
        "original": {
            "acc_r": _stats([r["acc_r"] for r in orig]),
            "acc_r_with_missing": _stats([r["acc_r_with_missing"] for r in orig]),
            "acc_f": _stats([r["acc_f"] for r in orig]),
            "classes": orig,
        },
        "rows": [],
        "missing_rows": [r.key for r in rows],
    }
    start = time.perf_counter()
    for row in rows:
        doc["rows"].append(run_row(row, classes, select, opts, data, test))
        doc["missing_rows"].remove(row.key)
        doc["seconds"] = time.perf_counter() - start
        doc["table"] = format_table(doc)
        with atomic_write(args.output) as f:
            json.dump(doc, f, indent=2)
        logger.info("row %s done; wrote %s\n%s", row.key, args.output, doc["table"])
    doc["table"] = format_table(doc)
    print(doc["table"])
    with atomic_write(args.output) as f:
        json.dump(doc, f, indent=2)
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
