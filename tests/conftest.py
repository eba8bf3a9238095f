"""Shared fixtures: tiny models of each family the LoRA core must work on."""

from __future__ import annotations

import os
import sys

import pytest

# Test helper modules (detection_fixtures, vit_fixtures) import by name under
# --import-mode=importlib; never import from ``conftest`` itself (see vit_fixtures.py).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vit_fixtures import MODEL_FACTORIES  # noqa: E402


@pytest.fixture(params=sorted(MODEL_FACTORIES))
def vit_family(request):
    """``(name, build_fn, forward_fn)`` for each ViT implementation we support."""
    build, forward = MODEL_FACTORIES[request.param]
    return request.param, build, forward


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """Register the tiny shapes dataset (generated lazily on first use)."""
    from detection_fixtures import register_tiny_shapes

    register_tiny_shapes(tmp_path_factory.mktemp("tiny_shapes"))
