#!/usr/bin/env python
"""Convert a run folder of an earlier det_forget to the run directory format, in place.

Examples::

    python tools/convert_run.py output/coco_forget
    python tools/convert_run.py output/classification/gs_lora --keep-legacy

Every reader of runs (the app, ``tools/audit.py``, the benchmarks) reads the one format of
:mod:`det_forget.forgetting.run_dir` and refuses the earlier layouts with a message naming
this tool. It rewrites:

* detection (``forget_report.json`` + ``adapters/task_XX`` + ``model_merged.pth``): the
  report's task records become ``history.json`` (per-class ``{"AP", "AP50"}`` become
  ``{class: AP}``, AP50 and the evaluator's results go to each record's ``details``); the
  adapters and ``model_merged.pth`` stay where they are;
* classification and face (``metrics.json`` + ``artifacts/task_N/adapter`` +
  ``artifacts/model_final.safetensors``): ``result.tasks`` becomes ``history.json`` (class
  ids become names, scores keyed by name), the adapters move to ``adapters/task_NN``, the
  merged model to ``model_merged.safetensors`` and the config to ``config.yaml``.

Adapter manifests get the one manifest schema of every task type. Every file is written
atomically, ``history.json`` last; the earlier files are removed only once all new ones
are written (``--keep-legacy`` keeps them). A folder that already holds ``history.json``
is refused. The exit status is 0 when every folder was converted, 2 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from det_forget.errors import run_tool  # noqa: E402
from det_forget.forgetting import ForgetTask, RunDirectory, RunHistory, config_hash  # noqa: E402
from det_forget.lora import read_adapter_config  # noqa: E402
from det_forget.lora.save_and_load import ADAPTER_CONFIG_NAME  # noqa: E402
from det_forget.utils.io import atomic_directory, atomic_write  # noqa: E402

logger = logging.getLogger("det_forget.tools.convert_run")

DETECTION_REPORT = "forget_report.json"
CLASSIFICATION_REPORT = "metrics.json"
ARTIFACTS = "artifacts"
CLASSIFIER_MERGED = "model_final.safetensors"


def convert_run(path: str | os.PathLike, *, keep_legacy: bool = False) -> RunHistory:
    """Convert the legacy run at ``path`` in place (see the module docstring).

    Args:
        path: the run folder (``OUTPUT_DIR``).
        keep_legacy: keep the earlier files after writing the new ones.

    Returns:
        The written :class:`~det_forget.forgetting.run_dir.RunHistory`.

    Raises:
        ValueError: the folder is already converted, or its legacy files are not what an
            earlier det_forget wrote (the message names the file and key).
        FileNotFoundError: the folder holds no run.
    """
    run = RunDirectory(path)
    if run.is_run():
        raise ValueError(f"{run.path} is already converted: {run.history_path} exists")
    if (run.path / DETECTION_REPORT).is_file():
        history, legacy = _convert_detection(run)
    elif (run.path / ARTIFACTS).is_dir() and (run.path / CLASSIFICATION_REPORT).is_file():
        history, legacy = _convert_classification(run)
    else:
        raise FileNotFoundError(
            f"{run.path} holds no run of an earlier det_forget: expected {DETECTION_REPORT}, "
            f"or {ARTIFACTS}/ with {CLASSIFICATION_REPORT}"
        )
    if not keep_legacy:
        for p in legacy:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    return history


# ---------------------------------------------------------------------------- detection


def _convert_detection(run: RunDirectory) -> tuple[RunHistory, list[Path]]:
    report_path = run.path / DETECTION_REPORT
    report = _read_json(report_path)
    config = _read_yaml(run.config_path)
    try:
        class_names = list(report["classes"])
        legacy_tasks = list(report["tasks"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{report_path} is not a det_forget forget_report.json: lacks {e}") from e
    manifests = {}
    for rec in legacy_tasks:
        directory = run.adapter_dir(_index(rec, report_path))
        if (directory / ADAPTER_CONFIG_NAME).is_file():
            manifests[directory] = read_adapter_config(directory)
    first_meta = next(iter(manifests.values()), {}).get("lora_config", {}).get("metadata", {})
    info = {
        "config_hash": report.get("config_hash") or first_meta.get("config_hash"),
        "base_weights": first_meta.get("base_weights") or _get(config, "MODEL", "WEIGHTS"),
    }
    info = {k: v for k, v in info.items() if v is not None}
    method = report.get("method") or first_meta.get("method") or _get(config, "FORGET", "METHOD")
    if not method:
        raise ValueError(
            f"{report_path}: the run's method is recorded nowhere (report, adapter manifests, "
            "config.yaml)"
        )
    history = RunHistory(
        method=str(method),
        task_type=_detection_task_type(config, run),
        metric="AP",
        class_names=class_names,
        info=info,
    )
    for rec in legacy_tasks:
        task = _task(rec["task"], report_path)
        directory = run.adapter_dir(task.index)
        if rec.get("adapter") and directory not in manifests:
            logger.warning(
                "%s: task %d's adapter %s is not in the run folder; the record keeps no adapter",
                run.path,
                task.index,
                rec["adapter"],
            )
        meta = (
            manifests[directory]["lora_config"].get("metadata", {})
            if directory in manifests
            else {}
        )
        before = _per_class(rec.get("before"), class_names, report_path)
        after = _per_class(rec.get("after"), class_names, report_path)
        record = RunDirectory.task_record(
            task,
            class_names,
            before=None if before is None else before[0],
            after=after[0] if after is not None else {},
            summary=rec.get("summary"),
            adapter=_relative(run, directory) if directory in manifests else None,
            train={"iterations": rec["iterations"]} if "iterations" in rec else None,
            details={
                "AP50_before": None if before is None else before[1],
                "AP50_after": None if after is None else after[1],
                "results": rec.get("results"),
                "data_used": rec.get("data_used", meta.get("data_used")),
            },
        )
        history.tasks.append(record)
    _write(run, history, manifests, config_text=None)
    return history, [report_path]


def _detection_task_type(config: Mapping[str, Any] | None, run: RunDirectory) -> str:
    arch = _get(config, "MODEL", "META_ARCHITECTURE")
    if arch == "ForgettingDetector":
        arch = _get(config, "FORGET", "DETECTOR")
    if arch is None:
        logger.warning("%s has no config.yaml; recording the task type as 'rcnn'", run.path)
    return "detr" if arch in ("DETR", "DeformableDETR") else "rcnn"


def _per_class(
    value: Any, class_names: list[str], source: Path
) -> tuple[dict[str, float | None], dict[str, float | None]] | None:
    """``({class: AP}, {class: AP50})`` of a legacy record's ``before`` / ``after``.

    Entries were ``{class: {"AP": .., "AP50": ..}}``, plain ``{class: AP}`` (runs before
    AP50 was recorded) or the path of a ``FORGET.BEFORE_REPORT`` file.
    """
    if value is None:
        return None
    if isinstance(value, str):
        from det_forget.evaluation.coco_forget import load_before

        try:
            ap, ap50 = load_before(value, class_names)
        except (OSError, ValueError) as e:
            logger.warning(
                "%s: cannot read the 'before' scores %s (%s); left out", source, value, e
            )
            return None
        return dict(ap), {c: ap50.get(c) for c in ap}
    ap = {str(c): (v.get("AP") if isinstance(v, Mapping) else v) for c, v in value.items()}
    ap50 = {str(c): (v.get("AP50") if isinstance(v, Mapping) else None) for c, v in value.items()}
    return ap, ap50


# ---------------------------------------------------------------------------- classification


def _convert_classification(run: RunDirectory) -> tuple[RunHistory, list[Path]]:
    report_path = run.path / CLASSIFICATION_REPORT
    doc = _read_json(report_path)
    try:
        result = doc["result"]
        class_names = list(result["class_names"])
        legacy_tasks = list(result["tasks"])
        method = str(result["method"])
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"{report_path} is not a det_forget classification report: lacks {e}"
        ) from e
    config = doc.get("config")
    config_text = None
    info: dict[str, Any] = {}
    if isinstance(config, Mapping):
        from yacs.config import CfgNode

        node = CfgNode(json.loads(json.dumps(config)))
        config_text = node.dump()
        info["config_hash"] = config_hash(node)
        info["base_weights"] = _get(config, "CLS", "WEIGHTS")
    if "params" in result:
        info["params"] = result["params"]
    face = _get(config, "CLS", "MODEL", "NAME") == "FaceRecognizer"
    history = RunHistory(
        method=method,
        task_type="face" if face else "classification",
        metric="accuracy",
        class_names=class_names,
        info=info,
    )
    artifacts = run.path / ARTIFACTS
    adapters: dict[Path, Path] = {}  # new folder -> legacy folder
    for rec in legacy_tasks:
        task = _task(rec["task"], report_path)
        legacy = artifacts / f"task_{task.index}" / "adapter"
        has_adapter = (legacy / ADAPTER_CONFIG_NAME).is_file()
        if has_adapter:
            adapters[run.adapter_dir(task.index)] = legacy
        record = RunDirectory.task_record(
            task,
            class_names,
            before=_by_name(rec.get("before"), class_names, report_path),
            after=_by_name(rec.get("after"), class_names, report_path) or {},
            summary=rec.get("summary"),
            adapter=_relative(run, run.adapter_dir(task.index)) if has_adapter else None,
            train=rec.get("train"),
        )
        history.tasks.append(record)
    history.info["summary"] = doc.get("summary")
    merged = artifacts / CLASSIFIER_MERGED
    if merged.is_file():
        with (
            open(merged, "rb") as fin,
            atomic_write(run.merged_model_path(".safetensors"), "wb") as f,
        ):
            shutil.copyfileobj(fin, f)
    manifests = {}
    for new, legacy in adapters.items():
        with atomic_directory(new) as staging:
            shutil.copytree(legacy, staging, dirs_exist_ok=True)
        manifests[new] = read_adapter_config(new)
    _write(run, history, manifests, config_text=config_text)
    return history, [artifacts, report_path]


def _by_name(
    scores: Mapping[str, Any] | None, class_names: list[str], source: Path
) -> dict[str, float | None] | None:
    """Per-class scores keyed by class id (JSON: digit strings) -> keyed by class name."""
    if scores is None:
        return None
    out = {}
    for key, value in scores.items():
        try:
            out[class_names[int(key)]] = value
        except (ValueError, IndexError) as e:
            raise ValueError(
                f"{source}: score key {key!r} is not a class id of the {len(class_names)} classes"
            ) from e
    return out


# ---------------------------------------------------------------------------- shared


def _write(
    run: RunDirectory,
    history: RunHistory,
    manifests: dict[Path, dict[str, Any]],
    config_text: str | None,
) -> None:
    """Manifests and config first, ``history.json`` last: it marks the folder converted."""
    records = {run.path / r["adapter"]: r for r in history.tasks if r["adapter"]}
    for directory, doc in manifests.items():
        record = records.get(directory)
        if record is None:
            continue
        info = {k: v for k, v in history.info.items() if k != "summary"}
        doc["lora_config"]["metadata"] = {
            **info,
            "method": history.method,
            "task_type": history.task_type,
            "metric": history.metric,
            "task": record["task"],
            "classes": record["classes"],
            "class_names": list(history.class_names),
            "metrics_before": record["before"],
            "metrics_after": record["after"],
            "summary": record["summary"],
            "train": record["train"],
        }
        with atomic_write(directory / ADAPTER_CONFIG_NAME) as f:
            f.write(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False))
    if config_text is not None and not run.config_path.is_file():
        run.write_config(config_text)
    history.info["converted_from"] = run.legacy_layout()
    run.write_history(history)


def _task(doc: Mapping[str, Any], source: Path) -> ForgetTask:
    try:
        return ForgetTask(
            index=int(doc["index"]),
            forget=tuple(int(c) for c in doc["forget"]),
            retain=tuple(int(c) for c in doc["retain"]),
            old=tuple(int(c) for c in doc.get("old", ())),
            missing=tuple(int(c) for c in doc.get("missing", ())),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{source}: a task record lacks a valid 'task' ({e})") from e


def _index(rec: Mapping[str, Any], source: Path) -> int:
    return _task(rec.get("task") or {}, source).index


def _relative(run: RunDirectory, directory: Path) -> str:
    return directory.relative_to(run.path).as_posix()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def _read_yaml(path: Path) -> Mapping[str, Any] | None:
    if not path.is_file():
        return None
    import yaml

    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc if isinstance(doc, Mapping) else None


def _get(doc: Mapping[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders to convert")
    parser.add_argument(
        "--keep-legacy", action="store_true", help="keep the earlier files after converting"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    status = 0
    for path in args.runs:
        try:
            history = convert_run(path, keep_legacy=args.keep_legacy)
        except (OSError, ValueError) as e:
            logger.error("cannot convert %s: %s", path, e)
            status = 2
            continue
        logger.info(
            "converted %s: %s %s run, %d task(s), forgot %s",
            path,
            history.task_type,
            history.method,
            len(history.tasks),
            history.forgotten_classes,
        )
    return status


if __name__ == "__main__":
    sys.exit(run_tool(main))
