"""The classical baseline a user would pick instead of a learned model: BRISQUE.

BRISQUE (Mittal et al., 2012) fits natural-scene statistics of MSCN coefficients and maps them to a
score with an SVR trained on the LIVE opinion scores; PyPI ``brisque`` ships that SVR. It gives a
score only (lower is better, roughly 0..100), no distortion type. ``eval --baseline brisque``
scores each ROI's bounding-box crop with it, so both are measured on the same ROIs.
"""

from __future__ import annotations

import numpy as np

from seagull_edge.errors import SeagullInputError
from seagull_edge.runtime.image import mask_bbox

MIN_SIDE = 32  # BRISQUE's 7x7 windows and its half-scale pass need this much


class Brisque:
    """BRISQUE of an RGB uint8 image or of an ROI's crop (lower = better)."""

    def __init__(self) -> None:
        try:
            from brisque import BRISQUE
        except ModuleNotFoundError as exc:
            raise SeagullInputError(f"--baseline brisque needs {exc.name}: pip install brisque") from None

        class _Brisque(BRISQUE):
            # brisque 0.2.0 keeps some features as 1-element arrays, which numpy >= 2 refuses to
            # turn into floats inside its scale_features; flatten them first.
            def scale_features(self, features):
                flat = np.array([np.asarray(f, dtype=np.float64).ravel()[0] for f in features])
                return super().scale_features(list(flat))

        self._model = _Brisque(url=False)

    def score(self, rgb: np.ndarray) -> float:
        return float(self._model.score(rgb))

    def score_roi(self, rgb: np.ndarray, mask: np.ndarray) -> float:
        """BRISQUE of the mask's bounding-box crop (at least ``MIN_SIDE`` px, grown around it)."""
        box = mask_bbox(mask)
        if box is None:
            raise ValueError("empty mask")
        x, y, w, h = box
        H, W = rgb.shape[:2]
        grow_w, grow_h = max(0, MIN_SIDE - w), max(0, MIN_SIDE - h)
        x0, y0 = max(0, x - grow_w // 2), max(0, y - grow_h // 2)
        x1, y1 = min(W, x0 + max(w, MIN_SIDE)), min(H, y0 + max(h, MIN_SIDE))
        return self.score(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
