"""TextureMaps computes the same maps as its first version, on the CPU, in onnxruntime, in half
precision models and (where a GPU exists) on CUDA.

The first version (one op per formula, a 2-D 7x7 Gaussian; commit b3acdd3) is frozen below as
``_first_version``: the shipped model was trained and exported with it. The current one is
rewritten for speed (separable Gaussian, one matrix product for luma/rg/yb, ...; see the module
docstring). Tolerances, absolute, from the 203 held-out photographs at 384 px (the largest
differences seen between the shipped encoder.onnx and one exported with this code, in
onnxruntime; benchmarks/results/cpu_speed_2026-11-27/NOTES.md):

* luma, rg, yb and their squares: 2e-6 (5.4e-7 seen; the values are O(1), float32 steps ~6e-8);
* the five log energies: 1e-4 (4.4e-5 seen): ``log(e + 1e-5)`` turns a rounding step of a
  near-zero energy into ~1e-5, and the first version already differed this much between torch
  and onnxruntime (2.4e-5);
* the clip fractions: a cell may move by one pixel's share (1/16) where a pixel sits within a
  rounding error of the 0.97 / 0.03 thresholds; at most 0.1 % of cells may differ;
* the three MSCN channels: 5e-3 (1.6e-3 seen, on cell values of mostly 0.03-0.2).
  ``var = E[l^2] - mu^2`` cancels in flat areas, so any change in summation order shows there,
  and the first version is as far (1.5e-3) from a float64 computation of its own formulas; the
  test also checks that the new one is not further from float64 than the first was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seagull_edge.model.texture import CHANNELS, TextureMaps
from seagull_edge.runtime.image import load_image, preprocess_image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EDGE_NORM = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the edge presets'
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # a non-trivial one
MSCN = [CHANNELS.index(c) for c in ("mscn_sq", "mscn_abs", "mscn_pair_h")]
CLIP = [CHANNELS.index(c) for c in ("clip_high", "clip_low")]
LOG = [i for i, c in enumerate(CHANNELS) if c.startswith("log_")]
COLOUR = [i for i in range(len(CHANNELS)) if i not in MSCN + CLIP + LOG]
TOLERANCES = {"colour": (COLOUR, 2e-6), "log energy": (LOG, 1e-4), "MSCN": (MSCN, 5e-3)}
MAX_CLIP_CELLS = 1e-3


def _first_version(image: torch.Tensor, mean, std, stride: int = 4) -> torch.Tensor:
    """TextureMaps._maps as of commit b3acdd3 (frozen; do not edit), in the input's dtype."""
    dt = image.dtype
    mean = torch.tensor(mean, dtype=dt).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=dt).view(1, 3, 1, 1)
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    noise = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]) / 6.0
    gx = torch.tensor([[0.0, 0.0, 0.0], [0.0, -1.0, 1.0], [0.0, 0.0, 0.0]])
    high_pass = torch.stack([lap, gx, gx.T, noise])[:, None].to(dt)
    x = torch.arange(7, dtype=torch.float64) - 3
    g = torch.exp(-x ** 2 / (2 * (7 / 6) ** 2))
    g = g / g.sum()
    gauss = (g[:, None] * g[None, :]).float().to(dt)[None, None]
    luma_weights = torch.tensor([0.299, 0.587, 0.114]).to(dt).view(1, 3, 1, 1)

    def cells(t, s=stride):
        return F.avg_pool2d(t, s, s) if s > 1 else t

    def log_energy(e):
        return (torch.log(e + 1e-5) + 7.0) / 3.0

    rgb = (image * std + mean).clamp(0.0, 1.0)
    r, g_, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    luma = (rgb * luma_weights).sum(1, keepdim=True)
    rg = r - g_
    yb = 0.5 * (r + g_) - b
    clip_high = (rgb.amax(1, keepdim=True) > 0.97).to(dt)
    clip_low = (luma < 0.03).to(dt)
    hp = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), high_pass)
    energy = cells(hp * hp)
    coarse = F.avg_pool2d(luma, 2, 2)
    lap2 = F.conv2d(F.pad(coarse, (1, 1, 1, 1), mode="replicate"), high_pass[:1])
    energy2 = cells(lap2 * lap2, max(1, stride // 2))
    mu = F.conv2d(F.pad(luma, (3, 3, 3, 3), mode="replicate"), gauss)
    var = F.conv2d(F.pad(luma * luma, (3, 3, 3, 3), mode="replicate"), gauss) - mu * mu
    mscn = (luma - mu) / (torch.sqrt(var.clamp_min(0.0)) + 0.01)
    pair_h = F.pad(mscn[..., :, :-1] * mscn[..., :, 1:], (0, 1, 0, 0), mode="replicate")
    return torch.cat([
        cells(luma), cells(luma * luma), cells(rg), cells(yb), cells(rg * rg), cells(yb * yb),
        cells(clip_high), cells(clip_low), log_energy(energy[:, 0:1]), log_energy(energy2),
        log_energy(energy[:, 1:2]), log_energy(energy[:, 2:3]), log_energy(energy[:, 3:4]),
        cells(mscn * mscn), cells(mscn.abs()), cells(pair_h),
    ], dim=1)


def _synthetic(size: int) -> np.ndarray:
    """uint8 RGB with what the filters look at: flat areas (MSCN's cancellation), clipped white
    and crushed black (the clip thresholds), a smooth ramp, fine noise and hard edges."""
    rng = np.random.default_rng(0)
    img = np.zeros((size, size, 3), np.float64)
    img[:, :] = np.linspace(0, 255, size)[None, :, None]  # ramp
    q = size // 4
    img[:q, :q] = 255  # clipped
    img[:q, q:2 * q] = 3  # crushed
    img[q:2 * q, :q] = 128  # flat grey
    img[2 * q:3 * q, :] += rng.normal(0, 12, (q, size, 3))  # noise
    img[3 * q:, ::8] = 250  # hard stripes
    return np.clip(img, 0, 255).astype(np.uint8)


def _inputs(size: int, norm) -> torch.Tensor:
    frames = [load_image(EXAMPLES / "chelsea.jpg"), load_image(EXAMPLES / "coffee.jpg"), _synthetic(size)]
    return torch.from_numpy(np.concatenate([preprocess_image(f, size, *norm) for f in frames]))


def _check_close(new: torch.Tensor, old: torch.Tensor, what: str, rtol: float = 0.0) -> None:
    """The module's tolerances; ``rtol`` adds a relative one (for outputs rounded to half)."""
    new, old = new.double(), old.double()
    assert new.shape == old.shape, what
    assert torch.isfinite(new).all(), what
    excess = (new - old).abs() - rtol * old.abs()
    for group, (channels, tol) in TOLERANCES.items():
        worst = excess[:, channels].max().item()
        assert worst <= tol, f"{what}: {group} channels differ by {worst:.2e} (tolerance {tol:.0e})"
    clip = (new[:, CLIP] - old[:, CLIP]).abs()
    assert clip.max().item() <= 1 / 16 + 1e-6, f"{what}: a clip fraction moved by more than one pixel"
    assert (clip > 1e-6).double().mean().item() <= MAX_CLIP_CELLS, f"{what}: too many clip cells differ"


@pytest.mark.parametrize("norm", [EDGE_NORM, IMAGENET_NORM], ids=["edge", "imagenet"])
@pytest.mark.parametrize("size, stride", [(384, 4), (128, 4), (64, 2)])
def test_same_maps_as_the_first_version(norm, size, stride):
    image = _inputs(size, norm)
    with torch.no_grad():
        new = TextureMaps(*norm, stride=stride)(image)
        old = _first_version(image, *norm, stride=stride)
        exact = _first_version(image.double(), *norm, stride=stride)  # the same formulas in float64
    assert new.dtype == torch.float32 and new.shape == (3, len(CHANNELS), size // stride, size // stride)
    _check_close(new, old, f"{size}px")
    # Not further from the float64 result than the first version was (on MSCN, where they differ).
    err_new = (new[:, MSCN].double() - exact[:, MSCN]).abs().amax((0, 2, 3))
    err_old = (old[:, MSCN].double() - exact[:, MSCN]).abs().amax((0, 2, 3))
    assert (err_new <= err_old * 1.5 + 1e-6).all(), (err_new.tolist(), err_old.tolist())


def test_each_channel_means_what_it_says():
    # The rewrite reorders the channels internally: pin a few by their meaning, not by the old code.
    white = torch.ones(1, 3, 32, 32)  # normalised with mean 0.5, std 0.5: RGB 1.0
    black = -torch.ones(1, 3, 32, 32)
    red = torch.cat([torch.ones(1, 1, 32, 32), -torch.ones(1, 2, 32, 32)], 1)
    maps = TextureMaps(*EDGE_NORM, stride=4)
    w, k, r = (maps(x)[0, :, 2, 2] for x in (white, black, red))
    c = {name: i for i, name in enumerate(CHANNELS)}
    assert w[c["luma"]].item() == pytest.approx(1.0, abs=1e-6) and w[c["clip_high"]].item() == 1.0
    assert k[c["luma"]].item() == 0.0 and k[c["clip_low"]].item() == 1.0 and k[c["clip_high"]].item() == 0.0
    assert r[c["luma"]].item() == pytest.approx(0.299, abs=1e-6)
    assert r[c["rg"]].item() == pytest.approx(1.0) and r[c["yb"]].item() == pytest.approx(0.5)
    assert r[c["rg_sq"]].item() == pytest.approx(1.0) and r[c["yb_sq"]].item() == pytest.approx(0.25)
    for name in ("log_laplacian", "log_grad_x", "log_noise"):  # flat: the energy floor
        assert w[c[name]].item() == pytest.approx((np.log(1e-5) + 7) / 3, abs=1e-4)
    assert w[c["mscn_abs"]].item() == pytest.approx(0.0, abs=1e-4)  # (l - mu) / (0 + C), l = mu


def test_a_half_precision_model_keeps_float32_constants():
    # The torch backend on CUDA casts the whole model to float16; the filters still compute in
    # float32 with exact constants, so a half model gives the float32 maps (rounded to half).
    maps = TextureMaps(*IMAGENET_NORM, stride=4)
    half = TextureMaps(*IMAGENET_NORM, stride=4).half()
    assert all(b.dtype == torch.float32 for b in half.buffers())
    image = _inputs(128, IMAGENET_NORM).half()
    out = half(image)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, maps(image.float()).half(), rtol=0, atol=0)
    back = half.float()  # and a round trip through half leaves them exact
    assert all(torch.equal(a, b) for a, b in zip(back.buffers(), maps.buffers()))


def test_autocast_does_not_lower_the_precision():
    maps = TextureMaps(*EDGE_NORM, stride=4)
    image = _inputs(64, EDGE_NORM)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = maps(image)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, maps(image), rtol=0, atol=0)


def test_onnxruntime_runs_the_same_maps(tmp_path):
    # What the encoder and assessor graphs run on a CPU: the module exported alone.
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import warnings

    image = _inputs(384, EDGE_NORM)
    path = tmp_path / "texture.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(TextureMaps(*EDGE_NORM, stride=4).eval(), (image[:1],), str(path), input_names=["image"],
                          opset_version=17, dynamo=False, dynamic_axes={"image": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    new = torch.from_numpy(session.run(None, {"image": image.numpy()})[0])
    _check_close(new, _first_version(image, *EDGE_NORM), "onnxruntime")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_gives_the_cpu_maps(dtype):
    # cuDNN runs float32 convolutions in TF32 by default on Ampere and later (10-bit mantissa), which
    # is not float32 rounding; this test turns it off to compare the formulas, not the precision mode.
    image = _inputs(128, EDGE_NORM)
    cpu = TextureMaps(*EDGE_NORM, stride=4)(image.to(dtype).float())
    gpu_maps = TextureMaps(*EDGE_NORM, stride=4).cuda().to(dtype)
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        out = gpu_maps(image.to("cuda", dtype))
    finally:
        torch.backends.cudnn.allow_tf32 = previous
    assert out.dtype == dtype
    if dtype == torch.float16:  # both rounded to half at the end: allow two of half's steps
        _check_close(out.cpu(), cpu.half(), "cuda float16", rtol=2 * 2.0 ** -10)
    else:
        _check_close(out.cpu(), cpu, "cuda float32")


def test_onnxruntime_folds_the_towers_same_padding_into_its_convolutions(tmp_path):
    # Not TextureMaps itself, but the other half of the encoder's CPU time kept here: backbone.py
    # pads TF-'same' convolutions with an explicit zero so that onnxruntime's PadFusion folds the
    # Pad into the Conv (14-17 % of the edge-default encoder on a 2-core CPU). Without ``value=0.0``
    # the exporter writes an empty third input and the five Pads stay.
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    import warnings

    from seagull_edge.model.backbone import Tower

    tower = Tower("tf_efficientnet_lite0", 64, texture=EDGE_NORM).eval()
    image = torch.randn(1, 3, 64, 64)
    path, optimized = tmp_path / "tower.onnx", tmp_path / "optimized.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tower, (image,), str(path), input_names=["image"], opset_version=17, dynamo=False)
    written = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Pad" and "/texture/" not in n.name]
    assert len(written) == 5  # the stem and four stride-2 depthwise convolutions
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # PadFusion's level
    options.optimized_model_filepath = str(optimized)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    left = [n.name for n in onnx.load(str(optimized)).graph.node if n.op_type == "Pad" and "/texture/" not in n.name]
    assert left == []
    with torch.no_grad():
        expected = tower(image)
    for got, want in zip(session.run(None, {"image": image.numpy()}), expected):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)
