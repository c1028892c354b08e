"""Shared fixtures: small random-init models exported once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Two CPU threads is what CI has; pinning them keeps timings and memory predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def example_image() -> Path:
    return EXAMPLES / "chelsea.jpg"


@pytest.fixture(scope="session")
def edge_fast_model():
    import torch
    from seagull_edge.model import build_model

    torch.manual_seed(0)
    return build_model("edge-fast")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, edge_fast_model) -> Path:
    """A model folder (edge-fast, random weights) exported with the stock-op ROI pooling."""
    from seagull_edge.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("model_edge_fast")
    export_onnx(edge_fast_model, out)
    return out


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def kcache(tmp_path_factory):
    """A fresh on-disk kernel cache (``$SEAGULL_EDGE_CACHE``) for one test module."""
    d = tmp_path_factory.mktemp("kernel_cache")
    old = os.environ.get("SEAGULL_EDGE_CACHE")
    os.environ["SEAGULL_EDGE_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("SEAGULL_EDGE_CACHE", None)
    else:
        os.environ["SEAGULL_EDGE_CACHE"] = old
