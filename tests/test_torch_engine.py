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


def _frame_rois(rgb):
    h, w = rgb.shape[:2]
    blob = np.zeros((h, w), bool)
    yy, xx = np.mgrid[:h, :w]
    blob[(yy - h // 2) ** 2 + (xx - w // 3) ** 2 < (min(h, w) // 5) ** 2] = True
    boxes = [(0, 0, w, h), (10, 20, 1, 1), (w // 2, h // 3, w // 3, h // 4), (w - 9, h - 7, 9, 7)]
    return boxes, blob


@pytest.mark.parametrize("device,atol", [("cpu", 1e-5), pytest.param("cuda", 3e-3, marks=[pytest.mark.gpu, cuda])])
def test_assess_frame_equals_assess_on_host_inputs(model_dir, example_image, device, atol):
    """The frame path (uint8 frame uploaded, masks and crops made by torch on the device) gives
    the logits of encode + assess on numpy-preprocessed inputs. CPU float32 within 1e-5: ~1e-6
    is float32 rounding of the resize products, and scaling the crops by 1.01 moves them by
    ~1e-4. CUDA float16 (graphs, fused kernel) within 3e-3: an input that rounds to the
    neighbouring fp16 value, as graphs vs eager in the test above (2e-3)."""
    from seagull_edge.runtime import image as I

    rgb = I.load_image(example_image)
    boxes, blob = _frame_rois(rgb)
    engine = torch_engine.TorchEngine(model_dir, device=device, device_preprocessing=True)
    cfg = engine.config
    masks = np.zeros((len(boxes) + 1, *blob.shape), bool)
    for m, (x, y, w, h) in zip(masks, boxes):
        m[y:y + h, x:x + w] = True
    masks[-1] = blob
    all_boxes = boxes + [I.mask_bbox(blob)]
    got = engine.assess_frame(engine.encode_frame(rgb), [None] * len(boxes) + [blob], all_boxes)
    want = engine.assess(engine.encode(I.preprocess_image(rgb, cfg.image_size, cfg.mean, cfg.std)),
                         I.preprocess_masks(masks, cfg.image_size),
                         I.preprocess_crops(rgb, all_boxes, cfg.crop_size, cfg.mean, cfg.std))
    for name, ref in want.items():
        assert got[name].shape == ref.shape
        np.testing.assert_allclose(got[name], ref, atol=atol, rtol=0)


def test_assessor_hands_rectangles_as_none(model_dir, example_image, monkeypatch):
    """Through the Assessor: box ROIs reach the engine as None (nothing uploaded), a free-form
    mask as itself, and the answers equal the host path's."""
    from seagull_edge.runtime import Assessor
    from seagull_edge.runtime.image import load_image

    rgb = load_image(example_image)
    boxes, blob = _frame_rois(rgb)
    results = []
    for on_device in (False, True):
        engine = torch_engine.TorchEngine(model_dir, device="cpu", device_preprocessing=on_device)
        assert engine.device_preprocessing is on_device
        seen = []
        real = engine.assess_frame
        monkeypatch.setattr(engine, "assess_frame", lambda f, m, b: seen.append((m, b)) or real(f, m, b))
        results.append(Assessor(engine).assess(rgb, boxes=boxes, masks=[blob]).to_dict())
        if on_device:
            (masks, got_boxes), = seen
            assert masks[:4] == [None] * 4 and masks[4] is not None and (masks[4] == blob).all()
            assert list(got_boxes) == boxes + [tuple(results[-1]["rois"][4]["bbox"])]
        else:
            assert not seen
    host, dev = results
    for a, b in zip(host["rois"], dev["rois"]):
        assert a["bbox"] == b["bbox"] and a["area"] == b["area"]
        for task in ("quality", "importance"):
            assert a[task]["level"] == b[task]["level"]
            np.testing.assert_allclose(list(a[task]["probs"].values()), list(b[task]["probs"].values()), atol=1e-5)


def test_assess_frame_needs_encode_frame(model_dir, frame):
    """No frame, or features from encode() after the last encode_frame: refused, never the stale frame."""
    engine = torch_engine.TorchEngine(model_dir, device="cpu", device_preprocessing=True)
    with pytest.raises(RuntimeError, match="encode_frame first"):
        engine.assess_frame([], [None], [(0, 0, 2, 2)])
    image = frame[0]
    engine.encode_frame(np.zeros((8, 8, 3), np.uint8))
    feats = engine.encode(image)
    with pytest.raises(RuntimeError, match="encode_frame first"):
        engine.assess_frame(feats, [None], [(0, 0, 2, 2)])


def test_channels_last_tower_equals_default(model_dir, frame):
    """The NHWC tower (on by default on CUDA) gives the NCHW tower's features and logits (CPU
    float32, 1e-4: NHWC convolutions sum in another order, 3e-5 seen), and hands on contiguous
    NCHW maps, as the MFE and the kernel read them."""
    image, masks, crops = frame
    nchw = torch_engine.TorchEngine(model_dir, device="cpu")
    nhwc = torch_engine.TorchEngine(model_dir, device="cpu", channels_last=True)
    assert not nchw.channels_last and nhwc.channels_last
    fa, fb = nchw.encode(image), nhwc.encode(image)
    for a, b in zip(fa, fb):
        assert b.is_contiguous()
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)
    a, b = nchw.assess(fa, masks, crops), nhwc.assess(fb, masks, crops)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-4, rtol=0)


@pytest.mark.gpu
@cuda
def test_torch_cuda_compiled_equals_eager(model_dir, frame):
    """torch.compile (inductor) + channels_last + CUDA graphs vs the eager engine, both fp16:
    within 5e-3 on logits (fused fp16 element-wise kernels round in other places; 4e-6 seen
    in float32 on a CPU)."""
    image, masks, crops = frame
    eager = torch_engine.TorchEngine(model_dir, device="cuda", cuda_graphs=False, channels_last=False)
    compiled = torch_engine.TorchEngine(model_dir, device="cuda", compile=True)
    assert compiled.compiled and compiled.channels_last and compiled.cuda_graphs
    want = eager.assess(eager.encode(image), masks, crops)
    for _ in range(2):  # compile + capture, then replay
        got = compiled.assess(compiled.encode(image), masks, crops)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=5e-3, rtol=0)
