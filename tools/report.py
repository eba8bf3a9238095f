#!/usr/bin/env python
"""Write the reviewer's report of a forgetting run: one self-contained HTML file.

Example::

    python tools/report.py --run output/coco_forget
    python tools/report.py --run output/coco_forget --output /tmp/review.html --pairs 0

The report (``review_report.html`` in the run folder by default) holds what was asked
(``request.json``), the model and adapter hashes, the method and its settings, AP before
and after per class, where the forgotten objects went (object fate), the audit's numbers
when ``audit.json`` exists, and before/after image pairs (failures and successes; the
run's start checkpoint and merged model are run on a few test images). Images are
embedded, so the file opens in a browser on any machine. Bad arguments or a folder that
is not a run exit with status 2 and one ``error:`` line (``--debug``: with the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from det_forget.errors import run_tool  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the run folder (OUTPUT_DIR)")
    parser.add_argument("--output", help="the HTML file (default: RUN/review_report.html)")
    parser.add_argument(
        "--pairs", type=int, default=6, help="before/after image pairs at most (0: none)"
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks of user errors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    import det_forget  # noqa: F401  (registers the datasets the run used)
    from det_forget.report import write_report

    path = write_report(args.run, args.output, pairs=args.pairs)
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
