"""The torch twin of :mod:`seagull_edge.runtime.image` preprocessing (for training and GPU use).

Same numbers as the numpy path to float tolerance (tests/test_preprocess.py): the resize applies
the very weight matrices that OpenCV's area / bilinear resize computes, as two matrix products,
so it runs batched on a GPU.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch
import torch.nn.functional as F

from seagull_edge.runtime.config import CLIP_MEAN, CLIP_STD
from seagull_edge.runtime.image import resize_weights


@lru_cache(maxsize=64)
def _weights(src: int, dst: int) -> torch.Tensor:
    return torch.from_numpy(resize_weights(src, dst)).float()


def resize(img: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """float [..., H, W] -> [..., height, width] (area when shrinking, bilinear when enlarging)."""
    h, w = img.shape[-2:]
    wy = _weights(h, height).to(img.device, img.dtype)
    wx = _weights(w, width).to(img.device, img.dtype)
    return wy @ img @ wx.T


def normalize(img: torch.Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """float [..., 3, H, W] on the 0..255 scale -> normalised."""
    m = torch.tensor(mean, dtype=img.dtype, device=img.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=img.dtype, device=img.device).view(3, 1, 1)
    return (img / 255.0 - m) / s


def preprocess_image(rgb: torch.Tensor, size: int, mean: Sequence[float] = CLIP_MEAN,
                     std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """RGB uint8 [H,W,3] -> float32 [1,3,S,S]."""
    chw = rgb.permute(2, 0, 1).float()
    return normalize(resize(chw, size, size), mean, std)[None]


def preprocess_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """bool [Q,H,W] -> float32 [Q,S,S]: nearest resize, then ``> 0.1`` (the seed's rule)."""
    m = F.interpolate(masks[None].float(), size=(size, size), mode="nearest")[0]
    return (m > 0.1).float()


def preprocess_crops(rgb: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]], size: int,
                     mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """Cut each (x, y, w, h) box of RGB uint8 [H,W,3] -> float32 [Q,3,C,C]."""
    crops = [normalize(resize(rgb[y:y + h, x:x + w].permute(2, 0, 1).float(), size, size), mean, std)
             for x, y, w, h in boxes]
    return torch.stack(crops)
