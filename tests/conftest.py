"""Shared fixtures: small random-init models exported once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Two CPU threads is what CI has; pinning them keeps timings and memory predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def seed_shaped_small():
    """The seed's design (ConvNeXt tower, CLIP normalisation, the seed's local branch) at a small
    size: stands in for seagull-7b where a test needs the released key layout, not its size."""
    from seagull_edge.model.seagull import get_preset

    return get_preset("seed-atto")


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
def model_copy(tmp_path, model_dir) -> Path:
    """A copy of ``model_dir`` that a test may damage."""
    dst = tmp_path / "model"
    shutil.copytree(model_dir, dst)
    return dst


@pytest.fixture(scope="session")
def frame(model_dir, example_image):
    """A real photograph preprocessed for ``model_dir`` and three box ROIs of it:
    (image [1,3,S,S], masks [3,S,S], crops [3,3,C,C]), the engines' inputs."""
    from seagull_edge.runtime.config import ModelConfig
    from seagull_edge.runtime.image import load_image, preprocess_crops, preprocess_image, preprocess_masks

    cfg = ModelConfig.load(model_dir)
    rgb = load_image(example_image)
    h, w = rgb.shape[:2]
    boxes = [(0, 0, w // 2, h // 2), (w // 3, h // 4, w // 2, h // 2), (10, 10, 40, 30)]
    masks = np.zeros((len(boxes), h, w), bool)
    for m, (x, y, bw, bh) in zip(masks, boxes):
        m[y:y + bh, x:x + bw] = True
    return (preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std), preprocess_masks(masks, cfg.image_size),
            preprocess_crops(rgb, boxes, cfg.crop_size, cfg.mean, cfg.std))


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


def heavy_modules_imported(code: str, roots: tuple[str, ...] = ("torch", "torchvision", "timm")) -> list[str]:
    """Run ``code`` in a fresh interpreter and return the modules under ``roots`` it left loaded
    (the lean-runtime check: the runtime must not import torch)."""
    import subprocess
    import sys

    probe = f"{code}\nimport sys\nprint(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [m for m in out.stdout.strip().split(",") if m]


def build_cuda_emulation(folder, harness: str, include_dir, extra_flags=(), what: str = "the CUDA kernels"):
    """Compile a CUDA source's CPU emulation harness (``harness``: C++ that #includes the .cu from
    ``include_dir``) with g++ / clang++ into a shared library in ``folder`` and load it (ctypes).
    Skips the test when there is no C++ compiler, or one without ``_Float16`` (the fp16
    conversions' emulation). ``-ffp-contract=off``: no fused multiply-adds, as the kernels."""
    import ctypes
    import shutil
    import subprocess
    from pathlib import Path

    cxx = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip(f"no C++ compiler: the CPU emulation of {what} needs g++ or clang++")
    folder = Path(folder)
    (folder / "harness.cpp").write_text(harness)
    so = folder / "emu.so"
    cmd = [cxx, "-std=c++17", *extra_flags, "-shared", "-fPIC", "-ffp-contract=off", "-I", str(include_dir),
           str(folder / "harness.cpp"), "-o", str(so)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 and "_Float16" in r.stderr:
        pytest.skip("the C++ compiler has no _Float16 (needed to emulate the fp16 conversions)")
    assert r.returncode == 0, r.stderr
    return ctypes.CDLL(str(so))
