"""ROI prompts: boxes, points, mask PNGs and COCO RLE, parsed and checked against the image.

Every ROI ends up as a bool [H,W] mask at the image's resolution plus the prompt it came from.
Without a segmenter, a box becomes a rectangular mask (the seed's ``points`` mode) and a point
becomes a square box around it (:data:`POINT_BOX_FRACTION` of the shorter image side, at least
:data:`POINT_BOX_MIN` px).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seagull_edge.errors import ImageError, PromptError
from seagull_edge.inputs import loads_json, shown, shown_value
from seagull_edge.runtime.image import imdecode

POINT_BOX_FRACTION = 0.125
POINT_BOX_MIN = 16


@dataclass
class Roi:
    """One region: its mask at image resolution, the prompt that made it, and its tight box."""

    mask: np.ndarray  # bool [H,W]
    prompt: dict[str, Any] = field(default_factory=dict)

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))  # not mask.sum(): that widens every pixel to int first


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
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return Roi(mask, {"box": [_num(v) for v in box]})


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
    inference JSON), a JSON object text, or a dict ``{"size": [h, w], "counts": str | list}``."""
    from pycocotools import mask as mask_utils

    obj: Any = rle
    if isinstance(obj, bytes):
        obj = obj.decode("ascii", errors="replace")
    if isinstance(obj, str) and obj.lstrip().startswith("{"):
        obj = loads_json(obj, name, PromptError)
    if isinstance(obj, str):
        obj = {"size": [height, width], "counts": obj}
    if not isinstance(obj, dict) or "counts" not in obj:
        raise PromptError(f"{name}: expected a COCO RLE (counts string or {{'size', 'counts'}})")
    size = obj.get("size", [height, width])
    # Compared as numbers, never converted: int() of NaN, Infinity or 1e999 raises.
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in size)
            or list(size) != [height, width]):
        raise PromptError(f"{name}: RLE size {shown_value(size)} does not match the {width}x{height} image")
    counts = obj["counts"]
    if isinstance(counts, bytes):  # as pycocotools.mask.encode returns it
        counts = counts.decode("ascii", errors="replace")
    try:
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
                raise ValueError("uncompressed counts must be non-negative integers summing to h*w")
            rle_obj = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        elif isinstance(counts, str):
            if not counts or any(ord(c) < 48 or ord(c) > 111 for c in counts):
                raise ValueError("compressed counts use characters '0'..'o' only")
            # Checked in Python first: pycocotools trusts the runs and would decode garbage.
            total = rle_total(counts)
            if total != height * width:
                raise ValueError(f"its runs cover {total} pixels, the image has {height * width}")
            rle_obj = {"size": [height, width], "counts": counts.encode("ascii")}
        else:
            raise ValueError("counts must be a string or a list of integers")
        mask = mask_utils.decode(rle_obj)
    except (ValueError, TypeError, OverflowError) as exc:
        raise PromptError(f"{name}: malformed RLE ({exc})") from None
    roi = mask_to_roi(mask, width, height, name=name)
    roi.prompt = {"rle": True}
    return roi


def rle_total(counts: str) -> int:
    """Sum of the runs of a compressed COCO counts string (decoded as pycocotools does)."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts):
                raise ValueError("truncated counts string")
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise ValueError("negative run length")
        runs.append(x)
    return sum(runs)


def _num(v: float) -> int | float:
    f = float(v)
    return int(f) if f.is_integer() else round(f, 3)


def _fmt(values: Sequence[float]) -> str:
    return ",".join(str(_num(v)) for v in values)
