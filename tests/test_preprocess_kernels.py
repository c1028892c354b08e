"""GPU frame preprocessing (seagull_edge/kernels/preprocess.cu + preprocess.py): tables, reference,
NVRTC build, the kernels' C++ on a CPU, and the real kernels on a GPU.

Runs everywhere:
* the tables against OpenCV itself (its weights, read off by resizing an identity image: exact)
  and against ``resize_weights`` (the documented rule; differs by OpenCV's rounding, bounded);
* the float32 reference (``frame_reference`` / ``crops_reference`` / ``roi_masks_reference``)
  against the CPU path (``preprocess_image`` / ``preprocess_crops`` / ``preprocess_masks``);
* NVRTC compilation to PTX for sm_87 (Orin) and sm_90 (H100), no GPU needed;
* the kernels' CUDA C++ compiled with g++ against a tiny CUDA emulation (every block and thread
  of the grid run in turn; the kernels use no shared memory and no barriers) and launched with
  the packed parameters of preprocess.py: bit-for-bit the reference, and so within the stated
  tolerance of the CPU path; also through :class:`PreprocessKernels` with an emulated driver.
GPU (``@pytest.mark.gpu``, skipped without one): the real kernels through PreprocessKernels and
cuda-python alone (no torch), bit-for-bit the reference.

Tolerances, in normalised units (the model's input; one grey level is 1 / (255 * std) ~ 0.015):
* against OpenCV's generic resize (IPP off: the code a Jetson's OpenCV runs): 2e-6. The tables
  carry OpenCV's own float32 weights and the sums run in its order, so what is left is float32
  rounding inside OpenCV (an integer-factor area summed before it is scaled, fused multiply-adds
  in its SIMD): a few ulps of a 0..255 value (ulp(255) = 1.5e-5 grey levels, 2.2e-7 normalised);
  up to 7.2e-7 was seen on 300 random crops.
* against OpenCV with IPP (x86 wheels' default): 1e-4. IPP's bilinear weights come from the
  source coordinate in double, OpenCV's own code rounds it to float32 first: a weight differs by
  up to half an ulp of the coordinate (< D = 512 here: 1.5e-5), so a pixel by up to
  255 * 1.5e-5 grey levels = 5.8e-5 normalised (std >= 0.26). Up to 1.5e-5 was seen.
* masks: exact (nearest source pixels are integers; the index formula is OpenCV's).
"""

from __future__ import annotations

import ctypes
import re

import cv2
import numpy as np
import pytest
from conftest import build_cuda_emulation

from seagull_edge.kernels import nvrtc as knv
from seagull_edge.kernels import preprocess as kp
from seagull_edge.runtime import image as imops
from seagull_edge.runtime.config import CLIP_MEAN, CLIP_STD

TOL_OPENCV = 2e-6      # vs cv2's generic code (IPP off); see the module doc
TOL_OPENCV_IPP = 1e-4  # vs cv2 with IPP (x86 default)
MEAN, STD = CLIP_MEAN, CLIP_STD


@pytest.fixture()
def no_ipp():
    """OpenCV's generic resize code (what a Jetson's OpenCV runs), restored afterwards."""
    old = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    yield
    cv2.ipp.setUseIPP(old)


def random_boxes(rng, h, w, n):
    out = []
    for _ in range(n):
        bw, bh = int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1))
        out.append((int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1)), bw, bh))
    return out


# Boxes that matter: 1-pixel boxes (the corners and the middle), 1-pixel-wide strips, boxes on
# every border, the whole frame, an odd box enlarged and one shrunk by an integer factor.
def edge_boxes(h, w):
    boxes = [(0, 0, 1, 1), (w - 1, h - 1, 1, 1), (w // 2, h // 2, 1, 1), (0, 0, 1, h), (0, h - 1, w, 1),
             (max(0, w - 3), 0, min(3, w), h), (0, 0, w, h), (0, 0, min(w, 96 * 2), min(h, 96 * 3))]
    if w >= 8 and h >= 7:
        boxes.append((1, 2, 7, 5))
    return boxes


# ------------------------------------------------------------------------------------------------
# tables

def opencv_weights(src: int, dst: int) -> np.ndarray:
    """OpenCV's [dst, src] weights of one axis, read off exactly: resizing the width of an identity
    image [src, src] gives out[j, i] = 0 + w_ij * 1 (every other term is w * 0)."""
    eye = np.eye(src, dtype=np.float32)
    if src == 1:  # a 1-pixel-high image takes another code path; use two identical rows
        eye = np.ones((2, 1), np.float32)
    interp = cv2.INTER_AREA if dst < src else cv2.INTER_LINEAR
    return cv2.resize(eye, (dst, eye.shape[0]), interpolation=interp)[:src].T.astype(np.float64)


SIZE_PAIRS = [(451, 256), (300, 256), (1920, 512), (1080, 512), (1000, 999), (999, 1000), (17, 5), (37, 96),
              (53, 96), (1, 96), (2, 3), (3, 224), (300, 301), (513, 512), (1024, 256), (7, 7), (96, 96), (97, 1)]


@pytest.mark.parametrize("src,dst", SIZE_PAIRS)
def test_tables_are_opencv_weights(no_ipp, src, dst):
    t = kp.axis_tables(src, dst)
    got = t.dense(src)
    if src == dst:
        np.testing.assert_array_equal(got, np.eye(src))
        return
    np.testing.assert_array_equal(got, opencv_weights(src, dst))  # bit for bit
    assert np.diff(t.offset).min() >= 1 and t.weight.dtype == np.float32


@pytest.mark.parametrize("src,dst", SIZE_PAIRS)
def test_tables_follow_resize_weights(src, dst):
    """The documented rule: OpenCV's weights differ from the float64 formula only by float32
    rounding (bilinear: of the source coordinate, < 2^-24 * dst * 2 per weight), and area drops
    partial pixels covered by at most 0.001 of a pixel."""
    got = kp.axis_tables(src, dst).dense(src)
    want = imops.resize_weights(src, dst)
    bound = 1e-3 / (src / dst) + 1e-6 if src > dst else 2.0 ** -24 * 2 * max(dst, 1) + 1e-7
    assert np.abs(got - want).max() <= bound
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-3 if src > dst else 1e-6)


def test_tables_of_many_rois_at_once_equal_one_by_one():
    sides, origins = [1, 5, 96, 97, 300, 1000], [0, 3, 10, 0, 7, 11]
    t = kp.axis_tables(sides, 96, origins)
    assert t.rows == 96 * len(sides)
    for q, (n, o) in enumerate(zip(sides, origins)):
        one = kp.axis_tables(n, 96)
        np.testing.assert_array_equal(t.dense(n, q * 96, (q + 1) * 96, origin=o), one.dense(n))
        assert (t.first[q * 96:(q + 1) * 96] - o == one.first).all()


@pytest.mark.parametrize("ipp", [False, True])
def test_nearest_index_is_opencvs(ipp):
    """Every source size 1..700 to the usual sizes, with and without IPP: OpenCV's pixels."""
    old = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(ipp)
    try:
        for src in range(1, 701):
            img = np.tile(np.arange(src, dtype=np.float32), (2, 1))
            for dst in (96, 224, 256, 333, 384, 512):
                want = cv2.resize(img, (dst, 2), interpolation=cv2.INTER_NEAREST)[0].astype(np.int64)
                np.testing.assert_array_equal(kp.nearest_index(src, dst), want, err_msg=f"{src} -> {dst}")
    finally:
        cv2.ipp.setUseIPP(old)
    # why 1 / (dst / src) and not src / dst: the latter picks pixel 27 here, OpenCV 26
    assert kp.nearest_index(36, 224)[168] == 26 and int(np.floor(168 * (36 / 224))) == 27


def test_roi_upload_layout():
    masks = [np.zeros((9, 13), bool) for _ in range(3)]
    boxes = [(0, 0, 1, 1), (2, 3, 5, 4), (12, 8, 1, 1)]
    masks[0][0, 0] = True
    masks[1][3:7, 2:7] = np.arange(20).reshape(4, 5) % 3 == 0
    masks[2][8, 12] = True
    up = kp.RoiUpload(boxes, 32)
    assert all(off % 16 == 0 for off in up.offsets.values())
    names = list(up.offsets)
    for a, b in zip(names, names[1:]):  # sections in order and not overlapping
        size = up.arrays[a].nbytes if a in up.arrays else 0
        assert up.offsets[a] + size <= up.offsets[b]
    buf = np.full(up.nbytes, 0xAB, np.uint8)
    up.write(buf, masks)
    packed = buf[up.offsets["masks"]:]
    assert up.mask_offset.tolist() == [0, 1, 21]
    np.testing.assert_array_equal(packed[1:21].reshape(4, 5), masks[1][3:7, 2:7])
    assert packed[0] == 1 and packed[21] == 1
    got = buf[up.offsets["boxes"]:up.offsets["boxes"] + 48].view(np.int32).reshape(3, 4)
    np.testing.assert_array_equal(got, boxes)
    assert up.pointers(1000)["masks"] == 1000 + up.offsets["masks"]


# ------------------------------------------------------------------------------------------------
# the reference against the CPU path

FRAMES = [(300, 451), (37, 29), (1, 1), (2, 3), (480, 640), (513, 1025), (97, 61)]


@pytest.mark.parametrize("shape", FRAMES)
@pytest.mark.parametrize("size", [96, 256])
def test_frame_reference_is_the_cpu_path(no_ipp, rng, shape, size):
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    got = kp.frame_reference(rgb, size, MEAN, STD)
    want = imops.preprocess_image(rgb, size, MEAN, STD)
    assert got.shape == want.shape == (1, 3, size, size) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=TOL_OPENCV, rtol=0)


def test_frame_reference_with_ipp(rng):
    """x86 OpenCV with IPP (the default here): bilinear weights in double, bound in the doc."""
    for shape in FRAMES:
        rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        np.testing.assert_allclose(kp.frame_reference(rgb, 256, MEAN, STD),
                                   imops.preprocess_image(rgb, 256, MEAN, STD), atol=TOL_OPENCV_IPP, rtol=0)


@pytest.mark.parametrize("shape", [(300, 451), (61, 97)])
def test_crops_reference_is_the_cpu_path(no_ipp, rng, shape):
    h, w = shape
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = edge_boxes(h, w) + random_boxes(rng, h, w, 20)
    got = kp.crops_reference(rgb, boxes, 96, MEAN, STD)
    want = imops.preprocess_crops(rgb, boxes, 96, MEAN, STD)
    np.testing.assert_allclose(got, want, atol=TOL_OPENCV, rtol=0)
    one = got[0]  # a 1-pixel box is that pixel everywhere
    np.testing.assert_array_equal(one, np.broadcast_to(one[:, :1, :1], one.shape))


def test_masks_reference_is_the_cpu_path(rng):
    for h, w in [(300, 451), (37, 29), (36, 36), (1, 1), (5, 700)]:
        masks = np.zeros((6, h, w), bool)
        masks[0, h // 4: h // 2 + 1, w // 5: w // 2 + 1] = True
        masks[1] = rng.random((h, w)) > 0.7
        masks[1, 0, w - 1] = True  # never empty (1 x 1 frames)
        masks[2, h // 2, w // 2] = True
        masks[3, :, : max(1, w // 9)] = True
        masks[4, h - 1, w - 1] = True
        masks[5] = True
        boxes = [imops.mask_bbox(m) for m in masks]
        for size in (96, 224):
            got = kp.roi_masks_reference(list(masks), boxes, size)
            np.testing.assert_array_equal(got, imops.preprocess_masks(masks, size))


# ------------------------------------------------------------------------------------------------
# NVRTC (compiles on the CPU; no GPU needed)

def _nvrtc_reason() -> str | None:
    try:
        knv.nvrtc_version()
    except knv.KernelError as exc:
        return str(exc)
    return None


needs_nvrtc = pytest.mark.skipif(_nvrtc_reason() is not None, reason=f"NVRTC not available: {_nvrtc_reason()}")


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_87", "sm_90"])
def test_nvrtc_ptx(kcache, arch):
    ptx = knv.compile_ptx(arch, source=kp.kernel_source(), fp16_header="never", name="preprocess.cu").decode()
    assert set(re.findall(r"\.entry\s+(\w+)\s*\(", ptx)) == set(kp.ENTRY_NAMES)
    assert re.search(rf"^\.target\s+{arch}\b", ptx, re.M)
    assert "ld.local" not in ptx and "st.local" not in ptx
    assert "cvt.rn.f16.f32" in ptx
    # __fmul_rn / __fadd_rn: no multiply-add is fused, so the GPU rounds as the reference does
    assert not re.search(r"\bfma\.rn\.f32\b", ptx)


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_87", "sm_90"])
def test_ptxas_no_spills(arch):
    report = knv.ptxas_report(arch, source=kp.kernel_source(), fp16_header="never")
    assert set(report) == set(kp.ENTRY_NAMES)
    for name, info in report.items():
        assert info["spill_stores"] == 0 and info["stack"] == 0 and info["smem"] == 0, (name, info)


@needs_nvrtc
def test_nvrtc_cubin(kcache):
    cubin = knv.compile_cubin("sm_87", source=kp.kernel_source(), fp16_header="never", name="preprocess.cu")
    assert cubin[:4] == b"\x7fELF"
    assert all(name.encode() in cubin for name in kp.ENTRY_NAMES)


# ------------------------------------------------------------------------------------------------
# The kernels' C++ on the CPU

EMU_HARNESS = r"""
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

struct emu_dim3 { unsigned x = 0, y = 0, z = 0; };
static emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
// -ffp-contract=off: each of these is one IEEE float32 operation, as on the GPU
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }

#define SEAGULL_PREP_CUSTOM_HALF 1
static inline unsigned short prep_f2h(float f) {  // round to nearest even, as cvt.rn.f16.f32
    _Float16 h = (_Float16)f; unsigned short b; std::memcpy(&b, &h, 2); return b;
}

#include "preprocess.cu"

// Every block of the grid and every thread of a block in turn: these kernels share nothing
// between threads, so any order is a valid schedule.
template <typename P>
static void run(void (*fn)(const P), const void* params, int gx, int gy, int threads) {
    P p;
    std::memcpy(&p, params, sizeof p);
    gridDim.x = gx; gridDim.y = gy; blockDim.x = threads;
    for (int by = 0; by < gy; ++by)
        for (int bx = 0; bx < gx; ++bx)
            for (int t = 0; t < threads; ++t) {
                blockIdx.x = bx; blockIdx.y = by; threadIdx.x = t;
                fn(p);
            }
}

extern "C" int emu_launch(const char* name, const void* params, int gx, int gy, int threads) {
    std::string n(name);
    if (n == "prep_resample_f32") run(prep_resample_f32, params, gx, gy, threads);
    else if (n == "prep_resample_f16") run(prep_resample_f16, params, gx, gy, threads);
    else if (n == "prep_masks_f32") run(prep_masks_f32, params, gx, gy, threads);
    else if (n == "prep_masks_f16") run(prep_masks_f16, params, gx, gy, threads);
    else return -1;
    return 0;
}

extern "C" long emu_layout(int what) {
    switch (what) {
        case 0: return sizeof(PrepResampleParams);
        case 1: return offsetof(PrepResampleParams, src_row_bytes);
        case 2: return offsetof(PrepResampleParams, scale);
        case 3: return offsetof(PrepResampleParams, stdv);
        case 4: return sizeof(PrepMaskParams);
        case 5: return offsetof(PrepMaskParams, out);
        case 6: return offsetof(PrepMaskParams, S);
        default: return -1;
    }
}
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    lib = build_cuda_emulation(tmp_path_factory.mktemp("prep_emu"), EMU_HARNESS, kp.KERNEL_SOURCE_PATH.parent,
                               ("-O2",), "the kernels")
    lib.emu_launch.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.emu_layout.restype = ctypes.c_long
    return lib


def test_emu_param_layout_matches_ctypes(emu):
    R, M = kp._ResampleParams, kp._MaskParams
    assert emu.emu_layout(0) == ctypes.sizeof(R)
    assert emu.emu_layout(1) == R.src_row_bytes.offset
    assert emu.emu_layout(2) == R.scale.offset
    assert emu.emu_layout(3) == R.stdv.offset
    assert emu.emu_layout(4) == ctypes.sizeof(M)
    assert emu.emu_layout(5) == M.out.offset
    assert emu.emu_layout(6) == M.S.offset


def _poisoned(shape, dtype):
    return np.full(shape, np.nan, dtype)  # an element the kernel does not write stays NaN


def emu_resample(lib, rgb, x, y, size, rois, dtype):
    rgb = np.ascontiguousarray(rgb)
    out = _poisoned((rois, 3, size, size), dtype)
    keep = [x.first, x.offset, x.weight, y.first, y.offset, y.weight]
    p = kp.pack_resample_params(src=rgb.ctypes.data, width=rgb.shape[1], out=out.ctypes.data,
                                x=[a.ctypes.data for a in keep[:3]], y=[a.ctypes.data for a in keep[3:]],
                                size=size, rois=rois, mean=MEAN, std=STD)
    gx, gy = kp.grid(size, rois)
    name = f"prep_resample_{'f32' if np.dtype(dtype) == np.float32 else 'f16'}"
    assert lib.emu_launch(name.encode(), ctypes.addressof(p), gx, gy, kp.THREADS) == 0
    return out


def emu_masks(lib, masks, boxes, size, dtype):
    up = kp.RoiUpload(boxes, size)
    buf = np.zeros(up.nbytes, np.uint8)
    up.write(buf, masks)
    h, w = masks[0].shape
    fx, fy = kp.nearest_index(w, size), kp.nearest_index(h, size)
    ptr = up.pointers(buf.ctypes.data)
    out = _poisoned((len(boxes), size, size), dtype)
    p = kp.pack_mask_params(masks=ptr["masks"], mask_offset=ptr["mask_offset"], boxes=ptr["boxes"],
                            x_index=fx.ctypes.data, y_index=fy.ctypes.data, out=out.ctypes.data, size=size,
                            rois=len(boxes))
    gx, gy = kp.grid(size, len(boxes))
    name = f"prep_masks_{'f32' if np.dtype(dtype) == np.float32 else 'f16'}"
    assert lib.emu_launch(name.encode(), ctypes.addressof(p), gx, gy, kp.THREADS) == 0
    return out


@pytest.mark.parametrize("shape,size", [((300, 451), 96), ((37, 29), 96), ((61, 97), 40), ((1, 1), 16),
                                        ((2, 3), 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_emu_frame(emu, no_ipp, rng, shape, size, dtype):
    """The image: shrinking (451 -> 96), enlarging (29 -> 96), both at odd sizes, 1 x 1, a grid
    row that is not full (17 * 17 = 289 = 256 + 33)."""
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    t = kp.frame_tables(*shape, size)
    got = emu_resample(emu, rgb, t.x, t.y, size, 1, dtype)
    want = kp.frame_reference(rgb, size, MEAN, STD, dtype)
    np.testing.assert_array_equal(got, want)  # bit for bit: the same float32 operations
    cpu = imops.preprocess_image(rgb, size, MEAN, STD)
    if dtype == np.float32:
        np.testing.assert_allclose(got, cpu, atol=TOL_OPENCV, rtol=0)
    else:  # one fp16 rounding of values within 2.7 of 0: half an ulp of 2 is 2^-10
        np.testing.assert_allclose(got.astype(np.float32), cpu, atol=2.0 ** -10 + TOL_OPENCV, rtol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_emu_crops(emu, no_ipp, rng, dtype):
    h, w = 61, 97
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = edge_boxes(h, w) + random_boxes(rng, h, w, 6)
    up = kp.RoiUpload(boxes, 48)
    got = emu_resample(emu, rgb, up.x, up.y, 48, len(boxes), dtype)
    np.testing.assert_array_equal(got, kp.crops_reference(rgb, boxes, 48, MEAN, STD, dtype))
    cpu = imops.preprocess_crops(rgb, boxes, 48, MEAN, STD)
    tol = TOL_OPENCV if dtype == np.float32 else 2.0 ** -10 + TOL_OPENCV
    np.testing.assert_allclose(got.astype(np.float32), cpu, atol=tol, rtol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_emu_masks(emu, rng, dtype):
    h, w = 37, 53
    masks = np.zeros((5, h, w), bool)
    masks[0, 0, 0] = True                     # a 1-pixel mask in the corner
    masks[1, h - 1, :] = True                 # the last row
    masks[2] = rng.random((h, w)) > 0.6       # scattered, box near the whole frame
    masks[3, 10:20, 30:53] = rng.random((10, 23)) > 0.3  # at the right border
    masks[4] = True
    boxes = [imops.mask_bbox(m) for m in masks]
    for size in (16, 96):
        got = emu_masks(emu, list(masks), boxes, size, dtype)
        np.testing.assert_array_equal(got, imops.preprocess_masks(masks, size).astype(dtype))


class _FakeDriver:
    """Just enough of cuda.bindings.driver for PreprocessKernels, the emulated kernels as
    cuLaunchKernel: the launcher's own code (module load, entry choice, grid, packing) runs."""

    class CUresult:
        CUDA_SUCCESS = 0

    class CUdevice_attribute:
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = "major"
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = "minor"

    CUstream = staticmethod(int)

    def __init__(self, lib):
        self.lib, self.calls, self.images = lib, [], []

    def cuInit(self, flags):
        return (0,)

    def cuCtxGetCurrent(self):
        return (0, 0xC0FFEE)

    def cuCtxGetDevice(self):
        return (0, 0)

    def cuDeviceGetAttribute(self, attr, dev):
        return (0, {"major": 8, "minor": 7}[attr])

    def cuModuleLoadData(self, image):
        self.images.append(bytes(image[:4]))
        return (0, "module")

    def cuModuleGetFunction(self, module, name):
        return (0, name.decode())

    def cuLaunchKernel(self, func, gx, gy, gz, bx, by, bz, shmem, stream, kernel_params, extra):
        assert (gz, by, bz, shmem, extra) == (1, 1, 1, 0, 0)
        params = ctypes.c_void_p.from_address(kernel_params).value
        self.calls.append((func, gx, gy, bx, stream))
        assert self.lib.emu_launch(func.encode(), params, gx, gy, bx) == 0
        return (0,)


@needs_nvrtc
def test_launcher_with_emulated_driver(emu, kcache, no_ipp, rng, monkeypatch):
    fake = _FakeDriver(emu)
    monkeypatch.setattr(knv, "_driver", lambda: fake)
    h, w, S, C = 45, 70, 64, 32
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    masks = np.zeros((3, h, w), bool)
    masks[0, 5:20, 7:30] = True
    masks[1] = rng.random((h, w)) > 0.8
    masks[2, h - 1, w - 1] = True
    boxes = [imops.mask_bbox(m) for m in masks]
    k = kp.PreprocessKernels()
    ft = kp.frame_tables(h, w, S)
    image = _poisoned((1, 3, S, S), np.float16)
    k.resample(src=rgb.ctypes.data, height=h, width=w,
               x=[a.ctypes.data for a in (ft.x.first, ft.x.offset, ft.x.weight)],
               y=[a.ctypes.data for a in (ft.y.first, ft.y.offset, ft.y.weight)], out=image.ctypes.data, size=S,
               rois=1, dtype="float16", mean=MEAN, std=STD, stream=77)
    up = kp.RoiUpload(boxes, C)
    buf = np.zeros(up.nbytes, np.uint8)
    up.write(buf, list(masks))
    ptr = up.pointers(buf.ctypes.data)
    crops, out_m = _poisoned((3, 3, C, C), np.float32), _poisoned((3, S, S), np.float32)
    k.resample(src=rgb.ctypes.data, height=h, width=w, x=[ptr["x_first"], ptr["x_offset"], ptr["x_weight"]],
               y=[ptr["y_first"], ptr["y_offset"], ptr["y_weight"]], out=crops.ctypes.data, size=C, rois=3,
               dtype=np.float32, mean=MEAN, std=STD, stream=77)
    k.masks(masks=ptr["masks"], mask_offset=ptr["mask_offset"], boxes=ptr["boxes"], x_index=ft.x_index.ctypes.data,
            y_index=ft.y_index.ctypes.data, out=out_m.ctypes.data, size=S, rois=3, dtype=np.float32, stream=77)
    assert fake.images == [b"\x7fELF"]  # a cubin for sm_87, loaded once for the three launches
    assert fake.calls == [("prep_resample_f16", 16, 1, 256, 77), ("prep_resample_f32", 4, 3, 256, 77),
                          ("prep_masks_f32", 16, 3, 256, 77)]
    np.testing.assert_array_equal(image, kp.frame_reference(rgb, S, MEAN, STD, np.float16))
    np.testing.assert_array_equal(crops, kp.crops_reference(rgb, boxes, C, MEAN, STD))
    np.testing.assert_array_equal(out_m, imops.preprocess_masks(masks, S))
    assert k.load() == "cubin sm_87"
    with pytest.raises(ValueError, match="float32 or float16"):
        k.masks(masks=0, mask_offset=0, boxes=0, x_index=0, y_index=0, out=0, size=S, rois=1, dtype=np.float64)


# ------------------------------------------------------------------------------------------------
# GPU: the real kernels, with cuda-python alone (the TensorRT path has no torch)

def _gpu_reason() -> str | None:
    reason = _nvrtc_reason()
    if reason:
        return f"NVRTC not available: {reason}"
    try:
        from cuda.bindings import driver

        err, = driver.cuInit(0)
        if err != driver.CUresult.CUDA_SUCCESS:
            return f"no CUDA driver / GPU ({err})"
        err, n = driver.cuDeviceGetCount()
        if err != driver.CUresult.CUDA_SUCCESS or n < 1:
            return "no CUDA GPU"
    except Exception as exc:  # noqa: BLE001 - no driver library at all
        return f"no CUDA driver: {str(exc).splitlines()[0]}"
    return None


gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(_gpu_reason() is not None, reason=str(_gpu_reason()))


class _Gpu:
    """Device memory and copies through the driver API, in the primary context of GPU 0."""

    def __init__(self):
        from cuda.bindings import driver

        self.d = driver
        knv._cu_check(driver.cuInit(0), "cuInit")
        dev = knv._cu_check(driver.cuDeviceGet(0), "cuDeviceGet")
        self.ctx = knv._cu_check(driver.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
        knv._cu_check(driver.cuCtxSetCurrent(self.ctx), "cuCtxSetCurrent")
        self.stream = knv._cu_check(driver.cuStreamCreate(0), "cuStreamCreate")
        self.allocs = []

    def put(self, a: np.ndarray) -> int:
        a = np.ascontiguousarray(a)
        ptr = knv._cu_check(self.d.cuMemAlloc(max(1, a.nbytes)), "cuMemAlloc")
        self.allocs.append(ptr)
        if a.nbytes:
            knv._cu_check(self.d.cuMemcpyHtoD(ptr, a.ctypes.data, a.nbytes), "cuMemcpyHtoD")
        return int(ptr)

    def get(self, ptr: int, shape, dtype) -> np.ndarray:
        knv._cu_check(self.d.cuStreamSynchronize(self.stream), "cuStreamSynchronize")
        out = np.empty(shape, dtype)
        knv._cu_check(self.d.cuMemcpyDtoH(out.ctypes.data, self.d.CUdeviceptr(ptr), out.nbytes), "cuMemcpyDtoH")
        return out

    def close(self):
        for p in self.allocs:
            self.d.cuMemFree(p)
        self.d.cuStreamDestroy(self.stream)


@pytest.fixture()
def cuda_gpu():
    g = _Gpu()
    yield g
    g.close()


@gpu
@needs_gpu
@pytest.mark.parametrize("shape,S,C", [((1080, 1920), 512, 224), ((300, 451), 256, 96), ((37, 29), 96, 48),
                                       ((1, 1), 32, 16)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_gpu_kernels_match_reference(cuda_gpu, kcache, no_ipp, rng, shape, S, C, dtype):
    g, h, w = cuda_gpu, *shape
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    masks = np.zeros((4, h, w), bool)
    masks[0, h // 3: 2 * h // 3 + 1, w // 4: w // 2 + 1] = True
    masks[1] = rng.random((h, w)) > 0.9
    masks[1, 0, 0] = True  # never empty (1 x 1 frames)
    masks[2, h - 1, w - 1] = True
    masks[3] = True
    boxes = [imops.mask_bbox(m) for m in masks] + edge_boxes(h, w)
    masks = list(masks) + [np.ones((h, w), bool)] * len(edge_boxes(h, w))
    k = kp.PreprocessKernels()
    src = g.put(rgb)
    ft = kp.frame_tables(h, w, S)
    tab = {n: g.put(a) for n, a in ft.arrays().items()}
    image = g.put(_poisoned((1, 3, S, S), dtype))
    k.resample(src=src, height=h, width=w, x=[tab["x_first"], tab["x_offset"], tab["x_weight"]],
               y=[tab["y_first"], tab["y_offset"], tab["y_weight"]], out=image, size=S, rois=1, dtype=dtype,
               mean=MEAN, std=STD, stream=int(g.stream))
    got = g.get(image, (1, 3, S, S), dtype)
    np.testing.assert_array_equal(got, kp.frame_reference(rgb, S, MEAN, STD, dtype))
    if dtype == np.float32:
        np.testing.assert_allclose(got, imops.preprocess_image(rgb, S, MEAN, STD), atol=TOL_OPENCV, rtol=0)

    # ROI masks: only the first four are real masks with tight boxes
    up = kp.RoiUpload(boxes, C)
    buf = np.zeros(up.nbytes, np.uint8)
    up.write(buf, masks)
    ptr = up.pointers(g.put(buf))
    crops = g.put(_poisoned((len(boxes), 3, C, C), dtype))
    out_m = g.put(_poisoned((4, S, S), dtype))
    k.resample(src=src, height=h, width=w, x=[ptr["x_first"], ptr["x_offset"], ptr["x_weight"]],
               y=[ptr["y_first"], ptr["y_offset"], ptr["y_weight"]], out=crops, size=C, rois=len(boxes),
               dtype=dtype, mean=MEAN, std=STD, stream=int(g.stream))
    k.masks(masks=ptr["masks"], mask_offset=ptr["mask_offset"], boxes=ptr["boxes"], x_index=tab["x_index"],
            y_index=tab["y_index"], out=out_m, size=S, rois=4, dtype=dtype, stream=int(g.stream))
    got_c = g.get(crops, (len(boxes), 3, C, C), dtype)
    np.testing.assert_array_equal(got_c, kp.crops_reference(rgb, boxes, C, MEAN, STD, dtype))
    got_m = g.get(out_m, (4, S, S), dtype)
    np.testing.assert_array_equal(got_m, imops.preprocess_masks(np.stack(masks[:4]), S).astype(dtype))
    assert k.load().split()[0] in ("cubin", "ptx")
    assert kp.PreprocessKernels.is_device_pointer(src) and not kp.PreprocessKernels.is_device_pointer(rgb.ctypes.data)
