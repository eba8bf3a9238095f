#!/usr/bin/env python
"""Scale: how GS-LoRA's step time, memory and time to forget grow with the number of
forgotten classes, the model size and the image size; one PNG plot per curve.

* forgotten classes (1, 2, 5): real forgetting of the shipped tiny detector with the
  demo's settings (``configs/coco_forget.yaml``: batch 8 per side, 200-iteration
  schedule), AP_f measured on the first ``--eval-images`` val images every
  ``--eval-period`` iterations, stopped once AP_f <= ``--target-ap`` (time to forget:
  training time only, evaluations excluded); step time and peak memory of that run;
* image size: the same forgetting runs for the demo's two classes at 128, 192 and 256 px
  (the shipped detector, trained at 192 px, with its position embeddings interpolated);
* model size (tiny, ViT-S-size, ViT-B-size backbone in the same detector) and image size
  (tiny detector at 128-384 px): step time and peak memory of forgetting steps at batch
  ``--batch`` per side. No trained small/base detector exists (and none can be
  downloaded), so those run on random weights and have no time to forget.

Every point is measured in a fresh process (``benchmarks/measure.py``).

    python benchmarks/scale.py            # full run: benchmarks/results/scale.json + PNGs
    python benchmarks/scale.py --smoke    # seconds-long check of the script
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
    add_common_arguments,
    default_output,
    describe_machine,
    format_table,
    model_setup,
    run_worker,
    write_json,
)

__all__ = ["FORGET_SETS", "IMAGE_FORGET_CLASSES", "main", "plot_curves"]

logger = logging.getLogger("det_forget.benchmarks.scale")

#: Forget sets by size: the demo's pair, one of it, and the continual config's classes.
FORGET_SETS = {
    1: ["blue_triangle"],
    2: ["blue_triangle", "cyan_ring"],
    3: ["blue_triangle", "cyan_ring", "yellow_star"],
    4: ["blue_triangle", "cyan_ring", "yellow_star", "white_bar"],
    5: ["blue_triangle", "cyan_ring", "yellow_star", "white_bar", "red_circle"],
}


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


def _memory(result: dict[str, Any], device: str) -> dict[str, Any]:
    mem = result["memory"]
    out = {k: mem[k] for k in ("peak_mb", "step_peak_mb", "model_mb", "overhead_mb")}
    if device == "cuda":
        out.update({k: mem[k] for k in ("cuda_peak_mb", "cuda_overhead_mb")})
    return out


#: Classes forgotten in the time-to-forget runs over image sizes (the demo's pair).
IMAGE_FORGET_CLASSES = 2


def measure_forgetting(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Time to forget, step time and memory of real forgetting runs of the tiny detector.

    Returns:
        ``(by number of classes at the default size, by image size with the demo's two
        classes)``; a run in both lists is measured once.
    """
    cache: dict[tuple[int, int], dict[str, Any]] = {}

    def run(n: int, size: int | None) -> dict[str, Any]:
        setup = model_setup(
            "tiny",
            smoke=args.smoke,
            image_size=size,
            batch=2 if args.smoke else None,
            device=args.device,
        )
        key = (n, setup.image_size)
        if key in cache:
            return cache[key]
        logger.info(
            "forgetting %d classes at %d px (up to %d iterations)",
            n,
            setup.image_size,
            args.max_iter,
        )
        spec = _spec(
            setup,
            args,
            kind="forget_until",
            label=f"classes/{n}/{setup.image_size}",
            classes=FORGET_SETS[n],
            max_iter=args.max_iter,
            eval_period=args.eval_period,
            eval_images=args.eval_images,
            target_ap=args.target_ap,
        )
        if args.smoke:
            spec["opts"] += ["DATALOADER.NUM_WORKERS", 0]
        r = run_worker(spec)
        cache[key] = {
            "classes_count": n,
            "classes": r["classes"],
            "image_size": setup.image_size,
            "time_to_target_s": r["time_to_target_s"],
            "reached_iteration": r["reached_iteration"],
            "iterations_run": r["iterations_run"],
            "step_s": r["step_median_s"],
            "curve": r["curve"],
            "final_full_val_ap_f": r["final_full_val_ap_f"],
            "batch_per_side": r["batch_per_side"],
            **_memory(r, args.device),
        }
        return cache[key]

    by_classes = [run(n, None) for n in args.class_counts]
    by_image = [run(IMAGE_FORGET_CLASSES, s) for s in args.forget_image_sizes]
    return by_classes, by_image


def measure_steps(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Step time and memory over model sizes and over image sizes (shared points once)."""
    cache: dict[tuple[str, int, str], dict[str, Any]] = {}

    def point(model: str, size: int | None, method: str) -> dict[str, Any]:
        setup = model_setup(
            model, smoke=args.smoke, image_size=size, batch=args.batch, device=args.device
        )
        key = (model, setup.image_size, method)
        if key not in cache:
            logger.info("%s at %d px: %s steps", model, setup.image_size, method)
            r = run_worker(
                _spec(
                    setup,
                    args,
                    kind="train_steps",
                    label=f"{model}/{setup.image_size}/{method}",
                    method=method,
                    warmup=args.warmup,
                    steps=args.steps,
                )
            )
            cache[key] = {
                "model": model,
                "description": setup.description,
                "image_size": setup.image_size,
                "method": method,
                "step_s": r["step_median_s"],
                "step_times_s": r["step_times_s"],
                "total_params": r["total_params"],
                "trainable_params": r["trainable_params"],
                "trainable_share": r["trainable_share"],
                "batch_per_side": r["batch_per_side"],
                **_memory(r, args.device),
            }
        return cache[key]

    by_model = [point(m, None, meth) for meth in args.methods for m in args.model_sizes]
    by_image = [point("tiny", s, meth) for meth in args.methods for s in args.image_sizes]
    return by_model, by_image


def _time_to_forget_panel(ax, pts: list[dict], xkey: str, xlabel: str, target: float) -> None:
    reached = [(p[xkey], p["time_to_target_s"]) for p in pts if p["time_to_target_s"]]
    if reached:
        ax.plot(*zip(*reached), "o-")
    for p in pts:
        if not p["time_to_target_s"]:
            ax.annotate("not reached", (p[xkey], 0), ha="center", va="bottom", fontsize=8)
    ax.set(xlabel=xlabel, ylabel="training time (s)", title=f"time to AP_f <= {target:g}")
    ax.set_xticks([p[xkey] for p in pts])


def plot_curves(doc: dict[str, Any], stem: Path) -> dict[str, str]:
    """``<stem>_classes.png``, ``<stem>_model.png``, ``<stem>_image.png``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem_key = "cuda_peak_mb" if doc["setting"]["device"] == "cuda" else "peak_mb"
    mem_label = "CUDA peak (MiB)" if mem_key == "cuda_peak_mb" else "peak RSS (MiB)"
    target = doc["setting"]["target_ap"]
    title = doc["machine"]["summary"].split("; load")[0]
    paths = {}

    def save(fig, name: str) -> None:
        for ax in fig.axes:
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        fig.suptitle(title, fontsize=7)
        fig.tight_layout()
        path = f"{stem}_{name}.png"
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths[name] = path

    pts = doc["classes"]
    if pts:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
        x = [p["classes_count"] for p in pts]
        axes[0].plot(x, [p["step_s"] for p in pts], "o-")
        axes[0].set(xlabel="forgotten classes", ylabel="step time (s)", title="time per step")
        axes[1].plot(x, [p[mem_key] for p in pts], "o-", label="peak")
        axes[1].plot(x, [p["overhead_mb"] for p in pts], "s--", label="over model")
        axes[1].set(xlabel="forgotten classes", ylabel=mem_label, title="memory")
        axes[1].legend(fontsize=7)
        for ax in axes[:2]:
            ax.set_xticks(x)
        _time_to_forget_panel(axes[2], pts, "classes_count", "forgotten classes", target)
        save(fig, "classes")

    for name, rows, xkey, xlabel, forgetting in (
        ("model", doc["model_sizes"], "total_params", "parameters (millions)", []),
        ("image", doc["image_sizes"], "image_size", "image side (px)", doc["image_forgetting"]),
    ):
        if not rows:
            continue
        fig, axes = plt.subplots(1, 3 if forgetting else 2, figsize=(12 if forgetting else 9, 3.6))
        for method in dict.fromkeys(r["method"] for r in rows):
            sel = [r for r in rows if r["method"] == method]
            xs = [r[xkey] / 1e6 if xkey == "total_params" else r[xkey] for r in sel]
            axes[0].plot(xs, [r["step_s"] for r in sel], "o-", label=method)
            axes[1].plot(xs, [r[mem_key] for r in sel], "o-", label=f"{method} peak")
            axes[1].plot(xs, [r["overhead_mb"] for r in sel], "s--", label=f"{method} over model")
            if name == "model":
                for xv, r in zip(xs, sel):
                    axes[0].annotate(r["model"], (xv, r["step_s"]), fontsize=8)
        axes[0].set(xlabel=xlabel, ylabel="step time (s)", title="time per step")
        axes[1].set(xlabel=xlabel, ylabel=mem_label, title="memory")
        for ax in axes[:2]:
            if name == "model" and max(xs) > 5 * min(xs):
                ax.set_xscale("log")
            ax.legend(fontsize=7)
        if forgetting:
            _time_to_forget_panel(axes[2], forgetting, xkey, xlabel, target)
            axes[2].set_title(f"time to AP_f <= {target:g} ({IMAGE_FORGET_CLASSES} classes)")
        save(fig, name)
    return paths


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _forgetting_table(points: list[dict], first: str, mem_key: str, target: float) -> str:
    rows = []
    for p in points:
        ap_f = [c["ap_f"] for c in p["curve"]]
        rows.append(
            (
                p[first],
                _fmt(p["step_s"], ".3f"),
                _fmt(p[mem_key], ".0f"),
                _fmt(p["overhead_mb"], ".0f"),
                p["reached_iteration"] or f"> {p['iterations_run']}",
                _fmt(p["time_to_target_s"], ".1f"),
                f"{_fmt(ap_f[0], '.1f')} -> {_fmt(ap_f[-1], '.1f')}",
                _fmt(p["final_full_val_ap_f"], ".1f"),
            )
        )
    header = (
        first,
        "step s",
        "peak MB",
        "overhead MB",
        f"iters to AP_f<={target:g}",
        "seconds",
        "AP_f subset",
        "AP_f val at end",
    )
    return format_table(header, rows)


def format_report(doc: dict[str, Any]) -> str:
    """The tables: forgetting by classes and by image size, steps by model and image size."""
    mem_key = "cuda_peak_mb" if doc["setting"]["device"] == "cuda" else "peak_mb"
    st = doc["setting"]
    target = st["target_ap"]
    parts = [f"Machine: {doc['machine']['summary']}"]
    how = (
        f"tiny detector, batch {doc['classes'][0]['batch_per_side'] if doc['classes'] else '-'}"
        f" per side, up to {st['max_iter']} iterations; AP_f on {st['eval_images']} val images"
        f" every {st['eval_period']} iterations; 'AP_f val at end' only when the whole"
        " schedule ran"
    )
    if doc["classes"]:
        parts.append(f"\nTime to forget by number of classes ({how})")
        parts.append(_forgetting_table(doc["classes"], "classes_count", mem_key, target))
    if doc["image_forgetting"]:
        parts.append(f"\nTime to forget {IMAGE_FORGET_CLASSES} classes by image size")
        parts.append(_forgetting_table(doc["image_forgetting"], "image_size", mem_key, target))
    for title, rows, first in (
        ("model size (192 px; 64 smoke)", doc["model_sizes"], "model"),
        ("image size (tiny detector)", doc["image_sizes"], "image_size"),
    ):
        if not rows:
            continue
        parts.append(f"\nStep cost by {title}, batch {st['batch_per_side']} per side")
        header = (first, "method", "params M", "step s", "peak MB", "overhead MB")
        parts.append(
            format_table(
                header,
                [
                    (
                        r[first],
                        r["method"],
                        _fmt(r["total_params"] / 1e6, ".2f"),
                        _fmt(r["step_s"], ".3f"),
                        _fmt(r[mem_key], ".0f"),
                        _fmt(r["overhead_mb"], ".0f"),
                    )
                    for r in rows
                ],
            )
        )
    parts.append("\nPlots (next to the JSON): " + ", ".join(doc["plots"].values()))
    return "\n".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--class-counts", nargs="*", type=int, default=None, help="default 1 2 5")
    parser.add_argument("--model-sizes", nargs="*", choices=MODEL_NAMES, default=None)
    parser.add_argument("--image-sizes", nargs="*", type=int, default=None)
    parser.add_argument(
        "--forget-image-sizes",
        nargs="*",
        type=int,
        default=None,
        help="image sizes of time-to-forget runs (2 classes), default 128 192 256",
    )
    parser.add_argument("--methods", nargs="+", default=["gs_lora"], help="for the step curves")
    parser.add_argument("--batch", type=int, default=2, help="images per side (step curves)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="measured steps, default 4")
    parser.add_argument("--max-iter", type=int, default=None, help="forgetting schedule, 200")
    parser.add_argument("--eval-period", type=int, default=None, help="default 20")
    parser.add_argument("--eval-images", type=int, default=None, help="default 50")
    parser.add_argument("--target-ap", type=float, default=2.0)
    args = parser.parse_args(argv)
    smoke = args.smoke
    for key, full, small in (
        ("class_counts", [1, 2, 5], [1, 2]),
        ("model_sizes", ["tiny", "small", "base"], ["tiny", "small"]),
        ("image_sizes", [128, 192, 256, 384], [64, 96]),
        ("forget_image_sizes", [128, 192, 256], [64, 96]),
        ("steps", 4, 1),
        ("max_iter", 200, 2),
        ("eval_period", 20, 1),
        ("eval_images", 50, 4),
    ):
        if getattr(args, key) is None:
            setattr(args, key, small if smoke else full)
    bad = [n for n in args.class_counts if n not in FORGET_SETS]
    if bad:
        raise ValueError(f"--class-counts {bad}: valid counts are {sorted(FORGET_SETS)}")
    if "vitdet_b" in args.model_sizes:
        raise ValueError("--model-sizes: vitdet_b is another detector; use tiny, small, base")
    args.output = args.output or str(default_output("scale", args.device))
    args.smoke_root = str(Path(args.work_dir) / "smoke_shapes") if smoke else None
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure, plot, print the report, write the JSON; returns the JSON document."""
    from det_forget.classification.cli import setup_logging

    args = parse_args(argv)
    setup_logging(None)
    machine = describe_machine(args.device)
    start = time.perf_counter()
    classes, forget_by_image = measure_forgetting(args)
    by_model, by_image = measure_steps(args)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    doc: dict[str, Any] = {
        "benchmark": "scale",
        "machine": machine,
        "setting": {
            "device": args.device,
            "smoke": args.smoke,
            "batch_per_side": args.batch,
            "methods": list(args.methods),
            "warmup_steps": args.warmup,
            "measured_steps": args.steps,
            "max_iter": args.max_iter,
            "eval_period": args.eval_period,
            "eval_images": args.eval_images,
            "target_ap": args.target_ap,
            "threads": args.threads or machine["torch_threads"],
            "notes": [
                "forgotten-class points: configs/coco_forget.yaml (batch 8 per side) on the "
                "shipped tiny detector; time to target counts training steps only",
                "small and base: random weights (no trained detector of that size exists "
                "here), so no time to forget",
            ],
        },
        "classes": classes,
        "image_forgetting": forget_by_image,
        "model_sizes": by_model,
        "image_sizes": by_image,
    }
    out_dir = Path(args.output).parent
    plots = plot_curves(doc, Path(args.output).with_suffix(""))
    doc["plots"] = {k: os.path.relpath(v, out_dir) for k, v in plots.items()}  # next to the JSON
    doc["seconds"] = time.perf_counter() - start
    doc["report"] = format_report(doc)
    print(doc["report"])  # the report is this script's output
    write_json(args.output, doc)
    logger.info("wrote %s", args.output)
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
