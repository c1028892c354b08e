"""The torch twin of :mod:`seagull_edge.runtime.image` preprocessing (for training and GPU use).

Same numbers as the numpy path to float tolerance (tests/test_preprocess.py): the resize applies
the very weight matrices that OpenCV's area / bilinear resize computes, as two matrix products,
so it runs batched on a GPU.

Two families:

* per image / per box (:func:`preprocess_image`, :func:`preprocess_masks`,
  :func:`preprocess_crops`): the reference twins, one box at a time;
* batched, for a frame that is already on the device (:func:`frame_crops`,
  :func:`frame_masks`): all Q ROIs in a fixed handful of kernels whatever Q is, the weight
  matrices built on the device from the boxes (no per-box host work). The torch backend's
  ``encode_frame`` / ``assess_frame`` use them, so a frame is uploaded once as uint8.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch

from seagull_edge.runtime.config import CLIP_MEAN, CLIP_STD
from seagull_edge.runtime.image import nearest_indices as image_nearest_indices
from seagull_edge.runtime.image import resize_weights


@lru_cache(maxsize=64)
def _weights(src: int, dst: int, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # Cached per device too: a camera's frames all have one size, and re-uploading the two
    # matrices every frame would cost two host-to-device copies.
    return torch.from_numpy(resize_weights(src, dst)).to(device, dtype)


def resize(img: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """float [..., H, W] -> [..., height, width] (area when shrinking, bilinear when enlarging).

    Width first, then height, as the numpy path."""
    h, w = img.shape[-2:]
    wy = _weights(h, height, img.device, img.dtype)
    wx = _weights(w, width, img.device, img.dtype)
    return wy @ (img @ wx.T)


@lru_cache(maxsize=16)
def _norm_constants(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device | str,
                    dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # Cached per device: two tiny uploads per call would be most of a GPU crop batch's launches.
    return (torch.tensor(mean, dtype=dtype, device=device).view(3, 1, 1),
            torch.tensor(std, dtype=dtype, device=device).view(3, 1, 1))


def normalize(img: torch.Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """float [..., 3, H, W] on the 0..255 scale -> normalised."""
    m, s = _norm_constants(tuple(float(v) for v in mean), tuple(float(v) for v in std), img.device, img.dtype)
    return (img / 255.0 - m) / s


def preprocess_image(rgb: torch.Tensor, size: int, mean: Sequence[float] = CLIP_MEAN,
                     std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """RGB uint8 [H,W,3] -> float32 [1,3,S,S]."""
    chw = rgb.permute(2, 0, 1).float()
    return normalize(resize(chw, size, size), mean, std)[None]


def preprocess_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """bool [Q,H,W] -> float32 [Q,S,S]: nearest resize (OpenCV's pixels, :func:`nearest_indices`),
    then ``> 0.1`` (the seed's rule)."""
    rows = nearest_indices(masks.shape[-2], size, masks.device)
    cols = nearest_indices(masks.shape[-1], size, masks.device)
    return (masks[:, rows[:, None], cols[None, :]].float() > 0.1).float()


def preprocess_crops(rgb: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]], size: int,
                     mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """Cut each (x, y, w, h) box of RGB uint8 [H,W,3] -> float32 [Q,3,C,C]."""
    crops = [normalize(resize(rgb[y:y + h, x:x + w].permute(2, 0, 1).float(), size, size), mean, std)
             for x, y, w, h in boxes]
    return torch.stack(crops)


# ----------------------------------------------------------------------------- batched, on the device


def batched_resize_weights(src: torch.Tensor, src_max: int, dst: int) -> torch.Tensor:
    """Per-ROI :func:`~seagull_edge.runtime.image.resize_weights`, all at once on ``src``'s device.

    src: int [Q] source lengths (each 1..src_max) -> float32 [Q, dst, src_max]; row i of ROI q
    holds its output pixel i's weights, zero beyond ``src[q]``. The same formulas in float64 as
    the numpy function (area when shrinking, bilinear with half-pixel centres when enlarging).
    """
    dev = src.device
    n = src.to(torch.float64)[:, None, None]  # [Q,1,1]
    i = torch.arange(dst, device=dev, dtype=torch.float64)[None, :, None]  # [1,dst,1]
    j = torch.arange(src_max, device=dev, dtype=torch.float64)[None, None, :]  # [1,1,src_max]
    # area: output i covers [i*s, (i+1)*s) of the input; a pixel's weight is its overlap / s
    s = n / dst
    lo, hi = i * s, (i + 1) * s
    area = (torch.minimum(hi, j + 1) - torch.maximum(lo, j)).clamp_min(0) / s
    # bilinear: taps x0 and x1 = min(x0 + 1, n - 1), both the same pixel at the last edge
    x = ((i + 0.5) * s - 0.5).clamp_min(0)
    x0 = torch.minimum(torch.floor(x), n - 1)
    frac = x - x0
    x1 = torch.minimum(x0 + 1, n - 1)
    linear = (j == x0) * (1 - frac) + (j == x1) * frac
    w = torch.where(n > dst, area, linear)
    return (w * (j < n)).float()


@lru_cache(maxsize=64)
def nearest_indices(src: int, dst: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """:func:`seagull_edge.runtime.image.nearest_indices` on ``device`` (cached: a camera's frames
    all have one size)."""
    return torch.from_numpy(image_nearest_indices(src, dst)).to(device)


def frame_crops(frame: torch.Tensor, boxes: torch.Tensor, size: int, max_box: tuple[int, int],
                mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """All ROI crops of one frame at once: :func:`preprocess_crops` batched.

    frame: uint8 [H,W,3] (on the device); boxes: int [Q,4] (x, y, w, h), inside the frame;
    max_box: (max w, max h) of the boxes, known on the host (no device sync to read it back)
    -> float32 [Q,3,C,C] normalised. Each crop is gathered into a [max h, max w] window (pixels
    beyond its box get zero weight), then resized with its own weight matrices in two batched
    products, width first as the numpy path.
    """
    h_img, w_img = frame.shape[:2]
    w_max, h_max = max_box
    x, y, w, h = boxes.long().unbind(1)
    cols = (x[:, None] + torch.arange(w_max, device=frame.device)).clamp_max(w_img - 1)  # [Q,w_max]
    rows = (y[:, None] + torch.arange(h_max, device=frame.device)).clamp_max(h_img - 1)  # [Q,h_max]
    window = frame[rows[:, :, None], cols[:, None, :]]  # [Q,h_max,w_max,3]
    window = window.permute(0, 3, 1, 2).float()  # [Q,3,h_max,w_max]
    wx = batched_resize_weights(w, w_max, size)  # [Q,C,w_max]
    wy = batched_resize_weights(h, h_max, size)  # [Q,C,h_max]
    crops = wy[:, None] @ (window @ wx.transpose(1, 2)[:, None])  # [Q,3,C,C]
    return normalize(crops, mean, std)


def frame_masks(shape: tuple[int, int], size: int, boxes: torch.Tensor, masks: torch.Tensor | None = None,
                mask_rois: Sequence[int] = ()) -> torch.Tensor:
    """All ROI masks of one frame at once: :func:`preprocess_masks` batched.

    shape: the frame's (H, W); boxes: int [Q,4] (x, y, w, h) on the device; masks: uint8/bool
    [K,H,W] on the device, the masks of the ROIs ``mask_rois`` (K indices); every other ROI is
    its box's rectangle, drawn at S x S from the box (no upload at all: box prompts without a
    segmenter) -> float32 [Q,S,S] of 0/1. Nearest resize with OpenCV's source indices, then
    ``> 0`` (the seed's ``> 0.1`` on 0/1 masks).
    """
    h_img, w_img = shape
    dev = boxes.device
    rows = nearest_indices(h_img, size, dev)  # [S]
    cols = nearest_indices(w_img, size, dev)
    x, y, w, h = boxes.long().unbind(1)
    inside_r = (rows[None] >= y[:, None]) & (rows[None] < (y + h)[:, None])  # [Q,S]
    inside_c = (cols[None] >= x[:, None]) & (cols[None] < (x + w)[:, None])
    out = (inside_r[:, :, None] & inside_c[:, None, :]).float()
    if masks is not None and len(mask_rois):
        index = torch.as_tensor(list(mask_rois), device=dev)
        out[index] = (masks[:, rows[:, None], cols[None, :]] != 0).float()
    return out
