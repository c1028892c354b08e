"""The torch backend (model/engine.py) against onnxruntime, backend selection and the lean runtime.

CPU here: float32, stock ops, no graphs; it must equal onnxruntime on the same folder to float32
round-off (1e-4 on logits). GPU (``-m gpu``, run by benchmarks/gpu_check.sh): float16 with the
fused kernel and CUDA graphs, against onnxruntime within fp16 tolerance.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from seagull_edge.errors import ModelFileError, SeagullInputError
from seagull_edge.backends import torch as torch_engine
from seagull_edge.backends import load_engine
from seagull_edge.backends.onnxruntime import OnnxRuntimeEngine

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (torch.cuda.is_available() is False)")


@pytest.fixture(scope="module")
def reference(model_dir, frame):
    ort_engine = OnnxRuntimeEngine(model_dir)
    image, masks, crops = frame
    return ort_engine.assess(ort_engine.encode(image), masks, crops)


def test_torch_backend_on_cpu_equals_onnxruntime(model_dir, frame, reference):
    engine = load_engine(model_dir, "torch")
    assert engine.backend == "torch" and engine.device.type == "cpu" and engine.dtype == torch.float32
    image, masks, crops = frame
    feats = engine.encode(image)
    got = engine.assess(feats, masks, crops)
    for name, want in reference.items():
        assert got[name].dtype == np.float32 and got[name].shape == want.shape
        np.testing.assert_allclose(got[name], want, atol=1e-4, rtol=0)
    # numpy features (e.g. from another backend) are accepted too
    host = [f.numpy() for f in feats]
    np.testing.assert_allclose(engine.assess(host, masks, crops)["quality_logits"], reference["quality_logits"],
                               atol=1e-4, rtol=0)


def test_q_buckets():
    assert [torch_engine._bucket(q) for q in (1, 2, 3, 5, 8, 9, 33, 64)] == [1, 2, 4, 8, 8, 16, 64, 64]
    assert torch_engine._bucket(65) is None  # beyond the largest bucket: eager


def test_folder_without_weights_or_with_foreign_weights_is_refused(model_dir, tmp_path):
    from seagull_edge.model import build_model
    from seagull_edge.model.checkpoint import save_checkpoint

    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(ModelFileError, match="no weights.safetensors"):
        load_engine(folder, "torch")
    save_checkpoint(build_model("edge-default"), folder / "weights.safetensors")
    with pytest.raises(ModelFileError, match="S=384, C=128; model.json says S=256, C=96"):
        load_engine(folder, "torch")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_torch_cuda_without_a_gpu_is_a_clear_error(model_dir):
    with pytest.raises(SeagullInputError, match="sees no CUDA GPU"):
        torch_engine.TorchEngine(model_dir, device="cuda")


def test_runtime_modules_import_without_torch():
    """Every module of seagull_edge.runtime imports with torch made unimportable."""
    code = (
        "import sys, pkgutil, importlib\n"
        "sys.modules['torch'] = None\n"
        "import seagull_edge.runtime as r\n"
        "names = [m.name for m in pkgutil.iter_modules(r.__path__)]\n"
        "for n in names: importlib.import_module('seagull_edge.runtime.' + n)\n"
        "print(len(names), sorted(m for m in sys.modules if m.split('.')[0] in ('timm', 'torchvision')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, bad = out.stdout.split(" ", 1)
    assert int(count) >= 10 and bad.strip() == "[]"


@pytest.mark.gpu
@cuda
def test_torch_cuda_fp16_graphs_match_onnxruntime(model_dir, frame, reference):
    """fp16 tower + fused kernel + CUDA graphs vs float32 onnxruntime; graphs vs eager exactly."""
    image, masks, crops = frame
    graphs = torch_engine.TorchEngine(model_dir, device="cuda")
    eager = torch_engine.TorchEngine(model_dir, device="cuda", cuda_graphs=False)
    assert graphs.dtype == torch.float16 and graphs.cuda_graphs and graphs.model.roi_pool == "fused"
    for _ in range(2):  # the second run replays the captured graphs
        got = graphs.assess(graphs.encode(image), masks, crops)
    ref_eager = eager.assess(eager.encode(image), masks, crops)
    assert sorted(graphs._assess_graphs) == [4]  # Q=3 padded to the bucket of 4
    for name, want in reference.items():
        scale = float(np.abs(want).max())
        assert float(np.abs(got[name] - want).max()) <= 5e-2 * max(scale, 1.0), name
        np.testing.assert_allclose(got[name], ref_eager[name], atol=2e-3, rtol=0)
    one = graphs.assess(graphs.encode(image), masks[:1], crops[:1])
    np.testing.assert_allclose(one["quality_logits"], got["quality_logits"][:1], atol=5e-3, rtol=0)
