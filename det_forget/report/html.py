"""The reviewer's report of a forgetting run: one self-contained HTML file.

The person who approves a deletion request reads one document: what was asked (the run's
``request.json``), what was done to which model (weights and adapter hashes, method and
settings), and the evidence (AP before/after per class, where the forgotten objects went,
the audit's numbers when it ran, and before/after image pairs chosen to show successes and
failures). Images are embedded as base64 PNG and the styles are inline, so the file opens
in any browser without det_forget and without network access.

Everything is read through :class:`~det_forget.forgetting.run_dir.RunDirectory`; object
fate comes from the evaluator's report (``inference/task_XX/forget_report.json``,
section ``object_fate``) or, when it lacks one, is counted with
:func:`det_forget.evaluation.object_fate.object_fates` from the after predictions the
evaluator wrote (``coco_instances_results.json``).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..forgetting.request import REQUEST_FILE
from ..forgetting.run_dir import RunDirectory, RunHistory
from ..utils.io import atomic_write

__all__ = [
    "REPORT_FILE",
    "SECTIONS",
    "ImagePair",
    "RunEvidence",
    "collect_evidence",
    "render_report",
    "write_report",
]

logger = logging.getLogger(__name__)

REPORT_FILE = "review_report.html"

#: The report's sections, in order (each is an HTML element with this id).
SECTIONS = ("request", "models", "method", "ap", "fate", "audit", "examples")

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;
color:#1f2328;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;
margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d0d7de;padding:3px 8px;
text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
.pass{background:#dafbe1}.fail{background:#ffd8d8}.unknown{background:#eee}
code,.mono{font-family:ui-monospace,Menlo,monospace;font-size:.9em;word-break:break-all}
.pair{display:flex;gap:12px;margin:1em 0;flex-wrap:wrap}.pair figure{margin:0}
.pair img{width:320px;image-rendering:auto;border:1px solid #d0d7de}
figcaption{font-size:.85em;color:#57606a;max-width:320px}.note{color:#57606a;font-size:.9em}
.verdict{border-left:4px solid #8c959f;padding:.4em .8em;background:#f6f8fa}
"""


@dataclass
class ImagePair:
    """One image drawn twice: before and after forgetting (PNG bytes), and why it was chosen."""

    image: str
    kind: str  # "success" or "failure"
    caption: str
    before_png: bytes
    after_png: bytes


@dataclass
class RunEvidence:
    """What the report shows, gathered from a run folder (see :func:`collect_evidence`)."""

    run_dir: str
    history: RunHistory
    request: dict[str, Any] | None
    adapters: list[dict[str, Any]]
    merged_model: dict[str, Any] | None
    fate: list[dict[str, Any] | None]
    fate_source: list[str]
    audit: Any = None  # det_forget.audit.AuditReport
    audit_path: str | None = None
    pairs: list[ImagePair] = field(default_factory=list)
    pairs_note: str = ""
    created: str = field(
        default_factory=lambda: _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    )


# ------------------------------------------------------------------ gathering
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _sha256(path: Path) -> str | None:
    from ..forgetting.request import file_sha256

    return file_sha256(path) if path.is_file() else None


def _task_dir(run: RunDirectory, index: int) -> Path:
    return run.path / "inference" / f"task_{index:02d}"


def _fate_from_predictions(run: RunDirectory, history: RunHistory, index: int) -> dict | None:
    """Object fate of task ``index`` counted from the evaluator's after predictions."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from ..evaluation.object_fate import object_fates, summarize_fates

    task = history.tasks[index]
    results = _read_json(_task_dir(run, index) / "coco_instances_results.json")
    dataset = (task.get("details") or {}).get("dataset") or _test_dataset(run)
    if not results or not dataset or dataset not in DatasetCatalog.list():
        return None
    names = history.class_names
    forget = [names.index(c) for c in task["classes"]["forget"] if c in names]
    to_contiguous = getattr(MetadataCatalog.get(dataset), "thing_dataset_id_to_contiguous_id", {})
    by_image: dict[Any, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    fates = []
    for d in DatasetCatalog.get(dataset):
        gt_boxes, gt_classes = _gt(d)
        preds = by_image.get(d["image_id"], [])
        fates += object_fates(
            gt_boxes,
            gt_classes,
            [
                [
                    p["bbox"][0],
                    p["bbox"][1],
                    p["bbox"][0] + p["bbox"][2],
                    p["bbox"][1] + p["bbox"][3],
                ]
                for p in preds
            ],
            [to_contiguous.get(p["category_id"], p["category_id"]) for p in preds],
            [p["score"] for p in preds],
            forget,
            image_id=d["image_id"],
        )
    return summarize_fates(fates, forget, names=dict(enumerate(names))).as_dict()


def _gt(d: Mapping[str, Any]) -> tuple[list[list[float]], list[int]]:
    from detectron2.structures import BoxMode

    boxes, classes = [], []
    for a in d.get("annotations", ()):
        if a.get("iscrowd", 0):
            continue
        boxes.append(BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS))
        classes.append(int(a["category_id"]))
    return boxes, classes


def _test_dataset(run: RunDirectory) -> str | None:
    request = _read_json(run.path / REQUEST_FILE) or {}
    test = (request.get("config") or {}).get("DATASETS.TEST")
    if isinstance(test, list | tuple) and test:
        return str(test[0])
    return None


def collect_evidence(
    run_dir: str | os.PathLike,
    *,
    pairs: int = 6,
    compute_fate: bool = True,
) -> RunEvidence:
    """Read a run folder (and its audit, evaluator reports) and choose image pairs.

    Args:
        run_dir: the run's ``OUTPUT_DIR``.
        pairs: how many before/after image pairs at most (half successes, half failures;
            0: none, no model is loaded).
        compute_fate: count object fate from the after predictions when the evaluator's
            report has no ``object_fate`` section.

    Raises:
        FileNotFoundError / ValueError: not a run folder (see :meth:`RunDirectory.read_history`).
    """
    run = RunDirectory(run_dir)
    history = run.read_history()
    request = _read_json(run.path / REQUEST_FILE)
    adapters = []
    for i, rec in enumerate(history.tasks):
        if not rec.get("adapter"):
            continue
        folder = run.path / rec["adapter"]
        manifest = _read_json(folder / "adapter_config.json") or {}
        adapters.append(
            {
                "task": i,
                "folder": rec["adapter"],
                "weights_sha256": manifest.get("weights_sha256"),
                "layers": len(manifest.get("layers") or ()),
                "lora": manifest.get("lora_config") or {},
            }
        )
    merged = run.merged_model()
    merged_info = (
        None
        if merged is None
        else {"file": merged.name, "sha256": _sha256(merged), "bytes": merged.stat().st_size}
    )
    fate, fate_source = [], []
    for i in range(len(history.tasks)):
        report = _read_json(_task_dir(run, i) / "forget_report.json") or {}
        section = report.get("object_fate")
        source = "the evaluator's report (forget_report.json)"
        if section is None and compute_fate and history.task_type in ("rcnn", "detr"):
            try:
                section = _fate_from_predictions(run, history, i)
                source = "counted from the evaluator's after predictions"
            except Exception as e:  # the report still renders; the reason is shown
                logger.warning("object fate of task %d not counted: %s", i, e)
                section, source = None, f"not counted: {e}"
        fate.append(section)
        fate_source.append(source if section is not None else (source or "not available"))
    evidence = RunEvidence(
        run_dir=str(run.path),
        history=history,
        request=request,
        adapters=adapters,
        merged_model=merged_info,
        fate=fate,
        fate_source=fate_source,
    )
    audit_path = run.path / "audit.json"
    if audit_path.is_file():
        from ..audit import load_report

        try:
            evidence.audit = load_report(audit_path)
            evidence.audit_path = str(audit_path)
        except (OSError, ValueError) as e:
            evidence.audit_path = f"{audit_path} (unreadable: {e})"
    if pairs and history.task_type in ("rcnn", "detr"):
        try:
            evidence.pairs = choose_image_pairs(run, history, request or {}, pairs)
        except Exception as e:  # the rest of the report stands without pictures
            logger.warning("no image pairs: %s", e)
            evidence.pairs_note = f"No image pairs: {type(e).__name__}: {e}"
    elif pairs:
        evidence.pairs_note = (
            f"Image pairs are drawn for detectors; this run is {history.task_type}."
        )
    return evidence


# ------------------------------------------------------------------ image pairs
def choose_image_pairs(
    run: RunDirectory, history: RunHistory, request: Mapping[str, Any], count: int
) -> list[ImagePair]:
    """Before/after drawings of up to ``count`` test images: failures first (a forgotten
    object still detected or relabelled), then successes (every forgotten object gone).

    The before model is the run's start checkpoint (``request.json``'s weights), the after
    model the merged model with ``merged_config.yaml``.
    """
    from detectron2.data import DatasetCatalog

    from ..engine.inference import ImagePredictor, build_config, load_detector, read_image
    from ..evaluation.object_fate import object_fates

    merged = run.merged_model()
    if merged is None or not run.merged_config_path.is_file():
        raise FileNotFoundError(f"{run.path} has no merged model to draw the after images with")
    weights = request.get("weights")
    if not weights or not os.path.isfile(weights):
        raise FileNotFoundError(f"the start checkpoint {weights!r} of request.json is not here")
    cfg = build_config(run.merged_config_path)
    dataset = _test_dataset(run) or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if not dataset:
        raise ValueError("no test dataset to draw images from")
    after_model = load_detector(cfg, merged)
    before_model = load_detector(cfg, weights)
    names = history.class_names
    forget = [names.index(c) for c in history.forgotten_classes if c in names]
    predict_after = ImagePredictor(after_model.cfg, after_model.model)
    predict_before = ImagePredictor(before_model.cfg, before_model.model)
    failures, successes = [], []
    want = max(1, count // 2)
    for d in DatasetCatalog.get(dataset)[:200]:
        gt_boxes, gt_classes = _gt(d)
        if not any(c in forget for c in gt_classes):
            continue
        image = read_image(d["file_name"])
        after = predict_after(image)
        fates = object_fates(
            gt_boxes, gt_classes, after.boxes, list(after.classes), after.scores, forget
        )
        survived = [f for f in fates if f.fate != "gone"]
        bucket = failures if survived else successes
        if len(bucket) >= want:
            if len(failures) >= want and len(successes) >= want:
                break
            continue
        before = predict_before(image)
        if survived:
            f = survived[0]
            what = (
                f"{names[f.gt_class]} -> {names[f.label]} {f.score:.2f}"
                if f.fate == "relabelled"
                else f"{names[f.gt_class]} still detected {f.score:.2f}"
            )
            caption = f"failure: {what}"
        else:
            caption = f"success: {len(fates)} forgotten object(s) gone"
        bucket.append(
            ImagePair(
                image=os.path.basename(d["file_name"]),
                kind="failure" if survived else "success",
                caption=caption,
                before_png=_draw(image, before, names, forget),
                after_png=_draw(image, after, names, forget),
            )
        )
    return failures[:want] + successes[: count - min(len(failures), want)]


def _draw(image_rgb, dets, names: Sequence[str], forget: Sequence[int], thresh=0.5) -> bytes:
    """The image with its detections above ``thresh`` (forgotten classes in red), as PNG."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(image_rgb)
    scale = max(1, round(320 / max(img.size)))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    keep = dets.scores >= thresh
    for box, score, c in zip(dets.boxes[keep], dets.scores[keep], dets.classes[keep]):
        colour = (230, 30, 30) if int(c) in forget else (30, 120, 230)
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=2)
        label = f"{names[int(c)]} {float(score):.2f}"
        draw.rectangle([x0, y0 - 11, x0 + 6 * len(label) + 4, y0], fill=colour)
        draw.text((x0 + 2, y0 - 11), label, fill=(255, 255, 255))
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------ rendering
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def _kv_table(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td class='mono'>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _section(sid: str, title: str, body: str) -> str:
    return f"<section id='{sid}'><h2>{_e(title)}</h2>{body}</section>"


def _request_section(ev: RunEvidence) -> str:
    req = ev.request
    h = ev.history
    if req is None:
        return (
            "<p class='note'>This run has no request.json (written by runs that start from "
            "scratch); the classes below come from history.json.</p>"
            + _kv_table([("forgotten classes", ", ".join(h.forgotten_classes))])
        )
    tasks = req.get("tasks") or []
    rows = [
        ("classes to forget", "; ".join(f"task {i}: {', '.join(t)}" for i, t in enumerate(tasks))),
        ("missing classes", ", ".join(req.get("missing") or []) or "none"),
        ("method", req.get("method")),
        ("requested", h.info.get("started") or h.info.get("created") or _mtime(ev, REQUEST_FILE)),
        ("run by", h.info.get("user") or h.info.get("command") or "not recorded"),
        ("run folder", ev.run_dir),
    ]
    return _kv_table(rows)


def _mtime(ev: RunEvidence, name: str) -> str:
    path = Path(ev.run_dir) / name
    if not path.is_file():
        return "not recorded"
    stamp = _dt.datetime.fromtimestamp(path.stat().st_mtime).astimezone()
    return stamp.isoformat(timespec="seconds") + " (file time)"


def _models_section(ev: RunEvidence) -> str:
    req = ev.request or {}
    info = ev.history.info
    rows = [
        ("start checkpoint", req.get("weights") or info.get("base_weights")),
        ("start checkpoint sha256", req.get("weights_sha256") or info.get("base_sha256")),
    ]
    if ev.merged_model:
        rows += [
            ("merged model", ev.merged_model["file"]),
            ("merged model sha256", ev.merged_model["sha256"]),
        ]
    body = _kv_table(rows)
    if ev.adapters:
        body += (
            "<table><tr><th>task</th><th>adapter folder</th><th>layers</th>"
            "<th>weights sha256</th></tr>"
        )
        for a in ev.adapters:
            body += (
                f"<tr><td>{a['task']}</td><td class='mono'>{_e(a['folder'])}</td>"
                f"<td>{a['layers']}</td><td class='mono'>{_e(a['weights_sha256'])}</td></tr>"
            )
        body += "</table>"
    else:
        body += "<p class='note'>No adapter files (the method trains the full weights).</p>"
    return body


#: Config keys shown as the method's settings (the rest is in request.json).
_SETTING_PREFIXES = ("FORGET.", "SOLVER.BASE_LR", "SOLVER.IMS_PER_BATCH", "SOLVER.OPTIMIZER")


def _method_section(ev: RunEvidence) -> str:
    h = ev.history
    config = (ev.request or {}).get("config") or {}
    rows = [("method", h.method), ("task type", h.task_type), ("metric", h.metric)]
    rows += [
        (k, v)
        for k, v in sorted(config.items())
        if k.startswith(_SETTING_PREFIXES) and k not in ("FORGET.CLASSES", "FORGET.TASKS")
    ]
    for i, rec in enumerate(h.tasks):
        train = rec.get("train") or {}
        for key in ("steps", "iterations", "seconds", "stopped"):
            if key in train:
                rows.append((f"task {i} {key}", train[key]))
    return _kv_table(rows)


def _ap_section(ev: RunEvidence, gates: tuple[float, float] = (5.0, 5.0)) -> str:
    forget_max, drop_max = gates
    h = ev.history
    body = (
        f"<p class='note'>{_e(h.metric)} in %. A forgotten class passes at ≤ {forget_max:g} "
        f"after; a retained class passes when it lost ≤ {drop_max:g} points.</p>"
    )
    for i, rec in enumerate(h.tasks):
        before, after = rec.get("before") or {}, rec.get("after") or {}
        summary = rec.get("summary") or {}
        body += f"<h3>Task {i}</h3>"
        if summary:
            body += _kv_table(
                [
                    (f"{k} ({side})", _num(v))
                    for side in ("before", "after")
                    for k, v in (summary.get(side) or {}).items()
                    if v is not None
                ]
                + [("Drop", _num(summary.get("drop"))), ("H-Mean", _num(summary.get("h_mean")))]
            )
        body += (
            "<table><tr><th>class</th><th>group</th><th>before</th><th>after</th>"
            "<th>Δ</th><th>verdict</th></tr>"
        )
        for group in ("forget", "retain", "old", "missing"):
            for name in rec["classes"].get(group, []):
                b, a = before.get(name), after.get(name)
                if group == "forget":
                    verdict = "unknown" if a is None else ("pass" if a <= forget_max else "fail")
                elif group in ("retain", "old"):
                    verdict = (
                        "unknown"
                        if a is None or b is None
                        else ("pass" if b - a <= drop_max else "fail")
                    )
                else:
                    verdict = "unknown"
                delta = "" if a is None or b is None else f"{a - b:+.1f}"
                body += (
                    f"<tr class='{verdict}'><td>{_e(name)}</td><td>{group}</td>"
                    f"<td>{_num(b)}</td><td>{_num(a)}</td><td>{delta}</td><td>{verdict}</td></tr>"
                )
        body += "</table>"
    return body


def _fate_section(ev: RunEvidence) -> str:
    body = (
        "<p class='note'>Every ground-truth object of a forgotten class after forgetting: "
        "<b>detected</b> as its class, <b>relabelled</b> as another class, or <b>gone</b> "
        "(det_forget.evaluation.object_fate).</p>"
    )
    for i, (fate, source) in enumerate(zip(ev.fate, ev.fate_source)):
        body += f"<h3>Task {i}</h3>"
        if not fate:
            body += f"<p class='note'>Object fate not available ({_e(source)}).</p>"
            continue
        body += (
            f"<p class='note'>Score ≥ {fate.get('score_thresh')}, IoU ≥ "
            f"{fate.get('iou_thresh')}; {_e(source)}.</p>"
        )
        body += (
            "<table><tr><th>class</th><th>objects</th><th>detected</th><th>relabelled</th>"
            "<th>gone</th><th>relabelled as</th></tr>"
        )
        rows = list((fate.get("per_class") or {}).items()) + [("total", fate.get("total") or {})]
        for name, c in rows:
            relabel = ", ".join(f"{k} ×{v}" for k, v in (c.get("relabelled_as") or {}).items())
            body += (
                f"<tr><td>{_e(name)}</td><td>{c.get('objects', 0)}</td>"
                + "".join(
                    f"<td>{c.get(k, 0)} ({_num(c.get(k + '_pct'))}%)</td>"
                    for k in ("detected", "relabelled", "gone")
                )
                + f"<td>{_e(relabel) or '–'}</td></tr>"
            )
        body += "</table>"
    return body


def _audit_section(ev: RunEvidence) -> str:
    report = ev.audit
    if report is None:
        where = f" ({_e(ev.audit_path)})" if ev.audit_path else ""
        return (
            f"<p class='note'>No audit was run for this run{where}. "
            "<code>python tools/audit.py --task detection --config-file CONFIG --forgotten "
            "RUN_DIR</code> (or the app's Audit tab) writes audit.json.</p>"
        )
    # The headline states the measurement; the verdict paragraph says what it means.
    within = "within" if report.within_tolerance else "NOT within"
    body = (
        f"<p>Forgotten model's membership-inference AUC {report.auc('forgotten'):.3f} is "
        f"{within} {report.tolerance:g} of the {report.reference} reference "
        f"({report.reference_auc:.3f}).</p><p class='verdict'>{_e(report.verdict)}</p>"
    )
    body += (
        "<table><tr><th>model</th><th>MIA AUC (loss)</th><th>MIA AUC (confidence)</th>"
        "<th>probe bal. acc.</th><th>forget acc. %</th></tr>"
    )
    for role, m in report.models.items():
        loss, conf = m.membership.get("loss"), m.membership.get("confidence")
        body += (
            f"<tr><td>{_e(role)}</td><td>{_num(loss.auc if loss else None, 3)}</td>"
            f"<td>{_num(conf.auc if conf else None, 3)}</td>"
            f"<td>{_num(m.probe.balanced_accuracy if m.probe else None, 3)}</td>"
            f"<td>{_num(m.forget_accuracy)}</td></tr>"
        )
    body += "</table>"
    body += _kv_table([(k, v) for k, v in report.data.items()] + [("file", ev.audit_path)])
    return body


def _examples_section(ev: RunEvidence) -> str:
    if not ev.pairs:
        return f"<p class='note'>{_e(ev.pairs_note or 'No image pairs.')}</p>"
    body = (
        "<p class='note'>Detections at score ≥ 0.5; forgotten classes in red. Failures (a "
        "forgotten object still found, under its class or another) first, then successes.</p>"
    )
    for p in ev.pairs:
        b64b = base64.b64encode(p.before_png).decode("ascii")
        b64a = base64.b64encode(p.after_png).decode("ascii")
        body += (
            f"<div class='pair {p.kind}'><figure><img alt='before {_e(p.image)}' "
            f"src='data:image/png;base64,{b64b}'><figcaption>before · {_e(p.image)}"
            f"</figcaption></figure><figure><img alt='after {_e(p.image)}' "
            f"src='data:image/png;base64,{b64a}'><figcaption>after · {_e(p.caption)}"
            "</figcaption></figure></div>"
        )
    return body


def render_report(ev: RunEvidence) -> str:
    """The report's HTML (a complete document; nothing outside it is referenced)."""
    h = ev.history
    title = f"Forgetting report: {', '.join(h.forgotten_classes) or 'no task finished'}"
    parts = [
        _section("request", "1. What was asked", _request_section(ev)),
        _section("models", "2. Which model, which files", _models_section(ev)),
        _section("method", "3. Method and settings", _method_section(ev)),
        _section("ap", f"4. {h.metric} before and after, per class", _ap_section(ev)),
        _section("fate", "5. Where the forgotten objects went", _fate_section(ev)),
        _section("audit", "6. Audit", _audit_section(ev)),
        _section("examples", "7. Before / after examples", _examples_section(ev)),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1><p class='note'>Run {_e(ev.run_dir)} · report written "
        f"{_e(ev.created)} by det_forget</p>" + "".join(parts) + "</body></html>\n"
    )


def write_report(
    run_dir: str | os.PathLike, output: str | os.PathLike | None = None, *, pairs: int = 6
) -> Path:
    """Collect a run's evidence and write the report (atomically).

    Args:
        run_dir: the run's ``OUTPUT_DIR``.
        output: the HTML file (default: ``review_report.html`` in the run folder).
        pairs: before/after image pairs at most (0: none).

    Returns:
        The path written.
    """
    evidence = collect_evidence(run_dir, pairs=pairs)
    path = Path(output) if output is not None else Path(run_dir) / REPORT_FILE
    with atomic_write(path) as f:
        f.write(render_report(evidence))
    return path
