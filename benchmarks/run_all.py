#!/usr/bin/env python
"""Run every benchmark (cost, scale, quality) with one command; write a summary.

Each benchmark prints its report and writes its JSON (and scale its PNGs) into
``--results-dir``; ``summary.json`` (``summary_cuda.json`` on a GPU) collects the machine,
each report, where its files are, how long it took, and the acceptance checks.

    python benchmarks/run_all.py                          # everything, full size
    python benchmarks/run_all.py --quick                  # fewer rounds, steps, iterations
    python benchmarks/run_all.py --device cuda --only cost scale   # on a GPU machine
    python benchmarks/run_all.py --smoke                  # seconds-long check
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import cost, quality, scale  # noqa: E402
from benchmarks.common import RESULTS_DIR, ROOT, describe_machine, write_json  # noqa: E402

__all__ = ["BENCHMARKS", "QUICK_ARGS", "main"]

logger = logging.getLogger("det_forget.benchmarks.run_all")

#: name -> module with ``main(argv) -> dict``, in run order.
BENCHMARKS = {"cost": cost, "scale": scale, "quality": quality}

#: Extra arguments of ``--quick``: the same measurements, fewer repetitions.
QUICK_ARGS = {
    "cost": ["--rounds", "2", "--steps", "3", "--latency-images", "10"],
    "scale": ["--image-sizes", "128", "192", "256", "--eval-images", "30"],
    "quality": ["--iters", "50"],
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the selected benchmarks in order; returns the summary document.

    Exits with status 1 (after writing the summary) when a benchmark failed.
    """
    from det_forget.classification.cli import setup_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (see QUICK_ARGS)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the scripts")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--work-dir", default=str(ROOT / "output" / "benchmarks"))
    args = parser.parse_args(argv)
    setup_logging(None)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    results = Path(args.results_dir)
    summary: dict[str, Any] = {
        "machine": describe_machine(args.device),
        "quick": args.quick,
        "smoke": args.smoke,
        "benchmarks": {},
    }
    failed = []
    for name in args.only:
        output = results / f"{name}{suffix}.json"
        bench_argv = [
            "--output", str(output),
            "--device", args.device,
            "--threads", str(args.threads),
            "--work-dir", args.work_dir,
            *(["--smoke"] if args.smoke else []),
            *(QUICK_ARGS[name] if args.quick and not args.smoke else []),
        ]  # fmt: skip
        logger.info("=== %s: python benchmarks/%s.py %s", name, name, " ".join(bench_argv))
        start = time.perf_counter()
        try:
            doc = BENCHMARKS[name].main(bench_argv)
        except (Exception, SystemExit) as e:  # run the others; report the failure at the end
            logger.exception("%s failed", name)
            failed.append(name)
            summary["benchmarks"][name] = {"error": repr(e), "argv": bench_argv}
            continue
        summary["benchmarks"][name] = {
            "output": str(output),
            "argv": bench_argv,
            "seconds": time.perf_counter() - start,
            "report": doc["report"],
        }
        if name == "cost":
            summary["checks"] = doc["checks"]
    write_json(results / f"summary{suffix}.json", summary)
    for name, entry in summary["benchmarks"].items():
        status = f"{entry['seconds']:.0f} s -> {entry['output']}" if "output" in entry else "FAILED"
        print(f"{name}: {status}")  # the run's closing summary
    if failed:
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
