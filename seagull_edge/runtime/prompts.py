"""ROI prompts: boxes, points, mask PNGs and COCO RLE, parsed and checked against the image.

Every ROI ends up as a bool [H,W] mask at the image's resolution plus the prompt it came from.
Without a segmenter, a box becomes a rectangular mask (the seed's ``points`` mode) and a point
becomes a square box around it (:data:`POINT_BOX_FRACTION` of the shorter image side, at least
:data:`POINT_BOX_MIN` px).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seagull_edge.errors import ImageError, PromptError
from seagull_edge.inputs import loads_json, shown, shown_value
from seagull_edge.runtime import rle as rle_codec
from seagull_edge.runtime.image import imdecode, mask_bbox

POINT_BOX_FRACTION = 0.125
POINT_BOX_MIN = 16


class Roi:
    """One region: its mask at image resolution, the prompt that made it, and its tight box.

    A rectangle (a box or point prompt without a segmenter, :meth:`rectangle`) keeps only its
    box: its bool [H,W] mask is built the first time :attr:`mask` is read, and :attr:`box` and
    :attr:`area` never need it. An engine that makes its inputs on the GPU then never sees a
    full-size mask of a box at all (eight of them cost ~2 ms of a 512x512 frame's host time).
    """

    def __init__(self, mask: np.ndarray | None = None, prompt: dict[str, Any] | None = None,
                 segmenter: str | None = None) -> None:
        self._mask = mask  # bool [H,W]; None only for a rectangle not yet drawn
        self.prompt: dict[str, Any] = {} if prompt is None else prompt
        # What made the mask from a box or point prompt: a segmenter's name, "none" (the rectangle,
        # or the square around a point); None for a mask given as such (PNG, RLE, array).
        self.segmenter = segmenter
        self.rect: tuple[int, int, int, int] | None = None  # (x, y, w, h) when the mask is exactly it
        self._shape = None if mask is None else mask.shape

    @classmethod
    def rectangle(cls, x: int, y: int, w: int, h: int, width: int, height: int,
                  prompt: dict[str, Any] | None = None) -> "Roi":
        """The rectangle [x, x+w) x [y, y+h) of a width x height image (inside it, not empty)."""
        roi = cls(None, prompt)
        roi.rect, roi._shape = (int(x), int(y), int(w), int(h)), (int(height), int(width))
        return roi

    @property
    def mask(self) -> np.ndarray:
        """bool [H,W]."""
        if self._mask is None:
            x, y, w, h = self.rect
            self._mask = np.zeros(self._shape, dtype=bool)
            self._mask[y:y + h, x:x + w] = True
        return self._mask

    @mask.setter
    def mask(self, value: np.ndarray) -> None:
        self._mask, self._shape, self.rect = value, value.shape, None

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image the mask belongs to."""
        return self._shape

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        """The tight box (x, y, w, h); None for an empty mask."""
        return self.rect if self.rect is not None else mask_bbox(self.mask)

    @property
    def area(self) -> int:
        if self.rect is not None:
            return self.rect[2] * self.rect[3]
        return int(np.count_nonzero(self.mask))  # not mask.sum(): that widens every pixel to int first

    def __repr__(self) -> str:
        what = f"rect={self.rect}" if self.rect is not None else f"mask={self._shape}"
        return f"Roi({what}, prompt={self.prompt!r}, segmenter={self.segmenter!r})"


# ------------------------------------------------------------------------- text parsing


def _numbers(text: str, n: int, what: str, example: str) -> list[float]:
    parts = [p.strip() for p in str(text).replace(" ", ",").split(",") if p.strip()]
    if len(parts) != n:
        raise PromptError(f"{what} {text!r}: expected {n} numbers like {example}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise PromptError(f"{what} {text!r}: expected {n} numbers like {example}") from None
    if not all(np.isfinite(values)):
        raise PromptError(f"{what} {text!r}: numbers must be finite")
    return values


def parse_box(text: str | Sequence[float]) -> tuple[float, float, float, float]:
    """``"x,y,w,h"`` (pixels of the original image) -> (x, y, w, h)."""
    values = _numbers(text, 4, "box", "10,20,100,80") if isinstance(text, str) else _seq(text, 4, "box")
    return tuple(values)  # type: ignore[return-value]


def parse_point(text: str | Sequence[float]) -> tuple[float, float]:
    """``"x,y"`` -> (x, y)."""
    values = _numbers(text, 2, "point", "120,45") if isinstance(text, str) else _seq(text, 2, "point")
    return tuple(values)  # type: ignore[return-value]


def _seq(values: Sequence[float], n: int, what: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise PromptError(f"{what} {shown_value(values)}: expected {n} numbers") from None
    if len(out) != n or not all(np.isfinite(out)):
        raise PromptError(f"{what} {shown_value(values)}: expected {n} finite numbers")
    return out


# ------------------------------------------------------------------------- to masks


def box_to_roi(box: Sequence[float], width: int, height: int) -> Roi:
    """A box (x, y, w, h) -> rectangular mask. Clipped to the image; refused if nothing is left."""
    x, y, w, h = (float(v) for v in box)
    # finite alone is not enough: x + w can overflow to inf (1e308 + 1e308)
    if not all(np.isfinite([x, y, w, h, x + w, y + h])):
        raise PromptError(f"box {_fmt(box)}: numbers must be finite")
    if w <= 0 or h <= 0:
        raise PromptError(f"box {_fmt(box)}: width and height must be positive")
    x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
    x1, y1 = min(int(np.ceil(x + w)), width), min(int(np.ceil(y + h)), height)
    if x1 <= x0 or y1 <= y0:
        raise PromptError(f"box {_fmt(box)} lies outside the {width}x{height} image")
    return Roi.rectangle(x0, y0, x1 - x0, y1 - y0, width, height, {"box": [_num(v) for v in box]})


def point_to_roi(point: Sequence[float], width: int, height: int) -> Roi:
    """A point (x, y) -> a square box around it (no segmenter)."""
    x, y = (float(v) for v in point)
    if not (0 <= x < width and 0 <= y < height):  # also false for NaN
        raise PromptError(f"point {_fmt(point)} lies outside the {width}x{height} image")
    side = max(POINT_BOX_MIN, int(round(POINT_BOX_FRACTION * min(width, height))))
    roi = box_to_roi((x - side / 2, y - side / 2, side, side), width, height)
    roi.prompt = {"point": [_num(x), _num(y)]}
    return roi


def mask_to_roi(mask: np.ndarray, width: int, height: int, name: str = "mask") -> Roi:
    """A mask array (nonzero = inside) of the image's size -> ROI."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.ndim != 2:
        raise PromptError(f"{shown(name)}: expected a 2-D mask, got shape {mask.shape}")
    if mask.shape != (height, width):
        raise PromptError(f"{shown(name)}: mask is {mask.shape[1]}x{mask.shape[0]}, the image is {width}x{height}")
    mask = mask > 0
    if not mask.any():
        raise PromptError(f"{shown(name)}: mask is empty")
    return Roi(mask, {"mask": name})


def load_mask_png(path: str | os.PathLike, width: int, height: int) -> Roi:
    """A mask image file (any nonzero pixel is inside) -> ROI."""
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"mask {shown(path)}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    try:
        if not data.size:
            raise ImageError(f"{shown(path)}: not a decodable image (empty file)")
        m = imdecode(data, shown(path))
    except ImageError as exc:
        raise PromptError(f"mask {exc}") from None
    if m.ndim == 3 and m.shape[2] == 4:
        m = m[:, :, 3] if (m[:, :, 3] < 255).any() else m[:, :, :3]  # an alpha matte is the mask
    roi = mask_to_roi(m, width, height, name=str(path))
    return roi


def rle_to_roi(rle: str | dict | bytes, width: int, height: int, name: str = "rle") -> Roi:
    """COCO RLE -> ROI. Accepts a compressed counts string (size = the image's, as the seed's
    inference JSON), a JSON object text, or a dict ``{"size": [h, w], "counts": str | list}``.
    Decoded (and checked) by :func:`seagull_edge.runtime.rle.decode`."""
    obj: Any = rle
    if isinstance(obj, bytes):
        obj = obj.decode("ascii", errors="replace")
    if isinstance(obj, str) and obj.lstrip().startswith("{"):
        obj = loads_json(obj, name, PromptError)
    mask = rle_codec.decode(obj, height, width, name=name)
    roi = mask_to_roi(mask, width, height, name=name)
    roi.prompt = {"rle": True}
    return roi


def _num(v: float) -> int | float:
    f = float(v)
    return int(f) if f.is_integer() else round(f, 3)


def _fmt(values: Sequence[float]) -> str:
    return ",".join(str(_num(v)) for v in values)
