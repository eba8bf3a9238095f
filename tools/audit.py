#!/usr/bin/env python
"""Audit a forgetting run: membership inference and linear probes, base vs forgotten (vs retrain).

Examples::

    python tools/audit.py --task classification \
        --config-file configs/classification/gs_lora.yaml \
        --forgotten output/classification/gs_lora \
        --retrained output/classification/baseline_retrain \
        [--references 4] [--relearn-shots 5]
    python tools/audit.py --task detection --config-file configs/coco_forget.yaml \
        --forgotten output/coco_forget --max-samples 500
    python tools/audit.py --task detection --config-file configs/fashion_det_forget.yaml \
        --forgotten output/fashion_det_forget \
        --retrained det_forget/model_zoo/fashion_vit_tiny_frcnn_retrain.pth \
        --relearn-shots 5 --relearn-batch-size 4 --relearn-eval-period 5

``--forgotten`` (and ``--retrained``) take a run folder (``OUTPUT_DIR``) or a checkpoint.
Run folders are read through :class:`det_forget.forgetting.RunDirectory`, the same way for
both tasks: the run's merged model (``model_merged.safetensors`` / ``model_merged.pth``)
when it wrote one, else the base model with the run's task adapters
(``adapters/task_XX``) applied in task order. The forgotten classes are those of the
run's ``history.json``, else the config's; ``--forget-classes`` overrides both. Folders of
an earlier det_forget layout are refused with the ``tools/convert_run.py`` command that
converts them.

Classification only: ``--references K`` trains K reference models (the base checkpoint's
architecture and recipe, each on a random half of the training + test images) and adds
the calibrated attack, which becomes the headline.

``--relearn-shots k`` fine-tunes a copy of every model on k training images per forgotten
class (and per retained class) and reports the steps until the forgotten classes' score
on held-out images is back at half the base's: accuracy for classifiers, box AP (AP_f)
for detectors (k training images holding each class; every weight trains on the
detector's own losses).

Detection also runs every model as a detector on up to ``--eval-images`` held-out images
holding the forgotten classes and reports AP_f, AP_r and the object fate of the forgotten
objects (the project's COCO evaluator); relearn time is measured on the same images. When
``--forgotten`` is a run folder whose evaluator report has an object-fate section, the
report quotes it too.

Prints a table and writes the JSON report (``--output``; default ``audit.json`` in the
forgotten run's folder, where the app finds it). Trailing ``KEY VALUE`` pairs override
config keys. The exit status is 0 whether or not the check passes (read
``within_tolerance`` in the JSON); it is 2 for bad arguments or files, printed as one
``error:`` line (``--debug``: with the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

import det_forget  # noqa: E402,F401  (registers the detectron2 components and datasets)
from det_forget.audit import (  # noqa: E402
    AUDIT_FILE_NAME,
    CALIBRATION_MODES,
    AuditReport,
    audit_classifier,
    audit_detector,
)
from det_forget.errors import run_tool  # noqa: E402
from det_forget.forgetting import RunDirectory, resolve_classes, tasks_from_config  # noqa: E402

logger = logging.getLogger("det_forget.tools.audit")

DEFAULT_CONFIGS = {
    "classification": "configs/classification/gs_lora.yaml",
    "detection": "configs/coco_forget.yaml",
}


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(DEFAULT_CONFIGS), required=True)
    parser.add_argument(
        "--config-file",
        default="",
        metavar="FILE",
        help="config of the run (default: gs_lora.yaml / coco_forget.yaml)",
    )
    parser.add_argument(
        "--base",
        default="",
        metavar="FILE",
        help="checkpoint before forgetting (default: the config's CLS.WEIGHTS / MODEL.WEIGHTS)",
    )
    parser.add_argument(
        "--forgotten",
        required=True,
        metavar="PATH",
        help="the forgetting run's OUTPUT_DIR, or a checkpoint after forgetting",
    )
    parser.add_argument(
        "--retrained",
        default="",
        metavar="PATH",
        help="optional run folder or checkpoint of a model retrained without the classes",
    )
    parser.add_argument(
        "--forget-classes",
        nargs="+",
        default=None,
        metavar="CLASS",
        help="names or ids of the forgotten classes (default: from the run, else the config)",
    )
    parser.add_argument(
        "--output",
        default="",
        metavar="FILE",
        help=f"report JSON (default: <forgotten run folder>/{AUDIT_FILE_NAME})",
    )
    parser.add_argument(
        "--max-samples",
        type=int,
        default=1000,
        help="members and non-members each, at most (samples or boxes; 0: all)",
    )
    parser.add_argument(
        "--probe-per-class",
        type=int,
        default=200,
        help="classification: held-out images per class for the probe (0: all)",
    )
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed MIA AUC gap")
    calibrated = parser.add_argument_group(
        "calibrated attack (classification)",
        "each image's score compared with reference models' (LiRA); see docs/audit.md",
    )
    calibrated.add_argument(
        "--references",
        type=int,
        default=0,
        metavar="K",
        help="train K reference models, each on a random half of train + test (0: off; "
        "4 or more allow --calibration online)",
    )
    calibrated.add_argument(
        "--reference-epochs",
        type=int,
        default=0,
        metavar="N",
        help="epochs of each reference (default: the base checkpoint's recorded recipe, "
        "else the config's CLS.PRETRAIN)",
    )
    calibrated.add_argument(
        "--calibration",
        choices=CALIBRATION_MODES,
        default="offline",
        help="offline: against references that left the image out (default); online: "
        "likelihood ratio of IN vs OUT references",
    )
    relearn = parser.add_argument_group(
        "relearn time",
        "fine-tuning steps until the forgotten classes are back at half the base's "
        "accuracy (classification) or box AP_f (detection)",
    )
    relearn.add_argument(
        "--relearn-shots",
        type=int,
        default=0,
        metavar="K",
        help="training images per forgotten class (and per retained class) to fine-tune "
        "on; detection: images holding the class (0: off)",
    )
    relearn.add_argument("--relearn-steps", type=int, default=50, help="step budget")
    relearn.add_argument("--relearn-lr", type=float, default=1e-4, help="AdamW learning rate")
    relearn.add_argument(
        "--relearn-batch-size",
        type=int,
        default=0,
        help="images per step (default: 16 classification, 4 detection)",
    )
    relearn.add_argument(
        "--relearn-eval-period",
        type=int,
        default=0,
        help="steps between checks (default: 1 classification, 5 detection)",
    )
    parser.add_argument(
        "--eval-images",
        type=int,
        default=100,
        metavar="N",
        help="detection: held-out images holding the forgotten classes that AP_f, object "
        "fate and relearn are measured on, at most (0: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--note",
        default="",
        help="free text stored in the report (e.g. how the models were made)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of user errors too"
    )
    parser.add_argument(
        "opts",
        default=None,
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs",
    )
    return parser


def display_path(path: str) -> str:
    """``path`` relative to the working directory when it lies inside it (portable reports)."""
    if not path:
        return path
    absolute = os.path.abspath(path)
    inside = os.path.commonpath([absolute, os.getcwd()]) == os.getcwd()
    return os.path.relpath(absolute) if inside else path


def default_output(args: argparse.Namespace) -> Path:
    """``--output``, else ``audit.json`` in the forgotten run's folder."""
    if args.output:
        return Path(args.output)
    forgotten = Path(args.forgotten)
    if forgotten.is_dir():
        return forgotten / AUDIT_FILE_NAME
    raise ValueError(f"--forgotten {forgotten} is a file; say where the report goes with --output")


# ---------------------------------------------------------------------------- runs


def model_files(path: str) -> tuple[Path | None, list[Path]]:
    """What to load for ``path``: ``(checkpoint, [])`` or ``(None, adapters on the base)``.

    Args:
        path: a checkpoint file, or a run folder (its merged model wins over its adapters).

    Raises:
        LegacyRunError: a run folder of an earlier layout (names ``tools/convert_run.py``).
        FileNotFoundError: not a run, or a run with neither a merged model nor adapters.
    """
    p = Path(path)
    if p.is_file():
        return p, []
    run = RunDirectory(p)
    run.read_history()  # refuses folders that are not runs of this format, with the reason
    merged = run.merged_model()
    if merged is not None:
        return merged, []
    adapters = run.adapters()
    if not adapters:
        raise FileNotFoundError(
            f"{p} holds no model: the run saved neither a merged model nor task adapters"
        )
    return None, adapters


def forgotten_classes(path: str, class_names: list[str]) -> list[int] | None:
    """Ids of every class the run at ``path`` forgot (None: not a run folder, or no task)."""
    if not Path(path).is_dir():
        return None
    names = RunDirectory(path).read_history().forgotten_classes
    ids = resolve_classes(names, class_names, what="forgotten classes of the run", allow_empty=True)
    return sorted(ids) or None


# ---------------------------------------------------------------------------- classification


def load_classifier_run(path: str, base_path: str, expected_arch: dict) -> torch.nn.Module:
    """A classifier from a checkpoint or a classification run folder (see :func:`model_files`)."""
    from det_forget.classification import load_classifier
    from det_forget.lora import load_adapter_sequence, unload_adapters

    checkpoint, adapters = model_files(path)
    if checkpoint is not None:
        return load_classifier(checkpoint, expected_arch)[0]
    model = load_classifier(base_path, expected_arch)[0]
    load_adapter_sequence(model, adapters)
    return unload_adapters(model, merge=True).eval()


def reference_recipe(cfg: Any, base_info: dict, epochs: int = 0):
    """The recipe references train with: the base's recorded one, else ``CLS.PRETRAIN``.

    Args:
        cfg: the audit's config.
        base_info: the base checkpoint's JSON (``metadata.recipe`` when
            ``tools/pretrain_classifier.py`` wrote it).
        epochs: if > 0, overrides the recipe's epochs.

    Raises:
        ValueError: the recipe continues from other weights (``INIT_WEIGHTS``): those
            weights saw every image, so no reference trained from them is OUT.
    """
    from det_forget.classification import PretrainRecipe

    cfg = cfg.clone()
    cfg.defrost()
    metadata = base_info.get("metadata")
    recorded = metadata.get("recipe") if isinstance(metadata, dict) else None
    if isinstance(recorded, dict):
        cfg.CLS.PRETRAIN.merge_from_other_cfg(type(cfg)(recorded))
    if cfg.CLS.PRETRAIN.INIT_WEIGHTS:
        raise ValueError(
            f"the base model's recipe continues from {cfg.CLS.PRETRAIN.INIT_WEIGHTS}, which "
            "trained on every image; references must train from scratch: audit a base "
            "trained in one stage, or give CLS.PRETRAIN.INIT_WEIGHTS '' with the full "
            "schedule (CLS.PRETRAIN.* overrides)"
        )
    if epochs > 0:
        cfg.CLS.PRETRAIN.EPOCHS = epochs
    return PretrainRecipe.from_config(cfg)


def run_classification(args: argparse.Namespace) -> AuditReport:
    """Load the classification models and data named by ``args`` and audit them."""
    from det_forget.classification import (
        load_classifier,
        load_splits,
        read_checkpoint_info,
        resolve_weights_path,
    )
    from det_forget.classification.cli import setup_cfg

    cfg = setup_cfg(args.config_file or DEFAULT_CONFIGS["classification"], args.opts)
    base_path = args.base or str(resolve_weights_path(cfg.CLS.WEIGHTS))
    base_info = read_checkpoint_info(base_path)
    arch = dict(base_info["arch"])
    data = load_splits(cfg)
    base = load_classifier(base_path)[0]
    if base.num_classes != data.test.num_classes:
        raise ValueError(
            f"{base_path} has {base.num_classes} classes, the dataset {data.test.num_classes}"
        )
    forgotten = load_classifier_run(args.forgotten, base_path, arch)
    retrained = load_classifier_run(args.retrained, base_path, arch) if args.retrained else None
    classes = data.test.classes
    if args.forget_classes:
        forget = resolve_classes(args.forget_classes, classes)
    else:
        forget = forgotten_classes(args.forgotten, classes)
        if forget is None:
            forget = sorted({c for t in tasks_from_config(cfg, classes) for c in t.forget})
    references = None
    if args.references > 0:
        from det_forget.audit import train_reference_classifiers
        from det_forget.classification import CLASSIFIER_REGISTRY

        recipe = reference_recipe(cfg, base_info, args.reference_epochs)
        build_args = {k: v for k, v in arch.items() if k != "name"}
        build = CLASSIFIER_REGISTRY.get(arch["name"])
        logger.info(
            "training %d reference models (%d epochs each) on halves of %d images",
            args.references,
            recipe.epochs,
            len(data.train) + len(data.test),
        )
        references = train_reference_classifiers(
            lambda: build(**build_args),
            data.train,
            data.test,
            recipe,
            num_models=args.references,
            seed=args.seed,
        )
    return audit_classifier(
        base,
        forgotten,
        retrained=retrained,
        members=data.train,
        nonmembers=data.test,
        forget_classes=forget,
        max_samples=args.max_samples,
        probe_per_class=args.probe_per_class,
        tolerance=args.tolerance,
        seed=args.seed,
        batch_size=cfg.CLS.EVAL_BATCH_SIZE,
        sources=_sources(base_path, args),
        references=references,
        calibration=args.calibration,
        relearn=relearn_settings(args, batch_size=16, eval_period=1),
    )


def relearn_settings(
    args: argparse.Namespace, *, batch_size: int, eval_period: int
) -> dict[str, Any] | None:
    """The relearn keywords ``args`` ask for (None: ``--relearn-shots 0``), with the task's
    default batch size and check period where the flags are left at 0."""
    if args.relearn_shots <= 0:
        return None
    return {
        "shots": args.relearn_shots,
        "steps": args.relearn_steps,
        "lr": args.relearn_lr,
        "batch_size": args.relearn_batch_size or batch_size,
        "eval_period": args.relearn_eval_period or eval_period,
    }


def _sources(base: str, args: argparse.Namespace) -> dict[str, str]:
    return {
        "base": display_path(str(base)),
        "forgotten": display_path(args.forgotten),
        "retrained": display_path(args.retrained),
    }


# ---------------------------------------------------------------------------- detection


def load_detector_run(cfg: Any, path: str, base_weights: str):
    """A detector from a checkpoint or a forgetting run folder (see :func:`model_files`)."""
    from det_forget.engine.inference import load_detector

    checkpoint, adapters = model_files(path)
    if checkpoint is not None:
        return load_detector(cfg, checkpoint)
    return load_detector(cfg, base_weights, adapters)


def run_detection(args: argparse.Namespace) -> AuditReport:
    """Load the detectors and datasets named by ``args`` and audit them."""
    from detectron2.data import DatasetCatalog

    from det_forget.engine.inference import build_config, load_detector

    cfg = build_config(args.config_file or DEFAULT_CONFIGS["detection"], args.opts or [])
    base_weights = args.base or cfg.MODEL.WEIGHTS
    base = load_detector(cfg, base_weights)
    names = base.class_names
    forgotten = load_detector_run(cfg, args.forgotten, base_weights)
    retrained = load_detector_run(cfg, args.retrained, base_weights) if args.retrained else None
    if not len(cfg.DATASETS.TRAIN) or not len(cfg.DATASETS.TEST):
        raise ValueError("the config needs DATASETS.TRAIN (members) and DATASETS.TEST (held out)")
    dataset = cfg.DATASETS.TRAIN[0]
    if args.forget_classes:
        forget = resolve_classes(args.forget_classes, names, dataset)
    else:
        forget = forgotten_classes(args.forgotten, names)
        if forget is None:
            forget = sorted({c for t in tasks_from_config(cfg, names, dataset) for c in t.forget})
    report = audit_detector(
        base.model,
        forgotten.model,
        retrained=None if retrained is None else retrained.model,
        cfg=base.cfg,
        member_dicts=DatasetCatalog.get(cfg.DATASETS.TRAIN[0]),
        nonmember_dicts=DatasetCatalog.get(cfg.DATASETS.TEST[0]),
        forget_classes=forget,
        class_names=names,
        max_samples=args.max_samples,
        tolerance=args.tolerance,
        seed=args.seed,
        sources=_sources(base_weights, args),
        nonmember_dataset=cfg.DATASETS.TEST[0],
        eval_images=args.eval_images,
        relearn=relearn_settings(args, batch_size=4, eval_period=5),
    )
    run_fate = run_object_fate(args.forgotten)
    if run_fate is not None:
        report.data["run_object_fate"] = run_fate
    return report


def run_object_fate(path: str) -> dict[str, Any] | None:
    """The object fate of the run's last task, as its evaluator reported it (None: not a
    run folder, or a report without one)."""
    if not Path(path).is_dir():
        return None
    tasks = RunDirectory(path).read_history().tasks
    if not tasks:
        return None
    report = Path(path) / "inference" / f"task_{len(tasks) - 1:02d}" / "forget_report.json"
    if not report.is_file():
        return None
    fate = json.loads(report.read_text()).get("object_fate")
    if not isinstance(fate, dict) or not fate.get("total"):
        return None
    return {"source": display_path(str(report)), "dataset": "the run's val split", **fate}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2: a user error, printed as one
    ``error:`` line; see :func:`det_forget.errors.run_tool`)."""
    return run_tool(audit, argv)


def audit(argv: list[str]) -> int:
    """Run the audit the command line ``argv`` asks for (errors propagate)."""
    args = build_parser().parse_args(argv)
    from detectron2.utils.logger import setup_logger

    setup_logger(name="det_forget", abbrev_name="df")
    output = default_output(args)
    if args.task == "detection" and args.references:
        raise ValueError(
            "--references is for --task classification; the detection audit has the "
            "threshold attacks, the probe, held-out AP and object fate, and relearn time"
        )
    if args.calibration == "online" and 0 < args.references < 4:
        raise ValueError(
            f"--calibration online needs --references 4 or more (each image trained on by "
            f"2 and left out by 2), got {args.references}"
        )
    report = run_classification(args) if args.task == "classification" else run_detection(args)
    argv_list = list(argv)
    report.command = "tools/audit.py " + shlex.join(argv_list)
    if args.note:
        report.data["note"] = args.note
    report.save(output)
    print(report.format_table())
    print(f"\nwrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
