"""Documents made from a finished run: the reviewer's self-contained HTML report."""

from .html import (
    REPORT_FILE,
    SECTIONS,
    ImagePair,
    RunEvidence,
    collect_evidence,
    render_report,
    write_report,
)

__all__ = [
    "REPORT_FILE",
    "SECTIONS",
    "ImagePair",
    "RunEvidence",
    "collect_evidence",
    "render_report",
    "write_report",
]
