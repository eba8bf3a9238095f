"""One torch thread for tests that train tiny models (imported by name, like detection_fixtures)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: the test machines' cores are shared, and tiny models on
    several oversubscribed threads stall (seconds become minutes)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
