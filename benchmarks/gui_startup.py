"""Launch of the desktop app: time to a painted window, and how long the event loop stalls.

Starts ``python -m gui --demo`` in a fresh process ``--rounds`` times, with
``DET_FORGET_GUI_PROBE`` set (:mod:`gui.startup_probe`): the app records, in seconds since
this script started the process, its first paint, the end of the torch/detectron2 import,
the main window shown, the model loaded, the images listed and the first image's
detections drawn, and the longest the event loop went without answering in each phase
(a 20 ms heartbeat timer); then it quits. Prints a table and writes
``benchmarks/results/gui_startup.json``.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_startup.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    ROOT,
    describe_machine,
    format_table,
    median,
    write_json,
)

EVENTS = (
    "first_paint",
    "imported",
    "main_window_shown",
    "model_loaded",
    "images_listed",
    "first_detections_drawn",
)


def launch_once(timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        probe = os.path.join(tmp, "probe.json")
        env = {
            **os.environ,
            "DET_FORGET_GUI_PROBE": probe,
            "DET_FORGET_GUI_LAUNCH_T": repr(time.time()),
        }
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        proc = subprocess.run(
            [sys.executable, "-m", "gui", "--demo", "--output", os.path.join(tmp, "runs")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if not os.path.isfile(probe):
            raise RuntimeError(f"the app wrote no probe (exit {proc.returncode}):\n{proc.stderr}")
        with open(probe) as f:
            return json.load(f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--output", default=str(RESULTS_DIR / "gui_startup.json"))
    args = parser.parse_args(argv)
    machine_start = describe_machine("cpu")
    rounds = [launch_once(args.timeout) for _ in range(args.rounds)]
    rows = []
    for event in EVENTS:
        values = [r["seconds_since_launch"].get(event) for r in rounds]
        rows.append([event, *(f"{v:.2f}" if v is not None else "-" for v in values)])
    phases = sorted({p for r in rounds for p in r["max_event_loop_gap_s"]})
    for phase in phases:
        values = [r["max_event_loop_gap_s"].get(phase) for r in rounds]
        rows.append(
            [
                f"max event-loop gap: {phase}",
                *(f"{v:.2f}" if v is not None else "-" for v in values),
            ]
        )
    header = ["seconds since launch", *(f"round {i + 1}" for i in range(len(rounds)))]
    print(format_table(header, rows))
    paint = [r["seconds_since_launch"].get("first_paint") for r in rounds]
    doc = {
        "benchmark": "gui_startup",
        "command": "python -m gui --demo (QT_QPA_PLATFORM="
        + os.environ.get("QT_QPA_PLATFORM", "offscreen")
        + ")",
        "machine": machine_start,
        "machine_end": describe_machine("cpu"),
        "rounds": rounds,
        "median_first_paint_s": median([p for p in paint if p is not None]),
    }
    print("wrote", write_json(args.output, doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
