"""ROI labels, with SEAGULL-100w's definitions and a weight-free full-reference metric.

SEAGULL labels ROIs with TOPIQ (a learned FR-IQA model whose weights cannot be had here). We use
**HaarPSI** (Reisenhofer et al., 2018) from ``piq``: it has no learned weights, runs on a CPU in
milliseconds, and correlates with human opinion better than SSIM / MS-SSIM / FSIM on LIVE, TID2013,
CSIQ and KADID-10k in its authors' and in piq's benchmarks; its local similarity is weighted by
Haar-wavelet energy, so flat regions (and the zeros outside a cut-out ROI) weigh little.

* **ROI quality** = HaarPSI(distorted ROI patch, reference ROI patch): both cut out by the mask
  (pixels outside set to 0) within the mask's bounding box, as the seed's patches.
* **ROI importance** = the share of the whole image's quality loss that distorting only this ROI
  causes: ``(1 - HaarPSI(ref with the ROI replaced by the probe, ref)) / (1 - HaarPSI(probe, ref))``,
  where the probe is the image distorted everywhere (SEAGULL's "Replaced Dist. Image"; normalising
  by the whole-image loss makes it a property of the region's content, size and place rather than
  of how strong the distortion is). 0 = unimportant, 1 = the region carries all the damage.
* **Severity** comes from the distortion's parameters (``DistortionSpec.severity``).
* **Levels** from the thresholds below, set once from a pilot set (66 samples, 396 ROIs, seed 0)
  so that every level is populated: among distorted ROIs HaarPSI's 10/30/50/70/90th percentiles
  were 0.61/0.79/0.87/0.94/0.98 (clean ROIs: mostly 1.0), and importance's 0.01/0.05/0.14/0.30/0.66.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from seagull_edge import vocab
from seagull_edge.runtime.image import mask_bbox

# Upper bounds of the first four levels (a score at or above the last bound is the fifth level).
QUALITY_BOUNDS: tuple[float, float, float, float] = (0.62, 0.76, 0.87, 0.96)
IMPORTANCE_BOUNDS: tuple[float, float, float, float] = (0.03, 0.09, 0.20, 0.40)

MIN_SIDE = 32  # HaarPSI's Haar filters need this much image
IMPORTANCE_SIDE = 256  # importance is computed on the image scaled to this shorter side


def _to_tensor(rgb: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


def haarpsi(dist: np.ndarray, ref: np.ndarray) -> float:
    """HaarPSI of two RGB uint8 images of the same size, in [0, 1] (1 = identical)."""
    import piq

    if dist.shape != ref.shape:
        raise ValueError(f"shapes differ: {dist.shape} vs {ref.shape}")
    h, w = ref.shape[:2]
    if min(h, w) < MIN_SIDE:  # enlarge both alike, so that tiny ROIs can still be scored
        scale = MIN_SIDE / min(h, w)
        size = (max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale)))
        dist = cv2.resize(dist, size, interpolation=cv2.INTER_NEAREST)
        ref = cv2.resize(ref, size, interpolation=cv2.INTER_NEAREST)
    if np.array_equal(dist, ref):
        return 1.0
    return float(piq.haarpsi(_to_tensor(dist), _to_tensor(ref), data_range=1.0))


def roi_quality(dist: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """HaarPSI of the ROI patches cut out by the mask (zeros outside it) within its bounding box."""
    box = mask_bbox(mask)
    if box is None:
        raise ValueError("empty mask")
    x, y, w, h = box
    m = mask[y:y + h, x:x + w, None]
    return haarpsi(np.where(m, dist[y:y + h, x:x + w], 0).astype(np.uint8),
                   np.where(m, ref[y:y + h, x:x + w], 0).astype(np.uint8))


def _downscale(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) <= side:
        return img
    scale = side / min(h, w)
    size = (round(w * scale), round(h * scale))
    interp = cv2.INTER_NEAREST if img.dtype == bool else cv2.INTER_AREA
    out = cv2.resize(img.astype(np.uint8), size, interpolation=interp)
    return out.astype(bool) if img.dtype == bool else out


def roi_importances(ref: np.ndarray, probe: np.ndarray, masks: Sequence[np.ndarray]) -> list[float]:
    """Each ROI's share of the probe's whole-image quality loss, in [0, 1] (see module doc)."""
    r = _downscale(ref, IMPORTANCE_SIDE)
    p = _downscale(probe, IMPORTANCE_SIDE)
    total = 1.0 - haarpsi(p, r)
    out = []
    for mask in masks:
        m = _downscale(mask.astype(bool), IMPORTANCE_SIDE)
        if total < 1e-6 or not m.any():
            out.append(0.0)
            continue
        replaced = np.where(m[:, :, None], p, r)
        out.append(float(np.clip((1.0 - haarpsi(replaced, r)) / total, 0.0, 1.0)))
    return out


# The level word of a score: the first level whose upper bound is above it. One rule for labels and
# for the runtime's reported levels, so it lives in vocab.
level = vocab.level_of


def quality_level(score: float) -> str:
    return level(score, QUALITY_BOUNDS, vocab.QUALITY_LEVELS)


def importance_level(score: float) -> str:
    return level(score, IMPORTANCE_BOUNDS, vocab.IMPORTANCE_LEVELS)
