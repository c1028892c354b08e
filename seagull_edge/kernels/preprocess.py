"""Frame preprocessing on the GPU (``preprocess.cu``): tables, a float32 reference, and the launcher.

The TensorRT path (:mod:`seagull_edge.backends.tensorrt`, torch-free, the Jetson path) uploads
the uint8 frame once and makes the encoder's image, the ROI crops and the ROI masks on the GPU,
straight into the engines' input buffers, instead of :mod:`seagull_edge.runtime.image`'s CPU work
and float32 uploads. Three layers, each usable on its own:

* **Tables** (pure numpy, vectorised): :func:`axis_tables` gives the sparse per-axis weights of
  the resize (area when shrinking, bilinear with half-pixel centres when enlarging) for one axis
  of the frame or of all ROI boxes at once; :func:`nearest_index` the masks' nearest source
  pixels; :class:`RoiUpload` lays out one ROI batch (crop tables, boxes, the masks' box pixels)
  in one buffer for a single host-to-device copy.
* **Reference** (numpy, float32): :func:`resample_reference` and :func:`masks_reference` compute
  exactly what the kernels compute (the same float32 operations in the same order, so the CPU
  emulation and the GPU agree with them bit for bit); :func:`frame_reference`,
  :func:`crops_reference` and :func:`roi_masks_reference` are the same at the level of
  ``preprocess_image`` / ``preprocess_crops`` / ``preprocess_masks``.
* **Launch**: :class:`PreprocessKernels` compiles the source with NVRTC
  (:mod:`seagull_edge.kernels.nvrtc`, on-disk cache), loads it in the current CUDA context and
  launches on the caller's stream with raw device pointers (ints).

Numerics. The tables follow OpenCV's own resize code (``resize.cpp``, the generic path the
runtime's ``cv2.resize`` runs on a Jetson), not only the formulas of
:func:`seagull_edge.runtime.image.resize_weights`:

* area (``computeResizeAreaTab``): overlaps computed in double, each weight rounded to float32,
  and a partial pixel covered by 0.001 or less of a pixel is dropped (``resize_weights`` keeps
  it: that differs by up to 0.001 of a pixel value);
* bilinear: the source coordinate ``(i + 0.5) * scale - 0.5`` rounded to float32 before its
  fraction is taken, weights ``1 - f`` and ``f`` in float32 (``resize_weights`` uses float64:
  up to ~1.5e-5 relative on a weight). x86 builds of OpenCV with IPP compute the bilinear
  weights of images at least 2 pixels on both sides in double instead; the tests measure both;
* nearest: ``floor(i * (1 / (dst / src)))`` in double, clamped, as ``resizeNN`` (``floor(i * src
  / dst)`` picks another pixel for some sizes, e.g. 36 -> 224);
* sums in float32 in the CPU path's order: the width first (``h = sum_j wx_j * x_j``, a float32
  row value, as OpenCV stores its intermediate image), then the height, then
  ``(v * float32(1/255) - mean) / std``, every operation rounded separately.

What remains between this and the CPU path is float32 rounding inside OpenCV (it may sum an
integer-factor area in another order or fuse multiply-adds): a few float32 ulps of a 0..255
value, ~1e-6 after normalisation; see tests/test_preprocess_kernels.py for the tolerances.

Nothing in this module imports torch or cuda-python at import time.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from seagull_edge.kernels import nvrtc as knv

__all__ = [
    "KERNEL_SOURCE_PATH", "THREADS", "ENTRY_NAMES", "AxisTables", "axis_tables", "nearest_index",
    "FrameTables", "frame_tables", "layout", "write_arrays", "RoiUpload", "PIXEL_SCALE", "grid",
    "pack_resample_params", "pack_mask_params",
    "resample_reference", "masks_reference", "frame_reference", "crops_reference", "roi_masks_reference",
    "PreprocessKernels", "kernel_source",
]

KERNEL_SOURCE_PATH = Path(__file__).with_name("preprocess.cu")
THREADS = 256  # blockDim.x of every entry point (PREP_THREADS)
ENTRY_NAMES = ("prep_resample_f32", "prep_resample_f16", "prep_masks_f32", "prep_masks_f16")
PIXEL_SCALE = np.float32(1.0 / 255.0)  # the CPU path's normalize_chw scale
_ALIGN = 16  # byte alignment of each section of an upload
_OUT_TAGS = {"float32": "f32", "float16": "f16"}


def kernel_source() -> str:
    """The CUDA source of the preprocessing kernels."""
    return KERNEL_SOURCE_PATH.read_text()


# ------------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True)
class AxisTables:
    """Sparse resize weights of one axis, one row per output pixel (CSR over consecutive pixels).

    Row r (for ROI q and output pixel i, r = q * dst + i) reads the source pixels
    ``first[r] .. first[r] + count - 1`` with the weights ``weight[offset[r] : offset[r + 1]]``,
    ``count = offset[r + 1] - offset[r] >= 1``. ``first`` is absolute (it includes the box's
    origin), so crop rows index the frame directly.

    first: int32 [n]; offset: int32 [n + 1]; weight: float32 [offset[n]].
    """

    first: np.ndarray
    offset: np.ndarray
    weight: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.first)

    def dense(self, src: int, row_begin: int = 0, row_end: int | None = None, origin: int = 0) -> np.ndarray:
        """Rows ``row_begin:row_end`` as a dense float64 [rows, src] matrix over source pixels
        ``origin .. origin + src - 1`` (to compare with ``resize_weights``)."""
        row_end = self.rows if row_end is None else row_end
        out = np.zeros((row_end - row_begin, src), np.float64)
        for i, r in enumerate(range(row_begin, row_end)):
            a, b = int(self.offset[r]), int(self.offset[r + 1])
            cols = int(self.first[r]) - origin + np.arange(b - a)
            out[i, cols] = self.weight[a:b]
        return out


def axis_tables(src: int | Sequence[int] | np.ndarray, dst: int,
                origin: int | Sequence[int] | np.ndarray = 0) -> AxisTables:
    """The weight tables of one axis resized from ``src`` to ``dst`` pixels, for one or many ROIs.

    ``src`` and ``origin`` are ints or int arrays [Q] (box sides and box origins on this axis);
    the rows of ROI q are ``q * dst .. q * dst + dst - 1``. Per ROI: area when shrinking, bilinear
    with half-pixel centres when enlarging, identity when equal, with OpenCV's own weight
    formulas (see the module doc). All ROIs are computed at once, vectorised.
    """
    src_q = np.atleast_1d(np.asarray(src, dtype=np.int64))
    org_q = np.broadcast_to(np.atleast_1d(np.asarray(origin, dtype=np.int64)), src_q.shape)
    if dst < 1 or (src_q < 1).any():
        raise ValueError(f"sizes must be positive, got {src_q.tolist()} -> {dst}")
    n = src_q[:, None].astype(np.float64)                # [Q,1]
    i = np.arange(dst, dtype=np.float64)[None, :]        # [1,D]
    scale = 1.0 / (dst / n)                              # OpenCV: scale_x = 1. / inv_scale_x

    # Both formulas are evaluated for every ROI and np.where keeps the one that applies; the
    # area formula is meaningless (even divides by zero) on enlarged ROIs, hence the errstate.
    # area (computeResizeAreaTab): output i covers [i * scale, (i + 1) * scale) of the input
    with np.errstate(divide="ignore", invalid="ignore"):
        fsx1 = i * scale
        fsx2 = fsx1 + scale
        cell = np.minimum(scale, n - fsx1)
        sx2 = np.minimum(np.floor(fsx2), n - 1)
        sx1 = np.minimum(np.ceil(fsx1), sx2)
        head = (sx1 - fsx1) > 1e-3                       # a partial first pixel, unless a sliver
        tail = (fsx2 - sx2) > 1e-3                       # a partial last pixel, unless a sliver
        a_first = sx1.astype(np.int64) - head
        a_count = head + (sx2 - sx1).astype(np.int64) + tail
        w_head = ((sx1 - fsx1) / cell).astype(np.float32)
        w_mid = (1.0 / cell).astype(np.float32)
        w_tail = (np.minimum(np.minimum(fsx2 - sx2, 1.0), cell) / cell).astype(np.float32)

    # bilinear (resizeGeneric's coefficients): the coordinate is rounded to float32 first
    fx = ((i + 0.5) * scale - 0.5).astype(np.float32)
    sx = np.floor(fx)
    fx = (fx - sx).astype(np.float32)                    # exact: the integer part is removed
    sx = sx.astype(np.int64)
    clamped = (sx < 0) | (sx >= src_q[:, None] - 1)      # an edge: the edge pixel, weight 1
    fx = np.where(clamped, np.float32(0), fx)
    sx = np.clip(sx, 0, src_q[:, None] - 1)
    l_count = np.where(fx == 0, 1, 2)                    # f == 0: 1 * x0 + 0 * x1 is x0 exactly
    w_lo = (np.float32(1) - fx).astype(np.float32)

    shrink = np.broadcast_to((src_q > dst)[:, None], sx.shape)
    enlarge = np.broadcast_to((src_q < dst)[:, None], sx.shape)
    ident = np.broadcast_to(np.arange(dst)[None, :], sx.shape)
    first = np.where(shrink, a_first, np.where(enlarge, sx, ident)).ravel()
    count = np.where(shrink, a_count, np.where(enlarge, l_count, 1)).ravel()
    if (count < 1).any():  # cannot happen for src > dst (each output covers > 1 pixel); kept as a guard
        raise AssertionError("a resize row without taps")

    offset = np.zeros(count.size + 1, np.int64)
    np.cumsum(count, out=offset[1:])
    row = np.repeat(np.arange(count.size), count)        # the row of each weight
    t = np.arange(offset[-1]) - offset[row]              # the tap index within its row

    def per_tap(a: np.ndarray) -> np.ndarray:  # a row's value at each of its taps
        return a.ravel()[row]

    # area: the partial first pixel, full pixels, the partial last pixel (never the same tap:
    # the first partial pixel lies left of sx1 <= sx2, the last one is sx2)
    is_head = (t == 0) & per_tap(head)
    is_tail = (t == count[row] - 1) & per_tap(tail) & ~is_head
    area_w = np.where(is_head, per_tap(w_head), np.where(is_tail, per_tap(w_tail), per_tap(w_mid)))
    lin_w = np.where(t == 0, per_tap(w_lo), per_tap(fx))
    weight = np.where(per_tap(shrink), area_w, np.where(per_tap(enlarge), lin_w, np.float32(1)))
    weight = weight.astype(np.float32)
    first = first + np.repeat(org_q, dst)
    if offset[-1] >= 2 ** 31 or (first + count).max() >= 2 ** 31:
        raise ValueError("resize tables too large for int32 indices")
    return AxisTables(first.astype(np.int32), offset.astype(np.int32), weight)


def nearest_index(src: int, dst: int) -> np.ndarray:
    """int32 [dst]: OpenCV's INTER_NEAREST source pixel of each output pixel,
    ``min(floor(i * (1 / (dst / src))), src - 1)`` in double as ``resizeNN``."""
    if src < 1 or dst < 1:
        raise ValueError(f"sizes must be positive, got {src} -> {dst}")
    index = np.floor(np.arange(dst, dtype=np.float64) * (1.0 / (dst / src)))
    return np.minimum(index, src - 1).astype(np.int32)


@dataclass(frozen=True)
class FrameTables:
    """What a frame size needs, computed once per (height, width, S): the image's resize tables
    (one ROI: the whole frame) and the masks' nearest indices."""

    x: AxisTables
    y: AxisTables
    x_index: np.ndarray  # int32 [S]
    y_index: np.ndarray  # int32 [S]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"x_first": self.x.first, "x_offset": self.x.offset, "x_weight": self.x.weight,
                "y_first": self.y.first, "y_offset": self.y.offset, "y_weight": self.y.weight,
                "x_index": self.x_index, "y_index": self.y_index}


def frame_tables(height: int, width: int, size: int) -> FrameTables:
    """The tables of a [height, width] frame at S = ``size``."""
    return FrameTables(axis_tables(width, size), axis_tables(height, size),
                       nearest_index(width, size), nearest_index(height, size))


def layout(arrays: Mapping[str, np.ndarray | int]) -> tuple[dict[str, int], int]:
    """Byte offsets of named arrays (or byte sizes) packed one after another, each 16-byte
    aligned, and the total size."""
    offsets, pos = {}, 0
    for name, a in arrays.items():
        offsets[name] = pos
        nbytes = int(a) if isinstance(a, (int, np.integer)) else int(a.nbytes)
        pos += -(-nbytes // _ALIGN) * _ALIGN
    return offsets, max(pos, _ALIGN)


def write_arrays(buf: np.ndarray, arrays: dict[str, np.ndarray], offsets: dict[str, int]) -> None:
    """Copy each array into the uint8 buffer ``buf`` at its offset."""
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        buf[offsets[name]:offsets[name] + a.nbytes] = a.reshape(-1).view(np.uint8)


class RoiUpload:
    """One batch of ROIs laid out for a single host-to-device copy.

    Sections (each 16-byte aligned, offsets in ``offsets``): the crop tables of all ROIs
    (``x_first``, ``x_offset``, ``x_weight``, ``y_first``, ``y_offset``, ``y_weight``, see
    :class:`AxisTables`), ``boxes`` int32 [Q,4] (x, y, w, h), ``mask_offset`` int64 [Q] (byte
    offset of ROI q's pixels inside ``masks``) and ``masks``: each mask's box pixels as uint8
    [h, w], one after another. Only the box is sent: a mask is zero outside its tight box.
    """

    def __init__(self, boxes: Sequence[Sequence[int]], crop_size: int) -> None:
        b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        self.boxes = b.astype(np.int32)
        self.q = len(b)
        self.x = axis_tables(b[:, 2], crop_size, b[:, 0])
        self.y = axis_tables(b[:, 3], crop_size, b[:, 1])
        areas = b[:, 2] * b[:, 3]
        self.mask_offset = np.concatenate([[0], np.cumsum(areas)[:-1]]).astype(np.int64)
        self.arrays = {"x_first": self.x.first, "x_offset": self.x.offset, "x_weight": self.x.weight,
                       "y_first": self.y.first, "y_offset": self.y.offset, "y_weight": self.y.weight,
                       "boxes": self.boxes, "mask_offset": self.mask_offset}
        self.offsets, self.nbytes = layout({**self.arrays, "masks": int(areas.sum())})

    def write(self, buf: np.ndarray, masks: Sequence[np.ndarray | None]) -> None:
        """Fill ``buf`` (uint8, at least ``nbytes``) with the tables and each bool/uint8 [H,W]
        mask's box pixels (read in place: one copy, no temporary of the full mask); a None mask
        is its box's rectangle (all ones)."""
        write_arrays(buf, self.arrays, self.offsets)
        base = self.offsets["masks"]
        for (x, y, w, h), off, m in zip(self.boxes.tolist(), self.mask_offset.tolist(), masks):
            dst = buf[base + off: base + off + w * h].reshape(h, w)
            if m is None:
                dst.fill(1)
                continue
            src = m[y:y + h, x:x + w]
            np.copyto(dst, src.view(np.uint8) if src.dtype == np.bool_ else src, casting="unsafe")

    def pointers(self, device_base: int) -> dict[str, int]:
        """Device address of each section once the buffer is at ``device_base``."""
        return {name: int(device_base) + off for name, off in self.offsets.items()}


# ------------------------------------------------------------------------------------------------
# Reference: exactly what the kernels compute


def _padded(t: AxisTables) -> tuple[np.ndarray, np.ndarray]:
    """Dense [n, T] taps (index, weight) of a table; missing taps repeat the first pixel with
    weight 0, which adds exactly +0 to a finite sum."""
    count = np.diff(t.offset.astype(np.int64))
    k = np.arange(max(1, int(count.max(initial=1))))
    valid = k[None, :] < count[:, None]
    kk = np.where(valid, k[None, :], 0)
    index = t.first.astype(np.int64)[:, None] + kk
    weight = np.where(valid, t.weight[t.offset[:-1].astype(np.int64)[:, None] + kk], np.float32(0))
    return index, weight.astype(np.float32)


def resample_reference(frame: np.ndarray, x: AxisTables, y: AxisTables, size: int, rois: int,
                       mean: Sequence[float], std: Sequence[float], dtype: Any = np.float32) -> np.ndarray:
    """``prep_resample``: frame uint8 [H,W,3] + tables of ``rois`` ROIs -> [Q,3,D,D] of ``dtype``.

    Horizontal sums per source row in float32 (taps ascending, from 0), then the vertical sum of
    those row values, then ``(v * float32(1/255) - mean) / std``; each numpy float32 operation is
    rounded on its own, as the kernel's ``__fmul_rn`` / ``__fadd_rn`` / ``__fsub_rn`` /
    ``__fdiv_rn``.
    """
    D, Q = int(size), int(rois)
    xi, xw = _padded(x)
    yi, yw = _padded(y)
    xi, xw = xi.reshape(Q, D, -1), xw.reshape(Q, D, -1)
    yi, yw = yi.reshape(Q, D, -1), yw.reshape(Q, D, -1)
    acc = np.zeros((Q, D, D, 3), np.float32)
    h = np.empty_like(acc)
    prod = np.empty_like(acc)
    for k in range(yi.shape[2]):
        rows = yi[:, :, k]
        h.fill(0)
        for j in range(xi.shape[2]):
            px = frame[rows[:, :, None], xi[:, None, :, j]]                     # [Q,oy,ox,3] uint8
            np.multiply(xw[:, None, :, j, None], px.astype(np.float32), out=prod)
            np.add(h, prod, out=h)
        np.multiply(yw[:, :, k, None, None], h, out=prod)
        np.add(acc, prod, out=acc)
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    out = (acc * PIXEL_SCALE - m) / s
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)).astype(dtype)


def masks_reference(packed: np.ndarray, mask_offset: np.ndarray, boxes: np.ndarray, x_index: np.ndarray,
                    y_index: np.ndarray, size: int, dtype: Any = np.float32) -> np.ndarray:
    """``prep_masks``: the packed box pixels of Q masks -> 0/1 [Q,S,S] of ``dtype``."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    out = np.zeros((len(boxes), size, size), dtype)
    for q, ((x, y, w, h), off) in enumerate(zip(boxes.tolist(), np.asarray(mask_offset).tolist())):
        m = np.asarray(packed[off:off + w * h]).reshape(h, w)
        dx = x_index.astype(np.int64) - x
        dy = y_index.astype(np.int64) - y
        cols, rows = (dx >= 0) & (dx < w), (dy >= 0) & (dy < h)
        out[q][np.ix_(rows, cols)] = m[np.ix_(dy[rows], dx[cols])] != 0
    return out


def frame_reference(rgb: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float],
                    dtype: Any = np.float32) -> np.ndarray:
    """The kernels' ``preprocess_image``: RGB uint8 [H,W,3] -> [1,3,S,S]."""
    t = frame_tables(rgb.shape[0], rgb.shape[1], size)
    return resample_reference(rgb, t.x, t.y, size, 1, mean, std, dtype)


def crops_reference(rgb: np.ndarray, boxes: Sequence[Sequence[int]], size: int, mean: Sequence[float],
                    std: Sequence[float], dtype: Any = np.float32) -> np.ndarray:
    """The kernels' ``preprocess_crops``: RGB uint8 [H,W,3] + Q boxes (x, y, w, h) -> [Q,3,C,C]."""
    up = RoiUpload(boxes, size)
    return resample_reference(rgb, up.x, up.y, size, up.q, mean, std, dtype)


def roi_masks_reference(masks: Sequence[np.ndarray], boxes: Sequence[Sequence[int]], size: int,
                        dtype: Any = np.float32) -> np.ndarray:
    """The kernels' ``preprocess_masks``: Q bool [H,W] masks and their tight boxes -> 0/1 [Q,S,S]."""
    up = RoiUpload(boxes, size)  # size only matters for the crop tables, unused here
    buf = np.zeros(up.nbytes, np.uint8)
    up.write(buf, masks)
    h, w = masks[0].shape[:2]
    packed = buf[up.offsets["masks"]:]
    return masks_reference(packed, up.mask_offset, up.boxes, nearest_index(w, size), nearest_index(h, size),
                           size, dtype)


# ------------------------------------------------------------------------------------------------
# Kernel parameters (host mirrors of PrepResampleParams / PrepMaskParams)


class _ResampleParams(ctypes.Structure):
    _fields_ = [
        ("src", ctypes.c_uint64), ("out", ctypes.c_uint64),
        ("x_first", ctypes.c_uint64), ("x_offset", ctypes.c_uint64), ("x_weight", ctypes.c_uint64),
        ("y_first", ctypes.c_uint64), ("y_offset", ctypes.c_uint64), ("y_weight", ctypes.c_uint64),
        ("src_row_bytes", ctypes.c_int32), ("D", ctypes.c_int32), ("Q", ctypes.c_int32),
        ("scale", ctypes.c_float), ("mean", ctypes.c_float * 3), ("stdv", ctypes.c_float * 3),
    ]


class _MaskParams(ctypes.Structure):
    _fields_ = [
        ("masks", ctypes.c_uint64), ("mask_offset", ctypes.c_uint64), ("boxes", ctypes.c_uint64),
        ("x_index", ctypes.c_uint64), ("y_index", ctypes.c_uint64), ("out", ctypes.c_uint64),
        ("S", ctypes.c_int32), ("Q", ctypes.c_int32),
    ]


assert ctypes.sizeof(_ResampleParams) == 104 and ctypes.sizeof(_MaskParams) == 56


def _out_tag(dtype: Any) -> str:
    name = np.dtype(dtype).name
    if name not in _OUT_TAGS:
        raise ValueError(f"output dtype must be float32 or float16, got {dtype}")
    return _OUT_TAGS[name]


def pack_resample_params(*, src: int, width: int, out: int, x: Sequence[int], y: Sequence[int], size: int,
                         rois: int, mean: Sequence[float], std: Sequence[float]) -> _ResampleParams:
    """``PrepResampleParams`` for a frame ``width`` pixels wide at device address ``src``, tables
    ``x`` / ``y`` = (first, offset, weight) device addresses, output [rois,3,size,size] at ``out``."""
    p = _ResampleParams()
    p.src, p.out = int(src), int(out)
    p.x_first, p.x_offset, p.x_weight = (int(a) for a in x)
    p.y_first, p.y_offset, p.y_weight = (int(a) for a in y)
    p.src_row_bytes, p.D, p.Q = 3 * int(width), int(size), int(rois)
    p.scale = float(PIXEL_SCALE)
    p.mean[:] = [float(np.float32(v)) for v in mean]
    p.stdv[:] = [float(np.float32(v)) for v in std]
    return p


def pack_mask_params(*, masks: int, mask_offset: int, boxes: int, x_index: int, y_index: int, out: int,
                     size: int, rois: int) -> _MaskParams:
    """``PrepMaskParams``: packed box pixels, their offsets and boxes, the nearest indices, the
    output [rois,size,size] (all device addresses)."""
    p = _MaskParams()
    p.masks, p.mask_offset, p.boxes = int(masks), int(mask_offset), int(boxes)
    p.x_index, p.y_index, p.out = int(x_index), int(y_index), int(out)
    p.S, p.Q = int(size), int(rois)
    return p


def grid(size: int, rois: int) -> tuple[int, int]:
    """gridDim (x, y) of both kernels for a size x size output of ``rois`` ROIs."""
    return -(-size * size // THREADS), int(rois)


# ------------------------------------------------------------------------------------------------
# Launch (CUDA driver API)


@dataclass
class _Loaded:
    module: Any
    functions: dict
    image: str  # "cubin sm_87" / "ptx compute_87"


class PreprocessKernels:
    """Launcher of ``preprocess.cu`` on the caller's CUDA stream, with raw device pointers.

    The module is compiled with NVRTC (cached on disk, see :mod:`seagull_edge.kernels.nvrtc`) and
    loaded once per CUDA context, for the current device: a cubin for ``sm_<cc>`` when NVRTC
    supports that architecture, else PTX for the newest supported ``compute_XX <= cc``. A context
    must be current on the calling thread (the CUDA runtime makes its primary context current at
    its first call on a thread; TensorRTEngine has made runtime calls before it launches).
    The same interface is what a host implementation must offer to stand in for it in tests.
    """

    def __init__(self, *, prefer: str = "cubin", cache: bool = True, options: Sequence[str] = ()) -> None:
        if prefer not in ("cubin", "ptx"):
            raise ValueError("prefer must be 'cubin' or 'ptx'")
        self.prefer, self.cache, self.options = prefer, cache, tuple(options)
        self._loaded: dict[int, _Loaded] = {}
        self._lock = threading.Lock()

    def _current(self) -> _Loaded:
        driver = knv._driver()
        knv._cu_check(driver.cuInit(0), "cuInit")
        ctx = int(knv._cu_check(driver.cuCtxGetCurrent(), "cuCtxGetCurrent"))
        if ctx == 0:
            raise knv.CudaDriverError("no current CUDA context on this thread (make a CUDA runtime call first)")
        with self._lock:
            loaded = self._loaded.get(ctx)
            if loaded is None:
                loaded = self._loaded[ctx] = self._load(driver)
        return loaded

    def _load(self, driver: Any) -> _Loaded:
        dev = knv._cu_check(driver.cuCtxGetDevice(), "cuCtxGetDevice")
        attr = driver.CUdevice_attribute
        major = knv._cu_check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev),
                              "cuDeviceGetAttribute")
        minor = knv._cu_check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev),
                              "cuDeviceGetAttribute")
        cc = int(major) * 10 + int(minor)
        archs = knv.supported_archs()
        attempts = [("cubin", cc)] if self.prefer == "cubin" and (not archs or cc in archs) else []
        attempts.append(("ptx", max([a for a in archs if a <= cc], default=cc) if archs else cc))
        errors = []
        source = kernel_source()
        for kind, arch in attempts:
            try:
                compile_fn = knv.compile_cubin if kind == "cubin" else knv.compile_ptx
                image = compile_fn(arch, source=source, options=self.options, fp16_header="never",
                                   cache=self.cache, name="preprocess.cu")
                if kind == "ptx":
                    image += b"\0"
                module = knv._cu_check(driver.cuModuleLoadData(image), f"cuModuleLoadData({kind} {arch})")
            except knv.NvrtcCompileError:
                raise
            except knv.KernelError as exc:
                errors.append(str(exc))
                continue
            functions = {n: knv._cu_check(driver.cuModuleGetFunction(module, n.encode()), f"cuModuleGetFunction({n})")
                         for n in ENTRY_NAMES}
            return _Loaded(module, functions, f"{kind} {'sm' if kind == 'cubin' else 'compute'}_{arch}")
        raise knv.CudaDriverError(f"could not load preprocess.cu for compute capability {cc // 10}.{cc % 10}: "
                                  + "; ".join(errors))

    def load(self) -> str:
        """Compile (or read from the cache) and load the module in the current context; returns
        which image runs, e.g. "cubin sm_87"."""
        return self._current().image

    @staticmethod
    def is_device_pointer(address: int) -> bool:
        """Whether the driver knows ``address`` as device memory of the current context (the
        buffers the kernels write must be)."""
        driver = knv._driver()
        knv._cu_check(driver.cuInit(0), "cuInit")
        attr = driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_MEMORY_TYPE
        err, kind = driver.cuPointerGetAttribute(attr, int(address))
        return err == driver.CUresult.CUDA_SUCCESS and int(kind) == int(driver.CUmemorytype.CU_MEMORYTYPE_DEVICE)

    def _launch(self, entry: str, params: ctypes.Structure, size: int, rois: int, stream: int) -> None:
        driver = knv._driver()
        func = self._current().functions[entry]
        gx, gy = grid(size, rois)
        args = (ctypes.c_void_p * 1)(ctypes.addressof(params))
        knv._cu_check(driver.cuLaunchKernel(func, gx, gy, 1, THREADS, 1, 1, 0, driver.CUstream(int(stream)),
                                            ctypes.addressof(args), 0), f"cuLaunchKernel({entry})")

    def resample(self, *, src: int, height: int, width: int, x: Sequence[int], y: Sequence[int], out: int,
                 size: int, rois: int, dtype: Any, mean: Sequence[float], std: Sequence[float],
                 stream: int = 0) -> None:
        """Resize and normalise ``rois`` boxes of a frame into ``out`` [rois,3,size,size].

        src: device address of the frame, uint8 [height, width, 3]; x / y: device addresses
        (first, offset, weight) of the tables of the ``rois * size`` output columns / rows (see
        :class:`AxisTables`, built for this frame); out: ``dtype`` (float32 or float16), every
        element written. Enqueued on ``stream`` (a CUstream handle as int).
        """
        params = pack_resample_params(src=src, width=width, out=out, x=x, y=y, size=size, rois=rois,
                                      mean=mean, std=std)
        self._launch(f"prep_resample_{_out_tag(dtype)}", params, size, rois, stream)

    def masks(self, *, masks: int, mask_offset: int, boxes: int, x_index: int, y_index: int, out: int,
              size: int, rois: int, dtype: Any, stream: int = 0) -> None:
        """Nearest-resize ``rois`` masks (their packed box pixels, see :class:`RoiUpload`) into
        0/1 ``out`` [rois,size,size] of ``dtype``; every element written."""
        params = pack_mask_params(masks=masks, mask_offset=mask_offset, boxes=boxes, x_index=x_index,
                                  y_index=y_index, out=out, size=size, rois=rois)
        self._launch(f"prep_masks_{_out_tag(dtype)}", params, size, rois, stream)
