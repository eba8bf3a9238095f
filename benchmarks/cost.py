#!/usr/bin/env python
"""Cost of forgetting: step time and peak memory of GS-LoRA next to full-weight methods,
the trainable share, and inference latency of the base, adapter and merged detectors.

For each model (the embedded tiny detector, a ViT-B-size backbone in the same detector,
ViTDet-B) and the same batch (``--batch`` images per side, forget + retain), every method
runs ``--warmup`` + ``--steps`` real forgetting steps (``benchmarks/measure.py``) in a fresh
process; ``--rounds`` rounds interleave the methods in a rotating order, so the ratios
come from measurements taken side by side. Step time: median over all measured steps;
memory: median over rounds of each process's peak. Latency: base, adapters active and
merged checkpoint, image by image in a rotating order.

    python benchmarks/cost.py                  # full run: writes benchmarks/results/cost.json
    python benchmarks/cost.py --device cuda    # on a GPU: benchmarks/results/cost_cuda.json
    python benchmarks/cost.py --smoke          # seconds-long check of the script
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    MODEL_NAMES,
    ROOT,
    add_common_arguments,
    default_output,
    describe_machine,
    format_table,
    median,
    model_setup,
    ratio,
    run_worker,
    write_json,
)

__all__ = ["LIMITS", "METHOD_LABELS", "acceptance_checks", "main", "summarize_training"]

logger = logging.getLogger("det_forget.benchmarks.cost")

#: Row labels of the methods this benchmark knows (any FORGET.METHOD but ewc runs).
METHOD_LABELS = {
    "gs_lora": "GS-LoRA",
    "gs_lora_pp": "GS-LoRA++",
    "no_retain": "Low-rank, no retain",
    "finetune": "Full fine-tuning (retain data)",
    "neg_grad": "Negative gradient + retain",
    "bounded_retain_l1": "Full weights, GS-LoRA's loss + L1",
    "bounded_ft": "Full fine-tuning, GS-LoRA's loss",
    "random_labels": "Random labels",
    "neg_grad_l1": "Neg. gradient + L1, no retain",
    "l2": "L2",
    "retrain": "Retrain (retain data)",
}

#: Acceptance limits (issue 7): GS-LoRA / full fine-tuning, and variant / base latency.
LIMITS = {"step_time": 0.75, "peak_memory": 0.6, "merged_latency": 1.03, "adapters_latency": 1.10}

#: Models whose peak-memory ratio is held to ``LIMITS["peak_memory"]`` (ViT-B-size backbones).
MEMORY_CHECKED_MODELS = ("base", "vitdet_b")

_MEMORY_KEYS = ("train_peak_mb", "peak_mb", "step_peak_mb", "model_mb", "overhead_mb")
_CUDA_KEYS = ("cuda_peak_mb", "cuda_step_peak_mb", "cuda_model_mb", "cuda_overhead_mb")


def summarize_training(method: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the ``train_steps`` results of one method (one per round)."""
    steps = [t for r in runs for t in r["step_times_s"]]
    row: dict[str, Any] = {
        "method": method,
        "label": METHOD_LABELS.get(method, method),
        "step_s": median(steps),
        "step_s_per_round": [r["step_median_s"] for r in runs],
        "step_times_s": steps,
        "trainable_params": runs[0]["trainable_params"],
        "total_params": runs[0]["total_params"],
        "trainable_share": runs[0]["trainable_share"],
        "loss_terms": runs[0]["loss_terms"],
        "sides": runs[0]["sides"],
    }
    for key in _MEMORY_KEYS + _CUDA_KEYS:
        values = [r["memory"][key] for r in runs if key in r["memory"]]
        if values:
            row[key] = median(values)
            row[f"{key}_per_round"] = values
    return row


def _add_ratios(rows: list[dict[str, Any]], reference: str = "gs_lora") -> None:
    """``row["gs_lora_ratio"]``: GS-LoRA's number / the row's (below 1: GS-LoRA is cheaper)."""
    ref = next((r for r in rows if r["method"] == reference), None)
    for row in rows:
        row["gs_lora_ratio"] = {
            key: ratio(ref.get(key), row.get(key)) if ref else None
            for key in (
                "step_s",
                "train_peak_mb",
                "peak_mb",
                "overhead_mb",
                "cuda_peak_mb",
                "cuda_overhead_mb",
            )
            if key in row
        }


def _memory_key(device: str) -> str:
    """The memory the acceptance compares: CUDA's peak allocation on a GPU; on CPU the
    same quantity, peak RSS minus the process's runtime before the model was built."""
    return "cuda_peak_mb" if device == "cuda" else "train_peak_mb"


def acceptance_checks(
    models: dict[str, dict[str, Any]], device: str, *, judge: bool = True
) -> list[dict[str, Any]]:
    """Issue 7's acceptance numbers, each with its limit and whether it holds.

    Step time and peak memory: GS-LoRA / each full-weight method that was measured
    (``bounded_ft``: GS-LoRA's own loss on the same forget + retain batches with every
    weight trained, the like-for-like "full fine-tuning"; ``finetune``: retain data only;
    ``neg_grad``: the same batches with the negative-gradient loss). Memory is held to its
    limit on ViT-B-size backbones only; the tiny model's ratio is reported without
    one. Latency: adapters and merged over base, on every model. With ``judge=False``
    (smoke sizes) every ``pass`` is None.
    """
    checks = []
    mem_key = _memory_key(device)
    for name, m in models.items():
        rows = {r["method"]: r for r in m["training"]}
        for ref in ("bounded_ft", "finetune", "neg_grad"):
            if "gs_lora" not in rows or ref not in rows:
                continue
            r = rows[ref]["gs_lora_ratio"]
            checks.append(
                _check(name, "step time GS-LoRA / " + ref, r.get("step_s"), LIMITS["step_time"])
            )
            limit = LIMITS["peak_memory"] if name in MEMORY_CHECKED_MODELS else None
            checks.append(_check(name, f"peak memory GS-LoRA / {ref}", r.get(mem_key), limit))
        lat = m.get("latency")
        if lat:
            for variant in ("merged", "adapters"):
                checks.append(
                    _check(
                        name,
                        f"latency {variant} / base",
                        lat["ratio_to_base"][variant],
                        LIMITS[f"{variant}_latency"],
                    )
                )
    if not judge:
        for c in checks:
            c["pass"] = None
    return checks


def _check(model: str, what: str, value: float | None, limit: float | None) -> dict[str, Any]:
    ok = None if value is None or limit is None else value <= limit
    return {"model": model, "what": what, "value": value, "limit": limit, "pass": ok}


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def format_report(doc: dict[str, Any]) -> str:
    """The printed report: one training table and one latency line per model, the checks."""
    mem_key = _memory_key(doc["setting"]["device"])
    mem_name = "CUDA peak MB" if mem_key == "cuda_peak_mb" else "train MB"
    parts = [f"Machine: {doc['machine']['summary']}"]
    for name, m in doc["models"].items():
        parts.append(f"\n{name}: {m['description']}; {m['image_size']} px, batch {m['batch']}/side")
        header = (
            "Method",
            "step s",
            "ratio",
            mem_name,
            "ratio",
            "peak RSS MB",
            "ratio",
            "trainable %",
        )
        rows = [
            (
                r["label"],
                _fmt(r["step_s"], ".3f"),
                _fmt(r["gs_lora_ratio"].get("step_s")),
                _fmt(r.get(mem_key), ".0f"),
                _fmt(r["gs_lora_ratio"].get(mem_key)),
                _fmt(r.get("peak_mb"), ".0f"),
                _fmt(r["gs_lora_ratio"].get("peak_mb")),
                _fmt(r["trainable_share"]),
            )
            for r in m["training"]
        ]
        parts.append(format_table(header, rows))
        parts.append(
            "(ratio: GS-LoRA's number / the row's; below 1, GS-LoRA is cheaper. train MB: "
            "peak RSS minus the runtime before the model was built)"
        )
        lat = m.get("latency")
        if lat:
            ms, rel = lat["median_ms"], lat["ratio_to_base"]
            parts.append(
                f"inference (median of {lat['images']} images x {lat['reps']}): base "
                f"{ms['base']:.1f} ms, adapters {ms['adapters']:.1f} ms "
                f"({rel['adapters']:.3f} x base), merged {ms['merged']:.1f} ms "
                f"({rel['merged']:.3f} x base)"
            )
    header = ("Model", "Check", "value", "limit", "pass")
    rows = [
        (
            c["model"],
            c["what"],
            _fmt(c["value"], ".3f"),
            _fmt(c["limit"]),
            {True: "yes", False: "NO", None: "-"}[c["pass"]],
        )
        for c in doc["checks"]
    ]
    title = "Acceptance (issue 7)"
    if doc["setting"]["smoke"]:
        title += ": not judged at --smoke sizes"
    parts += ["\n" + title, format_table(header, rows)]
    return "\n".join(parts)


def _spec(setup, args, **extra) -> dict[str, Any]:
    return {
        "config_file": setup.config_file,
        "opts": list(setup.opts),
        "weights": setup.weights,
        "device": args.device,
        "threads": args.threads,
        "smoke_root": args.smoke_root,
        "seed": 0,
        **extra,
    }


def measure_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Training rows (methods interleaved over rounds) and latency of one model."""
    setup = model_setup(
        name, smoke=args.smoke, image_size=args.image_size, batch=args.batch, device=args.device
    )
    methods = list(args.methods)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for rnd in range(args.rounds):
        shift = rnd % len(methods)
        for method in methods[shift:] + methods[:shift]:
            logger.info("%s: %s, round %d/%d", name, method, rnd + 1, args.rounds)
            spec = _spec(
                setup,
                args,
                kind="train_steps",
                label=f"{name}/{method}/round{rnd}",
                method=method,
                warmup=args.warmup,
                steps=args.steps,
            )
            runs[method].append(run_worker(spec))
    rows = [summarize_training(m, runs[m]) for m in methods]
    _add_ratios(rows)
    out: dict[str, Any] = {
        "description": setup.description,
        "config_file": os.path.relpath(setup.config_file, ROOT),
        "opts": list(setup.opts),
        "weights": setup.weights or None,
        "image_size": setup.image_size,
        "batch": args.batch,
        "training": rows,
    }
    if args.latency_images > 0:
        logger.info("%s: inference latency", name)
        lat = run_worker(
            _spec(
                setup,
                args,
                kind="latency",
                label=f"{name}/latency",
                images=args.latency_images,
                reps=args.latency_reps,
                warmup=2,
            )
        )
        ms = lat["median_ms"]
        lat["ratio_to_base"] = {k: ratio(ms[k], ms["base"]) for k in ("adapters", "merged")}
        out["latency"] = lat
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument(
        "--models", nargs="+", choices=MODEL_NAMES, default=["tiny", "base", "vitdet_b"]
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["gs_lora", "bounded_ft", "finetune", "neg_grad"],
        help="FORGET.METHOD values (gs_lora first: the ratios are relative to it)",
    )
    parser.add_argument("--batch", type=int, default=2, help="images per side (forget, retain)")
    parser.add_argument("--image-size", type=int, default=None, help="default 192 (64 smoke)")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (1 smoke)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured steps per process")
    parser.add_argument("--steps", type=int, default=None, help="measured steps, default 4")
    parser.add_argument("--latency-images", type=int, default=None, help="default 20 (2 smoke)")
    parser.add_argument("--latency-reps", type=int, default=None, help="default 3 (1 smoke)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    for key, full, small in (
        ("rounds", 3, 1),
        ("steps", 4, 1),
        ("latency_images", 20, 2),
        ("latency_reps", 3, 1),
    ):
        if getattr(args, key) is None:
            setattr(args, key, small if smoke else full)
    if "gs_lora" not in args.methods:
        raise ValueError(f"--methods must include gs_lora (the reference), got {args.methods}")
    if "ewc" in args.methods:
        raise ValueError("--methods: ewc is not measured (its Fisher estimate is a separate cost)")
    args.output = args.output or str(default_output("cost", args.device))
    args.smoke_root = str(Path(args.work_dir) / "smoke_shapes") if smoke else None
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure, print the report, write the JSON; returns the JSON document."""
    from det_forget.classification.cli import setup_logging

    args = parse_args(argv)
    setup_logging(None)
    machine = describe_machine(args.device)
    start = time.perf_counter()
    models = {name: measure_model(name, args) for name in args.models}
    doc: dict[str, Any] = {
        "benchmark": "cost",
        "machine": machine,
        "setting": {
            "device": args.device,
            "smoke": args.smoke,
            "methods": list(args.methods),
            "batch_per_side": args.batch,
            "rounds": args.rounds,
            "warmup_steps": args.warmup,
            "measured_steps": args.steps,
            "threads": args.threads or machine["torch_threads"],
            "memory": "process RSS (CPU) / torch.cuda.max_memory_allocated (CUDA), MiB",
        },
        "models": models,
    }
    doc["checks"] = acceptance_checks(models, args.device, judge=not args.smoke)
    doc["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["seconds"] = time.perf_counter() - start
    doc["report"] = format_report(doc)
    print(doc["report"])  # the report is this script's output
    write_json(args.output, doc)
    logger.info("wrote %s", args.output)
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
