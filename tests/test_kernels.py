"""The fused masked ROI pooling kernel (seagull_edge/kernels): references, NVRTC build, launcher.

Runs everywhere:
* the float64 numpy reference vs stock torch ops vs ``mask_pool`` (all mask cases, every level
  size, masks at 512, 384 and 333x517, fp32 and fp16 features) and its bilinear resize vs
  ``F.interpolate``;
* NVRTC compilation (no GPU needed): PTX for sm_75 / sm_87 / sm_90 with every entry point,
  ptxas register / spill report, compile errors, the on-disk cache;
* the kernel's CUDA C++ itself, compiled with g++ against a small CUDA emulation (real threads,
  a real barrier for __syncthreads, real atomics) and launched with the launch plan and packed
  parameters of nvrtc.py: every block of the grid, in a shuffled order, 256 threads each. This
  checks the kernel's indexing, tiling, reductions, split tickets and dtype handling on a CPU.
GPU (``@pytest.mark.gpu``, skipped without CUDA): the real kernel vs the reference.
"""

from __future__ import annotations

import ctypes
import heapq
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import build_cuda_emulation

from seagull_edge.kernels import nvrtc as knv
from seagull_edge.kernels.reference import (
    bilinear_resize_numpy, binarised_masks_numpy, masked_roi_pool_numpy, source_index,
)

CONVNEXT_L = ((192, 128), (384, 64), (768, 32), (1536, 16))  # (C, H) at 512 input
EDGE = ((40, 96), (80, 48), (160, 24), (320, 12))             # edge preset at 384 input

# Tolerances (relative to the largest |feature|): the kernel and torch accumulate in fp32, the
# reference in float64. fp16 outputs carry one fp16 rounding (2^-11 relative).
TOL_F32 = dict(rtol=1e-4, atol=2e-5)
TOL_F16_OUT = dict(rtol=2e-3, atol=2e-3)


# ------------------------------------------------------------------------------------------------
# mask cases

PATTERNS = ("rect", "ellipse", "hline", "vline", "diag", "pixel", "empty", "full", "two_rects", "corner")


def make_patterns(rng: np.random.Generator, B: int, Q: int, Hm: int, Wm: int) -> np.ndarray:
    """{0, 1} masks [B,Q,Hm,Wm], cycling through PATTERNS so one batch holds every case:
    blobs, 1-px lines (at random offsets, so some vanish after downsampling), one pixel, empty,
    full, and a pixel in the last row/column (the clamped taps)."""
    m = np.zeros((B, Q, Hm, Wm), np.uint8)
    yy, xx = np.mgrid[:Hm, :Wm]
    for b in range(B):
        for q in range(Q):
            kind = PATTERNS[(b * Q + q) % len(PATTERNS)]
            t = m[b, q]
            if kind == "rect" or kind == "two_rects":
                for _ in range(1 if kind == "rect" else 2):
                    y0, x0 = rng.integers(0, Hm), rng.integers(0, Wm)
                    t[y0:y0 + rng.integers(1, max(2, Hm // 2)), x0:x0 + rng.integers(1, max(2, Wm // 2))] = 1
            elif kind == "ellipse":
                cy, cx = rng.uniform(0, Hm), rng.uniform(0, Wm)
                ry, rx = rng.uniform(1, Hm / 3), rng.uniform(1, Wm / 3)
                t[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
            elif kind == "hline":
                t[rng.integers(0, Hm), :] = 1
            elif kind == "vline":
                t[:, rng.integers(0, Wm)] = 1
            elif kind == "diag":
                n = min(Hm, Wm)
                t[np.arange(n), np.arange(n)] = 1
            elif kind == "pixel":
                t[rng.integers(0, Hm), rng.integers(0, Wm)] = 1
            elif kind == "full":
                t[:] = 1
            elif kind == "corner":
                t[Hm - 1, Wm - 1] = 1
    return m


def as_mask_dtype(rng: np.random.Generator, pat: np.ndarray, dtype: str, signed: bool = False) -> np.ndarray:
    """uint8: inside = random 1..255; float32: inside = random in [0.25, 1] (or, ``signed``,
    outside = random in {0, -0.5, -1}: only meaningful where the resize weights are dyadic)."""
    if dtype == "uint8":
        return (pat * rng.integers(1, 256, size=pat.shape)).astype(np.uint8)
    inside = rng.choice(np.float32([0.25, 0.5, 1.0]), size=pat.shape)
    out = np.where(pat > 0, inside, np.float32(0)).astype(np.float32)
    if signed:
        out = np.where(pat > 0, out, rng.choice(np.float32([0.0, -0.5, -1.0]), size=pat.shape)).astype(np.float32)
    return out


def make_feats(rng: np.random.Generator, B: int, levels, dtype=np.float32) -> list[np.ndarray]:
    return [rng.standard_normal((B, c, h if isinstance(h, int) else h[0], h if isinstance(h, int) else h[1]))
            .astype(dtype) for c, h in levels]


def assert_pooled_close(got, want, feats, tol, what=""):
    for lvl, (g, w, f) in enumerate(zip(got, want, feats)):
        g = np.asarray(g, dtype=np.float64)
        assert g.shape == w.shape, (what, lvl, g.shape, w.shape)
        assert np.isfinite(g).all(), f"{what} level {lvl}: non-finite output (unwritten element?)"
        scale = float(np.abs(np.asarray(f, dtype=np.float64)).max()) or 1.0
        np.testing.assert_allclose(g, w, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=f"{what} level {lvl}")


# ------------------------------------------------------------------------------------------------
# CPU: references

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("src,dst", [
    ((512, 512), (128, 128)), ((512, 512), (16, 16)), ((384, 384), (96, 96)), ((384, 384), (12, 12)),
    ((333, 517), (128, 128)), ((333, 517), (24, 24)), ((13, 17), (16, 16)), ((16, 16), (16, 16)),
    ((40, 24), (7, 9)),
])
def test_reference_resize_matches_f_interpolate(rng, src, dst):
    x = rng.uniform(-1, 1, size=(2, 3, *src)).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x), size=dst, mode="bilinear", align_corners=False).numpy()
    got = bilinear_resize_numpy(x, dst)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    # {0,1} masks: the binarised result is exact (no rounding can flip a zero)
    pat = make_patterns(rng, 2, len(PATTERNS), *src).astype(np.float32)
    want_b = (F.interpolate(torch.from_numpy(pat), size=dst, mode="bilinear", align_corners=False) > 0).numpy()
    np.testing.assert_array_equal(binarised_masks_numpy(pat, dst) > 0, want_b)


def test_source_index_formula():
    i0, i1, l0, l1 = source_index(512, 128)  # scale 4: src = 4d + 1.5
    np.testing.assert_array_equal(i0, 4 * np.arange(128) + 1)
    np.testing.assert_array_equal(i1, 4 * np.arange(128) + 2)
    np.testing.assert_array_equal(l1, 0.5)
    i0, i1, l0, l1 = source_index(4, 8)  # upsampling: clamped below at 0 and at the last row
    assert i0[0] == 0 and l1[0] == 0.0 and i1[-1] == 3 and i0[-1] == 3
    np.testing.assert_allclose(l0 + l1, 1.0)


MASK_SIZES = [(512, 512), (384, 384), (333, 517)]


@pytest.mark.parametrize("levels", [CONVNEXT_L, EDGE], ids=["convnext_l", "edge"])
@pytest.mark.parametrize("msize", MASK_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_reference_numpy_vs_stock_torch(rng, levels, msize):
    B, Q = 1, len(PATTERNS)
    small = [(8, h) for _, h in levels]  # every level size, few channels (CPU time)
    feats = make_feats(rng, B, small)
    pat = make_patterns(rng, B, Q, *msize)
    for mdtype in ("uint8", "float32"):
        masks = as_mask_dtype(rng, pat, mdtype)
        want = masked_roi_pool_numpy(feats, masks)
        from seagull_edge.kernels.reference import masked_roi_pool_torch

        got = masked_roi_pool_torch([torch.from_numpy(f) for f in feats], torch.from_numpy(masks))
        assert_pooled_close([g.numpy() for g in got], want, feats, TOL_F32, f"stock {mdtype}")
        # empty masks pool to exactly zero, never NaN
        for lvl, (c, h) in enumerate(small):
            mb = binarised_masks_numpy(masks, (h, h)).reshape(B, Q, -1)
            empty = mb.sum(-1) == 0
            assert empty.any(), "the cases should include masks that vanish at this level"
            assert (want[lvl][empty] == 0).all() and (got[lvl].numpy()[empty] == 0).all()


def test_reference_vs_mask_pool_fp16_features(rng):
    from seagull_edge.kernels.reference import mask_pool

    B, Q = 2, len(PATTERNS)
    for (c, h) in EDGE:
        f16 = rng.standard_normal((B, c // 4, h, h)).astype(np.float16)
        masks = make_patterns(rng, B, Q, 384, 384).astype(np.float32)
        want = masked_roi_pool_numpy([f16], masks)[0]
        got = mask_pool(torch.from_numpy(f16), torch.from_numpy(masks)).float().numpy()
        empty = binarised_masks_numpy(masks, (h, h)).reshape(B, Q, -1).sum(-1) == 0
        assert empty.any()
        # The seed's "count + 1e-8" is 0 in fp16 (1e-8 is below its smallest subnormal) and used to
        # pool an empty ROI to 0/0 = NaN; mask_pool now divides by max(count, 1): exactly 0, as
        # the reference and the kernel.
        assert (got[empty] == 0).all() and (want[empty] == 0).all()
        # elsewhere: the mask is divided by its count in fp16 and the result rounded to fp16
        assert_pooled_close([got[~empty]], [want[~empty]], [f16], dict(rtol=5e-3, atol=2e-3), "fp16 stock")


def test_reference_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import seagull_edge.kernels, seagull_edge.kernels.reference, seagull_edge.kernels.nvrtc\n"
            "from seagull_edge.kernels import masked_roi_pool_numpy, plan_launch\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_pooling_math_has_one_home():
    """The model's MFE pools with kernels.reference (not the other way round); the kernels never
    import the model; the torch wrapper lives in torch_op, not in nvrtc."""
    code = ("import sys\n"
            "import seagull_edge.kernels.torch_op as op, seagull_edge.kernels.reference as ref\n"
            "import seagull_edge.kernels.nvrtc as knv, torch\n"
            "ref.masked_roi_pool_torch([torch.ones(1, 2, 4, 4)], torch.ones(1, 1, 8, 8))\n"
            "op.masked_roi_pool(*[torch.ones(1, 2, 4, 4)] * 4, torch.ones(1, 1, 8, 8))\n"
            "assert not [m for m in sys.modules if m.startswith('seagull_edge.model')], 'kernels import the model'\n"
            "from seagull_edge.model import mask_extractor as me\n"
            "assert me.mask_pool is ref.mask_pool and me.pool_levels is ref.pool_levels\n"
            "assert not hasattr(knv, 'masked_roi_pool_cuda'), 'nvrtc holds only the build and launch'\n"
            "import seagull_edge.kernels as k\n"
            "assert k.masked_roi_pool_cuda is op.masked_roi_pool_cuda and k.mask_pool is ref.mask_pool\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_package_import_is_light():
    code = ("import sys, seagull_edge.kernels, seagull_edge.kernels.nvrtc\n"
            "bad = [m for m in ('torch', 'cuda', 'cuda.bindings', 'cuda.bindings.nvrtc') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# ------------------------------------------------------------------------------------------------
# CPU: planning and parameter packing

def test_plan_covers_every_pixel_and_tile():
    plan = knv.plan_launch([(2, c, h, h) for c, h in CONVNEXT_L], (2, 37, 512, 512), num_sms=132)
    assert plan.tq == 16 and plan.q_tiles == 3
    begin = 0
    for lv, (c, h) in zip(plan.levels, CONVNEXT_L):
        assert lv.block_begin == begin and lv.c_tiles == -(-c // 64)
        assert lv.split_len % knv.TILE_K == 0 and (lv.splits - 1) * lv.split_len < h * h <= lv.splits * lv.split_len
        assert lv.block_count == 2 * plan.q_tiles * lv.c_tiles * lv.splits
        begin += lv.block_count
    assert plan.grid == begin
    assert plan.levels[0].splits > 1  # the 128x128 level is split to fill the GPU
    assert knv.plan_launch([(1, 192, 128, 128)], (1, 1, 512, 512), max_splits=1).workspace_bytes == 0
    small = knv.plan_launch([(1, 8, 4, 4)], (1, 3, 8, 8))
    assert small.tq == 4 and small.workspace_bytes == 0 and small.grid == 1
    with pytest.raises(ValueError):
        knv.plan_launch([(2, 8, 4, 4)], (1, 3, 8, 8))
    with pytest.raises(ValueError):
        knv.pack_params(plan, [1, 2, 3, 4], [5, 6, 7, 8], 9, 0)  # split plan without a workspace


def test_workspace_regions_do_not_overlap():
    plan = knv.plan_launch([(3, c, h, h) for c, h in EDGE], (3, 20, 384, 384), split_px=64)
    regions = [(0, plan.ticket_bytes)]
    for lv in plan.levels:
        if lv.splits > 1:
            assert lv.ticket_offset + 4 * lv.ticket_count <= plan.ticket_bytes
            assert lv.partial_bytes == 4 * lv.splits * 3 * 20 * (lv.C + lv.c_tiles)
            regions.append((lv.partial_offset, lv.partial_offset + lv.partial_bytes))
    regions.sort()
    for (a0, a1), (b0, b1) in zip(regions, regions[1:]):
        assert a1 <= b0
    assert regions[-1][1] <= plan.workspace_bytes


def test_default_tq_is_the_smallest_tile_holding_every_roi():
    assert [knv.default_tq(q) for q in (1, 4, 5, 8, 9, 16, 17, 64)] == [4, 4, 8, 8, 16, 16, 16, 16]
    assert knv.plan_launch([(1, 8, 4, 4)], (1, 6, 8, 8)).tq == 8


BENCH_CASES = [(name, levels, S, Q) for name, levels, S in (("convnext_l", CONVNEXT_L, 512), ("edge", EDGE, 384))
               for Q in (1, 8, 32, 64)]


@pytest.mark.parametrize("name,levels,S,Q", BENCH_CASES, ids=[f"{c[0]}-q{c[3]}" for c in BENCH_CASES])
def test_default_plan_balances_blocks(name, levels, S, Q):
    """The default plan of every benchmark case: no level split beyond SPLIT_CAP, every block at
    most T chunks long where T is the larger of the even share of the work over the resident
    blocks and what the cap forces on the largest level, and no level split finer than T (that
    would only add partials, not end the launch sooner).  Blocks dispatched in grid order to the
    first free slot of an H100 (132 SMs x BLOCKS_PER_SM) then all end within 1.2 T chunks."""
    sms = 132
    plan = knv.plan_launch([(1, c, h, h) for c, h in levels], (1, Q, S, S), num_sms=sms)
    tq = knv.default_tq(Q)
    assert plan.tq == tq
    cap = knv.SPLIT_CAP[tq]
    chunks = [-(-h * h // knv.TILE_K) for _, h in levels]
    work = sum(plan.q_tiles * lv.c_tiles * n for lv, n in zip(plan.levels, chunks))
    T = max(-(-work // (knv.BLOCKS_PER_SM * sms)), max(-(-n // cap) for n in chunks))
    ends = [0] * (knv.BLOCKS_PER_SM * sms)   # slot free times, in chunks
    for lv, n in zip(plan.levels, chunks):
        for s in range(lv.splits):
            length = min(lv.split_len // knv.TILE_K, n - s * lv.split_len // knv.TILE_K)
            for _ in range(lv.block_count // lv.splits):
                heapq.heapreplace(ends, ends[0] + length)
    assert max(ends) <= 1.2 * T, (max(ends), T)
    for lv, n in zip(plan.levels, chunks):
        assert 1 <= lv.splits <= cap
        assert lv.split_len // knv.TILE_K <= T                      # no block longer than T
        assert lv.splits == -(-n // min(n, T))                       # and none split finer
    assert max(lv.split_len // knv.TILE_K for lv in plan.levels) == T


def test_split_cap_only_applies_by_default():
    shapes = [(1, c, h, h) for c, h in EDGE]
    default = knv.plan_launch(shapes, (1, 8, 384, 384))
    assert max(lv.splits for lv in default.levels) <= knv.SPLIT_CAP[8]
    forced = knv.plan_launch(shapes, (1, 8, 384, 384), split_px=64)   # one chunk per block, as asked
    assert forced.levels[0].splits == 96 * 96 // 64 > knv.SPLIT_CAP[8]
    capped = knv.plan_launch(shapes, (1, 8, 384, 384), max_splits=3)
    # 3 splits of the 96x96 level: 48 chunks per block, so the 36-chunk level is not split at all
    assert [lv.splits for lv in capped.levels] == [3, 1, 1, 1]
    assert capped.levels[0].split_len == 48 * knv.TILE_K
    assert knv.plan_launch(shapes, (1, 8, 384, 384), max_splits=1).workspace_bytes == 0


def test_planner_constants_mirror_the_kernel_source():
    """nvrtc.py plans with the kernel's compile-time choices; a change on one side only fails here."""
    src = knv.kernel_source()
    fin = {tq: int(re.search(rf"#define MRP_FIN_Q{tq} (\d+)", src).group(1)) for tq in knv.TQ_CHOICES}
    assert fin == knv.FIN_SPLITS
    pro = {tq: int(re.search(rf"#define MRP_PRO_U_Q{tq} (\d+)", src).group(1)) for tq in knv.TQ_CHOICES}
    assert pro == knv.PROLOGUE_CHUNKS
    assert int(re.search(r"#define MRP_WIN (\d+)", src).group(1)) == knv.WINDOW_CHUNKS
    bounds = set(re.findall(r"__launch_bounds__\(MRP_THREADS, (\w+)\)", src))
    assert bounds == {str(knv.BLOCKS_PER_SM)}
    assert set(re.findall(r"SEAGULL_MRP_ENTRY\((masked_roi_pool_\w+),", src)) == set(knv.ENTRY_NAMES)


def test_entry_names():
    assert knv.entry_name("float16", "uint8", 16) == "masked_roi_pool_f16_u8_q16"
    assert knv.entry_name(np.float32, "bool", 4) == "masked_roi_pool_f32_u8_q4"
    assert knv.entry_name(torch.float32, torch.float32, 16) == "masked_roi_pool_f32_f32_q16"
    assert knv.entry_name("float16", "float32", 8) == "masked_roi_pool_f16_f32_q8"
    assert len(set(knv.ENTRY_NAMES)) == 12
    with pytest.raises(ValueError):
        knv.entry_name("float16", "uint8", 32)
    with pytest.raises(ValueError):
        knv.entry_name("float64", "uint8", 4)


def _bench_kernel():
    """benchmarks/bench_kernel.py as a module (it is a script, not part of the package)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_kernel.py"
    spec = importlib.util.spec_from_file_location("_bench_kernel", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_kernel_dry_run_prints_every_plan(capsys):
    """The benchmark's planning half runs without a GPU (and without importing torch)."""
    bench = _bench_kernel()
    assert bench.main(["--dry-run", "--q", "1", "8", "32", "--dtypes", "float16", "--bandwidth", "1000"]) == 0
    lines = [ln.split() for ln in capsys.readouterr().out.splitlines() if not ln.startswith(("#", "preset"))]
    assert len(lines) == 2 * 3
    conv8 = next(ln for ln in lines if ln[:3] == ["convnext_l", "8", "float16"])
    nbytes = bench.case_bytes(bench.PRESETS["convnext_l"][0], 512, 8, 1, "float16", "uint8")
    assert nbytes == 2 * (192 * 128 ** 2 + 384 * 64 ** 2 + 768 * 32 ** 2 + 1536 * 16 ** 2) + 8 * 512 * 512
    assert float(conv8[4]) == pytest.approx(nbytes / 1000e9 * 1e6, abs=0.01)    # floor in us at 1000 GB/s
    plan = knv.plan_launch([(1, c, h, h) for c, h in bench.PRESETS["convnext_l"][0]], (1, 8, 512, 512))
    assert [int(x) for x in conv8[5:7]] == [plan.tq, plan.grid]
    with pytest.raises(SystemExit):
        bench.parse_args(["--runs", "10"])
    code = ("import runpy, sys; sys.modules['torch'] = None\n"
            "sys.argv = ['bench_kernel.py', '--dry-run', '--q', '8', '--presets', 'edge']\n"
            "runpy.run_path('benchmarks/bench_kernel.py', run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent, capture_output=True, text=True)
    assert r.returncode == 0 and "edge" in r.stdout, r.stderr


def test_bench_mask_trips_counts_windows():
    bench = _bench_kernel()
    assert bench.mask_trips(8, 32, 1) == 8
    assert bench.mask_trips(8, 32, 4) == 2
    assert bench.mask_trips(43, 32, 1) == 43                 # 32 + 11
    assert bench.mask_trips(70, 32, 4) == 8 + 8 + 2          # windows of 32, 32, 6 chunks


# ------------------------------------------------------------------------------------------------
# NVRTC (compiles on the CPU; no GPU needed)

def _nvrtc_available() -> str | None:
    try:
        knv.nvrtc_version()
    except knv.KernelError as exc:
        return str(exc)
    return None


needs_nvrtc = pytest.mark.skipif(_nvrtc_available() is not None,
                                 reason=f"NVRTC not available: {_nvrtc_available()}")


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_75", "sm_87", "sm_90"])
def test_nvrtc_ptx_every_variant(kcache, arch):
    ptx = knv.compile_ptx(arch).decode()
    entries = set(re.findall(r"\.entry\s+(\w+)\s*\(", ptx))
    assert entries == set(knv.ENTRY_NAMES)
    assert re.search(rf"^\.target\s+{arch}\b", ptx, re.M)
    assert "ld.local" not in ptx and "st.local" not in ptx  # no local arrays in the front end


@needs_nvrtc
def test_nvrtc_fp16_with_and_without_header(kcache):
    inc = knv.find_cuda_include_dir(knv.nvrtc_version()[0])
    free = knv.compile_ptx("sm_87", fp16_header="never").decode()
    assert "cvt.f32.f16" in free and "cvt.rn.f16.f32" in free
    if inc is None:
        pytest.skip("no cuda_fp16.h found: only the header-free build is available")
    with_header = knv.compile_ptx("sm_87", fp16_header="always").decode()
    assert set(re.findall(r"\.entry\s+(\w+)", with_header)) == set(knv.ENTRY_NAMES)
    assert "cvt.f32.f16" in with_header


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_87", "sm_90"])
def test_ptxas_no_spills(arch):
    report = knv.ptxas_report(arch, fp16_header="never")
    assert set(report) == set(knv.ENTRY_NAMES)
    # Shared memory per SM (CUDA C++ Programming Guide, technical specifications per compute
    # capability): 164 KB on 8.7 (Jetson Orin), 228 KB on 9.0 (H100); 1 KB of it is reserved per block.
    smem_per_sm = {"sm_87": 164 * 1024, "sm_90": 228 * 1024}[arch]
    for name, info in report.items():
        if name.startswith("masked_roi_pool_f32_") and name.endswith("_q16") and arch == "sm_90":
            # At the 128-register cap, ptxas (NVRTC 13.0) is not deterministic here: the same
            # source and options spill 24-28 bytes in about 1 of 8 compiles of these two variants
            # (0 in the others; measured 2026-11-27). Bounded, not zero, until a GPU run decides
            # whether to give them registers back (benchmarks/results/kernel_floor_2026-11-27.md).
            assert info["spill_stores"] <= 32 and info["stack"] <= 32, (name, info)
        else:
            assert info["spill_stores"] == 0 and info["stack"] == 0, (name, info)
        assert info["registers"] <= 128, (name, info)  # __launch_bounds__(256, 2)
        assert info["smem"] <= 48 * 1024, (name, info)
        # the occupancy the planner sizes the grid for (BLOCKS_PER_SM resident blocks per SM):
        # registers are allocated per warp in units of 256, 64K of them per SM
        regs_per_block = (knv.THREADS // 32) * (-(-info["registers"] * 32 // 256) * 256)
        assert knv.BLOCKS_PER_SM * regs_per_block <= 64 * 1024, (name, info)
        assert knv.BLOCKS_PER_SM * (info["smem"] + 1024) <= smem_per_sm, (name, info)


@needs_nvrtc
def test_nvrtc_cubin(kcache):
    cubin = knv.compile_cubin("sm_90")
    assert cubin[:4] == b"\x7fELF"
    for name in knv.ENTRY_NAMES:
        assert name.encode() in cubin


@needs_nvrtc
def test_nvrtc_compile_error_has_log(tmp_path, monkeypatch):
    monkeypatch.setenv("SEAGULL_EDGE_CACHE", str(tmp_path))
    bad = 'extern "C" __global__ void broken(float* x) { x[0] = undefined_name_xyz; }\n'
    with pytest.raises(knv.NvrtcCompileError) as ei:
        knv.compile_ptx("sm_90", source=bad, name="broken.cu")
    assert "undefined_name_xyz" in str(ei.value) and "undefined_name_xyz" in ei.value.log
    assert list(tmp_path.iterdir()) == []  # nothing cached


@needs_nvrtc
def test_nvrtc_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEAGULL_EDGE_CACHE", str(tmp_path))
    src = 'extern "C" __global__ void tiny(float* x) { x[threadIdx.x] *= 2.0f; }\n'
    a = knv.compile_ptx("sm_80", source=src, name="tiny.cu")
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".ptx" and files[0].read_bytes() == a
    calls = []
    real = knv._nvrtc_build
    monkeypatch.setattr(knv, "_nvrtc_build", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert knv.compile_ptx("sm_80", source=src, name="tiny.cu") == a and not calls  # a cache hit
    knv.compile_ptx("sm_86", source=src, name="tiny.cu")  # another key -> compiled
    assert len(calls) == 1 and len(list(tmp_path.iterdir())) == 2
    # a failing write leaves neither a partial file nor a temporary one, and still returns the PTX
    before = sorted(p.name for p in tmp_path.iterdir())

    def failing_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(knv.os, "replace", failing_replace)
    assert b".target sm_89" in knv.compile_ptx("sm_89", source=src, name="tiny.cu")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_nvrtc_version_reported():
    if _nvrtc_available() is not None:
        pytest.skip(_nvrtc_available())
    major, minor = knv.nvrtc_version()
    assert major >= 12
    assert knv.supported_archs()  # e.g. [75, 80, ..., 120]


# ------------------------------------------------------------------------------------------------
# CPU emulation of the CUDA kernel

EMU_HARNESS = r"""
#include <atomic>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct emu_dim3 { unsigned x = 0, y = 0, z = 0; };
static thread_local emu_dim3 threadIdx, blockIdx;
static emu_dim3 blockDim, gridDim;

struct EmuBarrier {
    std::mutex m; std::condition_variable cv;
    int n = 0, count = 0, acc = 0, result = 0; long gen = 0;
    int wait(int pred) {
        std::unique_lock<std::mutex> l(m);
        acc |= pred;
        long g = gen;
        if (++count == n) { result = acc; acc = 0; count = 0; ++gen; cv.notify_all(); return result; }
        cv.wait(l, [&] { return gen != g; });
        return result;
    }
};
static EmuBarrier g_bar;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

static inline void __syncthreads() { g_bar.wait(0); }
static inline int __syncthreads_or(int p) { return g_bar.wait(p ? 1 : 0); }
static inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
static inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline unsigned atomicExch(unsigned* p, unsigned v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline float __ldcg(const float* p) { float v; __atomic_load(p, &v, __ATOMIC_SEQ_CST); return v; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
static inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }
static inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }

#define SEAGULL_MRP_CUSTOM_PREFETCH 1
static inline void mrp_prefetch(const void*) {}  // a cache hint: nothing to emulate
#define SEAGULL_MRP_CUSTOM_HALF 1
static inline float mrp_h2f(unsigned short b) { _Float16 h; std::memcpy(&h, &b, 2); return (float)h; }
static inline unsigned short mrp_f2h(float f) { _Float16 h = (_Float16)f; unsigned short b; std::memcpy(&b, &h, 2); return b; }

#include "masked_roi_pool.cu"

typedef void (*emu_entry)(const MrpParams);
#define EMU_E(n) {#n, n}
static const struct { const char* name; emu_entry fn; } emu_entries[] = {
    EMU_E(masked_roi_pool_f32_u8_q4), EMU_E(masked_roi_pool_f32_u8_q8), EMU_E(masked_roi_pool_f32_u8_q16),
    EMU_E(masked_roi_pool_f32_f32_q4), EMU_E(masked_roi_pool_f32_f32_q8), EMU_E(masked_roi_pool_f32_f32_q16),
    EMU_E(masked_roi_pool_f16_u8_q4), EMU_E(masked_roi_pool_f16_u8_q8), EMU_E(masked_roi_pool_f16_u8_q16),
    EMU_E(masked_roi_pool_f16_f32_q4), EMU_E(masked_roi_pool_f16_f32_q8), EMU_E(masked_roi_pool_f16_f32_q16),
};

extern "C" int emu_launch(const char* name, const void* params, int grid, const int* order, int threads) {
    emu_entry fn = nullptr;
    for (auto& e : emu_entries) if (std::string(e.name) == name) fn = e.fn;
    if (!fn) return -1;
    MrpParams p;
    std::memcpy(&p, params, sizeof p);
    g_bar.n = threads; g_bar.count = 0; g_bar.acc = 0;
    gridDim.x = grid; blockDim.x = threads;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            threadIdx.x = t;
            for (int i = 0; i < grid; ++i) {
                g_bar.wait(0);  // every thread has left the previous block
                blockIdx.x = order ? order[i] : i;
                fn(p);
            }
        });
    for (auto& th : pool) th.join();
    return 0;
}

extern "C" long emu_layout(int what) {
    switch (what) {
        case 0: return sizeof(MrpParams);
        case 1: return sizeof(MrpLevel);
        case 2: return offsetof(MrpParams, mask);
        case 3: return offsetof(MrpParams, num_levels);
        case 4: return offsetof(MrpLevel, block_count);
        case 5: return offsetof(MrpLevel, C);
        default: return -1;
    }
}
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    lib = build_cuda_emulation(tmp_path_factory.mktemp("emu"), EMU_HARNESS, knv.KERNEL_SOURCE_PATH.parent,
                               ("-O1", "-pthread"), "the CUDA kernel")
    lib.emu_launch.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    lib.emu_layout.restype = ctypes.c_long
    return lib


def emu_pool(lib, feats, masks, *, seed=0, misalign=False, **plan_kwargs):
    """Run the kernel's C++ on the CPU: same plan, same packed parameters as a GPU launch."""
    plan = knv.plan_launch([f.shape for f in feats], masks.shape, **plan_kwargs)
    keep = []
    if misalign:  # features 1 element off a 16-byte boundary -> the scalar load path
        moved = []
        for f in feats:
            buf = np.empty(f.size + 1, dtype=f.dtype)
            view = buf[1:].reshape(f.shape)
            view[...] = f
            keep.append(buf)
            moved.append(view)
        feats = moved
    outs = [np.full((plan.B, plan.Q, lv.C), np.nan, dtype=f.dtype) for f, lv in zip(feats, plan.levels)]
    ws = np.zeros(max(plan.workspace_bytes, 16), np.uint8)
    params = knv.pack_params(plan, [f.ctypes.data for f in feats], [o.ctypes.data for o in outs],
                             masks.ctypes.data, ws.ctypes.data if plan.workspace_bytes else 0)
    order = np.random.default_rng(seed).permutation(plan.grid).astype(np.int32)
    name = plan.entry(feats[0].dtype, masks.dtype)
    assert lib.emu_launch(name.encode(), ctypes.addressof(params), plan.grid, order.ctypes.data, knv.THREADS) == 0
    if plan.workspace_bytes:
        assert not ws[:plan.ticket_bytes].any(), "the kernel must leave its tickets zero"
    return outs, plan


def test_emu_param_layout_matches_ctypes(emu):
    assert emu.emu_layout(0) == ctypes.sizeof(knv._MrpParams) == knv.PARAMS_SIZE
    assert emu.emu_layout(1) == ctypes.sizeof(knv._MrpLevel)
    assert emu.emu_layout(2) == knv._MrpParams.mask.offset
    assert emu.emu_layout(3) == knv._MrpParams.num_levels.offset
    assert emu.emu_layout(4) == knv._MrpLevel.block_count.offset
    assert emu.emu_layout(5) == knv._MrpLevel.C.offset


# Small levels that still exercise everything: partial channel tiles (40, 72, 130), downsampling
# by 2..16, a non-square level, and a 16x16 level under 13x17 masks (upsampling).
# All resize weights here are dyadic, so signed float masks binarise identically in fp32 and
# float64 (no value can land near 0 by rounding).
EMU_LEVELS = ((40, (16, 16)), (72, (8, 8)), (8, (4, 4)), (130, (2, 4)))


@pytest.mark.parametrize("fdtype", ["float32", "float16"])
@pytest.mark.parametrize("mdtype", ["uint8", "float32"])
@pytest.mark.parametrize("case", ["q4_split", "q8_split", "q8_default", "q16_nosplit", "q16_two_tiles_split"])
def test_emu_kernel_matches_reference(emu, rng, fdtype, mdtype, case):
    B = 2
    Q, msize, kw = {
        "q4_split": (3, (32, 32), dict(split_px=64)),               # 4 splits of the 16x16 level
        "q8_split": (7, (20, 28), dict(split_px=128)),              # one ROI slot of the tile unused
        "q8_default": (8, (32, 32), dict(num_sms=4)),               # the default plan (split cap)
        "q16_nosplit": (len(PATTERNS), (24, 40), dict(max_splits=1)),
        "q16_two_tiles_split": (17, (13, 17), dict(split_px=128)),  # upsampling masks, 2 ROI tiles
    }[case]
    feats = make_feats(rng, B, EMU_LEVELS, np.dtype(fdtype))
    pat = make_patterns(rng, B, Q, *msize)
    masks = as_mask_dtype(rng, pat, mdtype, signed=(mdtype == "float32"))  # dyadic weights: exact
    got, plan = emu_pool(emu, feats, masks, seed=int(rng.integers(1 << 30)), **kw)
    assert plan.tq == knv.default_tq(Q)
    if "nosplit" in case:
        assert plan.workspace_bytes == 0
    else:  # the default plan on 4 SMs splits the 16x16 level too
        assert any(lv.splits > 1 for lv in plan.levels)
    want = masked_roi_pool_numpy(feats, masks)
    assert_pooled_close(got, want, feats, TOL_F32 if fdtype == "float32" else TOL_F16_OUT, case)
    for g, w in zip(got, want):  # empty masks: exactly zero
        assert (np.asarray(g)[w == 0] == 0).all()


@pytest.mark.parametrize("fdtype", ["float32", "float16"])
def test_emu_scalar_path_and_same_size_masks(emu, rng, fdtype):
    """Odd H*W (7x9) and a misaligned base pointer take the scalar loads; masks at the level's
    own size are thresholded without interpolation; Q=6 with tq=4 -> two ROI tiles."""
    B, Q = 1, 6
    levels = ((20, (7, 9)), (66, (7, 9)))
    feats = make_feats(rng, B, levels, np.dtype(fdtype))
    masks = as_mask_dtype(rng, make_patterns(rng, B, Q, 7, 9), "float32", signed=True)
    want = masked_roi_pool_numpy(feats, masks)
    tol = TOL_F32 if fdtype == "float32" else TOL_F16_OUT
    for misalign in (False, True):
        got, plan = emu_pool(emu, feats, masks, misalign=misalign, tq=4, split_px=64)
        assert plan.q_tiles == 2
        assert_pooled_close(got, want, feats, tol, f"misalign={misalign}")


@pytest.mark.parametrize("fdtype,mdtype,kw", [
    ("float16", "uint8", dict(max_splits=1)),       # 72 chunks in one block: three mask windows
    ("float32", "float32", dict(split_px=40 * 64)),  # two blocks of 36 chunks: 32 + 4 each
])
def test_emu_mask_windows_and_skipped_chunks(emu, rng, fdtype, mdtype, kw):
    """Blocks longer than one mask window (32 chunks), and chunks that no ROI of the tile covers:
    their features are never multiplied, so NaNs there do not reach the output, also when the
    block fetched them speculatively (the first chunk of a window)."""
    H, W = 96, 48                                   # 72 chunks of 64 pixels (1.33 level rows each)
    feats = make_feats(rng, 1, ((20, (H, W)),), np.dtype(fdtype))
    masks = np.zeros((1, 3, 2 * H, 2 * W), np.uint8)
    masks[0, 0, 90:120, 10:70] = 1                  # level rows 45..59: chunks 33..45 (first block's
    masks[0, 1, 180:, 60:] = 1                      # second window); ROI 1: the last rows only
    masks = as_mask_dtype(rng, masks, mdtype)       # ROI 2 stays empty
    clean = [f.copy() for f in feats]
    feats[0][0, :, :40, :] = np.nan                 # chunks 0..29: outside every ROI
    got, plan = emu_pool(emu, feats, masks, **kw)
    assert plan.tq == 4 and plan.levels[0].split_len // knv.TILE_K > knv.WINDOW_CHUNKS
    want = masked_roi_pool_numpy(clean, masks)
    assert_pooled_close(got, want, clean, TOL_F32 if fdtype == "float32" else TOL_F16_OUT, f"{kw}")
    assert (np.asarray(got[0])[0, 2] == 0).all()    # the empty ROI pools to exactly 0


def test_emu_larger_level_with_many_chunks(emu, rng):
    """A 48x48 level (36 chunks) under 384-px masks, split unevenly; fp16, uint8 masks."""
    feats = make_feats(rng, 1, ((24, (48, 48)),), np.float16)
    masks = as_mask_dtype(rng, make_patterns(rng, 1, 5, 384, 384), "uint8")
    got, plan = emu_pool(emu, feats, masks, split_px=640)
    assert plan.levels[0].splits == 4
    assert_pooled_close(got, masked_roi_pool_numpy(feats, masks), feats, TOL_F16_OUT, "48x48")


class _FakeDriver:
    """Just enough of cuda.bindings.driver for MaskedRoiPoolKernel, with host memory as "device"
    memory and the emulated kernel as cuLaunchKernel: the launcher's own code runs unchanged."""

    class CUresult:
        CUDA_SUCCESS = 0

    class CUdevice_attribute:
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = "major"
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = "minor"
        CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = "sms"

    def __init__(self, lib):
        self.lib = lib
        self.calls = []
        self.images = []

    CUstream = staticmethod(int)
    CUdeviceptr = staticmethod(int)

    def cuInit(self, flags):
        return (0,)

    def cuCtxGetCurrent(self):
        return (0, 0xC0FFEE)

    def cuCtxGetDevice(self):
        return (0, 0)

    def cuDeviceGetAttribute(self, attr, dev):
        return (0, {"major": 8, "minor": 7, "sms": 16}[attr])

    def cuModuleLoadData(self, image):
        self.images.append(bytes(image[:4]))
        return (0, "module")

    def cuModuleGetFunction(self, module, name):
        return (0, name.decode())

    def cuMemsetD32Async(self, ptr, value, count, stream):
        ctypes.memset(int(ptr), value, 4 * count)
        self.calls.append(("memset", count, stream))
        return (0,)

    def cuLaunchKernel(self, func, gx, gy, gz, bx, by, bz, shmem, stream, kernel_params, extra):
        assert (gy, gz, by, bz, shmem, extra) == (1, 1, 1, 1, 0, 0)
        params = ctypes.c_void_p.from_address(kernel_params).value  # kernelParams[0] -> MrpParams
        self.calls.append(("launch", func, gx, bx, stream))
        assert self.lib.emu_launch(func.encode(), params, gx, None, bx) == 0
        return (0,)


@needs_nvrtc
def test_launcher_end_to_end_with_emulated_driver(emu, kcache, rng, monkeypatch):
    fake = _FakeDriver(emu)
    monkeypatch.setattr(knv, "_driver", lambda: fake)
    feats = make_feats(rng, 2, EMU_LEVELS, np.float16)
    masks = as_mask_dtype(rng, make_patterns(rng, 2, 9, 32, 32), "uint8")
    k = knv.MaskedRoiPoolKernel()
    plan = k.plan([f.shape for f in feats], masks.shape, split_px=64)
    assert plan.workspace_bytes > 0
    ws = np.full(plan.workspace_bytes, 0xAB, np.uint8)  # dirty: the launcher clears the tickets
    outs = [np.full((2, 9, lv.C), np.nan, np.float16) for lv in plan.levels]
    k([f.ctypes.data for f in feats], [f.shape for f in feats], masks.ctypes.data, masks.shape,
      [o.ctypes.data for o in outs], "float16", masks.dtype, stream=1234, workspace=ws.ctypes.data, plan=plan)
    assert fake.images == [b"\x7fELF"]  # a cubin for sm_87, loaded once
    assert fake.calls[0] == ("memset", plan.ticket_bytes // 4, 1234)
    assert fake.calls[1] == ("launch", "masked_roi_pool_f16_u8_q16", plan.grid, 256, 1234)
    assert_pooled_close(outs, masked_roi_pool_numpy(feats, masks), feats, TOL_F16_OUT, "launcher")
    assert k.loaded_image() == "cubin sm_87" and len(fake.images) == 1
    with pytest.raises(ValueError):
        k([f.ctypes.data for f in feats], [f.shape for f in feats], masks.ctypes.data, (2, 8, 32, 32),
          [o.ctypes.data for o in outs], "float16", "uint8", plan=plan)


# ------------------------------------------------------------------------------------------------
# GPU

def _cuda_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False): the kernel is only compiled and emulated here"
    return _nvrtc_available()


gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(_cuda_reason() is not None, reason=str(_cuda_reason()))


def _gpu_run(feats_np, masks_np, fdtype, **kw):
    from seagull_edge.kernels.torch_op import masked_roi_pool_cuda

    feats = [torch.from_numpy(f).cuda().to(fdtype) for f in feats_np]
    masks = torch.from_numpy(masks_np).cuda()
    outs = [torch.full((f.shape[0], masks.shape[1], f.shape[1]), float("nan"), dtype=fdtype, device="cuda")
            for f in feats]  # poisoned: an unwritten element fails
    masked_roi_pool_cuda(feats, masks, out=outs, **kw)
    torch.cuda.synchronize()
    return [o.float().cpu().numpy() for o in outs]


@gpu
@needs_gpu
@pytest.mark.parametrize("fdtype", ["float32", "float16"])
@pytest.mark.parametrize("mdtype", ["uint8", "float32"])
@pytest.mark.parametrize("msize", MASK_SIZES + [(13, 17)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("levels", [CONVNEXT_L, EDGE], ids=["convnext_l", "edge"])
def test_gpu_kernel_matches_reference(rng, fdtype, mdtype, msize, levels):
    B, Q = 2, len(PATTERNS) + 3
    tdt = getattr(torch, fdtype)
    feats = [f.astype(np.float16 if fdtype == "float16" else np.float32)
             for f in make_feats(rng, B, [(c // 4, h) for c, h in levels])]
    masks = as_mask_dtype(rng, make_patterns(rng, B, Q, *msize), mdtype)
    want = masked_roi_pool_numpy(feats, masks)
    tol = TOL_F32 if fdtype == "float32" else TOL_F16_OUT
    for kw in ({}, {"max_splits": 1}, {"tq": 4}, {"tq": 8}, {"split_px": 256}):
        got = _gpu_run(feats, masks, tdt, **kw)
        assert_pooled_close(got, want, feats, tol, f"{kw}")


@gpu
@needs_gpu
@pytest.mark.parametrize("Q", [1, 4, 5, 16, 33, 64])
@pytest.mark.parametrize("fdtype", ["float32", "float16"])
def test_gpu_convnext_large_shapes(rng, Q, fdtype):
    feats = [f.astype(np.float16 if fdtype == "float16" else np.float32) for f in make_feats(rng, 1, CONVNEXT_L)]
    masks = as_mask_dtype(rng, make_patterns(rng, 1, Q, 512, 512), "uint8")
    got = _gpu_run(feats, masks, getattr(torch, fdtype))
    want = masked_roi_pool_numpy(feats, masks)
    assert_pooled_close(got, want, feats, TOL_F32 if fdtype == "float32" else TOL_F16_OUT, f"Q={Q}")


@gpu
@needs_gpu
def test_gpu_matches_stock_ops_and_is_deterministic(rng):
    from seagull_edge.kernels.torch_op import masked_roi_pool_cuda
    from seagull_edge.kernels.reference import masked_roi_pool_torch

    feats = [torch.from_numpy(f).cuda() for f in make_feats(rng, 2, CONVNEXT_L)]
    masks = torch.from_numpy(make_patterns(rng, 2, 24, 512, 512)).cuda()
    a = masked_roi_pool_cuda(feats, masks)
    b = masked_roi_pool_cuda(feats, masks)
    stock = masked_roi_pool_torch(feats, masks)
    for x, y, s in zip(a, b, stock):
        assert torch.equal(x, y)  # split reductions run in a fixed order
        torch.testing.assert_close(x, s, rtol=1e-4, atol=1e-5)


@needs_nvrtc
def test_compiling_leaves_the_interpreter_intact(kcache):
    """NVRTC writes its log into the buffer it is given; with an empty log that buffer has one
    byte, and a one-byte ``bytes`` is an interned singleton: writing into it once corrupted
    ``b" "`` for the whole process (torch.save then wrote unreadable files). Keep it fixed."""
    import io

    import torch

    knv.compile_ptx("sm_90", source=knv.kernel_source() + "\n// fresh cache key\n")
    assert bytes([32])[0] == 32 and b" "[0] == 32  # the cached one-byte objects keep their value
    buf = io.BytesIO()
    x = torch.randn(8, 4)
    torch.save({"a": x}, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=True)["a"], x)
