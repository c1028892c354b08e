"""The masked ROI pooling math, in one place: references of the fused kernel (``masked_roi_pool.cu``)
and the stock-op pooling the model runs.

* :func:`masked_roi_pool_numpy`: float64 numpy, with the bilinear resize written out
  (:func:`bilinear_resize_numpy`); the ground truth of the tests.
* :func:`mask_pool` / :func:`pool_levels`: the seed's ``MaskPooling`` with stock torch ops, one
  level / every level; what the model's MFE runs without the kernel
  (:mod:`seagull_edge.model.mask_extractor` imports them from here).
* :func:`masked_roi_pool_torch`: :func:`mask_pool` per level for any mask dtype; the baseline of
  the benchmark.

Semantics, per level with feat [B,C,H,W] and masks [B,Q,Hm,Wm]:

1. if (Hm, Wm) != (H, W): bilinear resize with PyTorch's ``F.interpolate(mode="bilinear",
   align_corners=False)`` (no antialiasing): per axis ``src = max(scale * (dst + 0.5) - 0.5, 0)``
   with ``scale = in / out``, ``i0 = floor(src)``, ``i1 = min(i0 + 1, in - 1)``,
   ``l1 = src - i0``, ``l0 = 1 - l1``;
2. binarise with ``> 0``;
3. ``out[b,q,c] = sum_hw feat * m / (sum_hw m + 1e-8)`` (an empty mask gives 0).

torch is imported only inside the torch functions, when they are called.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["source_index", "bilinear_resize_numpy", "binarised_masks_numpy", "masked_roi_pool_numpy",
           "mask_pool", "pool_levels", "masked_roi_pool_torch"]

EPS = 1e-8


def source_index(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Taps and weights of one axis of the align_corners=False bilinear resize.

    The source coordinate is computed in float32 exactly as ATen does (``(float)in / out``, each
    operation rounded), so the taps and ``l1`` match PyTorch bit for bit; the weights are
    returned as float64.

    Returns:
        i0, i1 (int64 [out_size]) and l0, l1 (float64 [out_size]), with
        ``resized[d] = l0[d] * x[i0[d]] + l1[d] * x[i1[d]]``.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError("sizes must be >= 1")
    scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(out_size, dtype=np.float32)
    src = scale * (dst + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    l1 = (src - i0.astype(np.float32)).astype(np.float32)
    l0 = (np.float32(1.0) - l1).astype(np.float32)
    return i0, i1, l0.astype(np.float64), l1.astype(np.float64)


def bilinear_resize_numpy(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of ``x`` to ``size`` = (H, W): F.interpolate(mode="bilinear",
    align_corners=False, antialias=False) semantics, computed in float64.

    ``v = lh0 * (lw0 * x[i0,j0] + lw1 * x[i0,j1]) + lh1 * (lw0 * x[i1,j0] + lw1 * x[i1,j1])``
    """
    x = np.asarray(x, dtype=np.float64)
    H, W = int(size[0]), int(size[1])
    hi0, hi1, lh0, lh1 = source_index(x.shape[-2], H)
    wi0, wi1, lw0, lw1 = source_index(x.shape[-1], W)
    r0 = x[..., hi0, :]  # [..., H, Win]
    r1 = x[..., hi1, :]
    top = lw0 * r0[..., wi0] + lw1 * r0[..., wi1]  # [..., H, W]
    bot = lw0 * r1[..., wi0] + lw1 * r1[..., wi1]
    return lh0[:, None] * top + lh1[:, None] * bot


def binarised_masks_numpy(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """masks [B,Q,Hm,Wm] (any real or bool dtype) -> float64 {0, 1} masks [B,Q,H,W] at ``size``."""
    m = np.asarray(masks)
    if m.dtype == np.bool_:
        m = m.astype(np.uint8)
    if tuple(m.shape[-2:]) != (int(size[0]), int(size[1])):
        m = bilinear_resize_numpy(m, size)
    return (np.asarray(m, dtype=np.float64) > 0).astype(np.float64)


def masked_roi_pool_numpy(feats: Sequence[np.ndarray], masks: np.ndarray) -> list[np.ndarray]:
    """The ground truth: feats [B,C_l,H_l,W_l] (any float dtype), masks [B,Q,Hm,Wm] (uint8, bool
    or float) -> one float64 array [B,Q,C_l] per level."""
    masks = np.asarray(masks)
    outs = []
    for f in feats:
        f = np.asarray(f, dtype=np.float64)
        B, C, H, W = f.shape
        if masks.shape[0] != B:
            raise ValueError(f"mask batch {masks.shape[0]} != feature batch {B}")
        m = binarised_masks_numpy(masks, (H, W)).reshape(B, masks.shape[1], H * W)
        count = m.sum(axis=-1, keepdims=True)
        s = m @ f.reshape(B, C, H * W).transpose(0, 2, 1)  # [B,Q,C]
        outs.append(s / (count + EPS))
    return outs


def mask_pool(feat, masks):
    """The seed's ``MaskPooling``: feat [B,C,H,W], masks [B,Q,Hm,Wm] (torch tensors) -> pooled [B,Q,C].

    The mask is resized bilinearly (align_corners=False) to H x W if its size differs,
    binarised with ``> 0`` and divided by its pixel count (an empty mask pools to zeros).
    The seed divides by ``sum + 1e-8``; a binary mask's sum is 0 or >= 1, so dividing by
    ``max(sum, 1)`` gives the same numbers, and unlike ``+ 1e-8`` (which is 0 in float16) it
    never divides zero by zero.
    """
    import torch
    import torch.nn.functional as F

    if feat.shape[-2:] != masks.shape[-2:]:
        masks = F.interpolate(masks, size=feat.shape[-2:], mode="bilinear", align_corners=False)
    masks = (masks > 0).to(feat.dtype)
    denom = masks.sum(dim=(-1, -2), keepdim=True).clamp_min(1.0)
    return torch.einsum("bchw,bqhw->bqc", feat, masks / denom)


def pool_levels(feats: Sequence, masks) -> list:
    """:func:`mask_pool` for each level with stock ops (the fused kernel replaces all four at once)."""
    return [mask_pool(f.to(masks.dtype), masks) for f in feats]


def masked_roi_pool_torch(feats: Sequence, masks) -> list:
    """Stock torch ops (the seed's ``MaskPooling`` per level): four resizes, thresholds,
    reductions and batched products. Floating-point masks are resized in their own dtype (as
    :func:`mask_pool` does); uint8/bool masks become float32 {0, 1} first (nonzero = 1, as the kernel).
    Returns [B,Q,C_l] in the features' dtype.
    """
    m = masks if masks.is_floating_point() else (masks != 0).float()
    return [mask_pool(f, m) for f in feats]
