"""COCO RLE: the one codec of the runtime, the synthesis and the dataset readers.

A mask is a bool ``[H, W]`` array; its RLE is ``{"size": [h, w], "counts": str}`` with the
compressed counts string pycocotools writes (JSON-able). :func:`decode` also reads ``counts`` as
bytes (as ``pycocotools.mask.encode`` returns it) or as the uncompressed list of run lengths
(column-major, starting with a run of zeros), and a bare counts string when the caller gives the
size.

:func:`decode` is strict: pycocotools trusts the runs of a counts string and would decode garbage
(a string whose runs do not cover ``h*w`` pixels gives a mask of whatever was in memory, or of
zeros), so the string is checked here first: characters ``'0'..'o'`` only, no truncated number,
no negative run, runs summing to exactly ``h*w``; the size must be two positive integers whose
product is at most the runtime's image limit (``image.MAX_PIXELS``). Every refusal is a one-line
:class:`RleError` (a :class:`~seagull_edge.errors.PromptError`).

numpy and pycocotools only (the runtime never imports torch).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from seagull_edge.errors import PromptError
from seagull_edge.inputs import shown_value

__all__ = ["RleError", "encode", "decode", "runs_total"]


class RleError(PromptError):
    """An RLE that does not describe a mask. ``reason`` is the message without the name, for
    callers that word their own error (e.g. a dataset reader naming the record)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _malformed(name: str, reason: str) -> RleError:
    return RleError(f"{name}: malformed RLE ({reason})", reason)


def encode(mask: np.ndarray) -> dict:
    """COCO RLE ``{"size": [h, w], "counts": str}`` of a bool (or 0/1) 2-D mask."""
    from pycocotools import mask as mask_utils

    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise PromptError(f"mask must be a non-empty 2-D array, got shape {list(mask.shape)}")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise PromptError("mask must be bool or 0/1 valued")
        mask = mask.astype(bool)
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def decode(rle: Any, height: int | None = None, width: int | None = None, name: str = "rle") -> np.ndarray:
    """A bool ``[H, W]`` mask from a COCO RLE.

    ``rle`` is a dict ``{"size": [h, w], "counts": str | bytes | list[int]}`` or a bare counts
    string (str or bytes). With ``height`` and ``width`` (an image's size) the RLE's ``size`` may
    be left out and, when present, must equal ``[height, width]``; without them it is required.
    Raises :class:`RleError` (one line, starting with ``name``) for anything else.
    """
    from pycocotools import mask as mask_utils

    obj = rle
    if isinstance(obj, (str, bytes)):
        obj = {"counts": obj}
    if not isinstance(obj, dict) or "counts" not in obj:
        reason = "expected a COCO RLE (counts string or {'size', 'counts'})"
        raise RleError(f"{name}: {reason}", reason)
    given = height is not None or width is not None
    if given:
        h, w = _size((height, width), name, what="image size")
        size = obj.get("size", [h, w])
        # Compared as numbers, never converted: int() of NaN, Infinity or 1e999 raises.
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in size)
                or list(size) != [h, w]):
            reason = f"RLE size {shown_value(size)} does not match the {w}x{h} image"
            raise RleError(f"{name}: {reason}", reason)
    elif "size" not in obj:
        raise _malformed(name, "no 'size' [h, w]")
    else:
        h, w = _size(obj["size"], name, what="RLE size")
    counts = obj["counts"]
    if isinstance(counts, bytes):  # as pycocotools.mask.encode returns it
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, (list, tuple)):
        if (not all(isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) and c >= 0 for c in counts)
                or sum(int(c) for c in counts) != h * w):
            raise _malformed(name, f"uncompressed counts must be non-negative integers summing to h*w = {h}*{w}")
        coco = mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
    elif isinstance(counts, str):
        if not counts:
            raise _malformed(name, "empty counts string")
        if any(ord(c) < 48 or ord(c) > 111 for c in counts):
            raise _malformed(name, "compressed counts use the characters '0'..'o' only")
        try:
            total = runs_total(counts)
        except ValueError as exc:
            raise _malformed(name, str(exc)) from None
        if total != h * w:
            raise _malformed(name, f"its runs cover {total} pixels, not h*w = {h}*{w} = {h * w}")
        coco = {"size": [h, w], "counts": counts.encode("ascii")}
    else:
        raise _malformed(name, f"counts must be a string or a list of integers, not {type(counts).__name__}")
    try:
        with warnings.catch_warnings():  # pycocotools' numpy-2 "copy keyword" DeprecationWarning
            warnings.simplefilter("ignore", DeprecationWarning)
            mask = mask_utils.decode(coco)
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # not expected after the checks
        raise _malformed(name, " ".join(str(exc).split()) or type(exc).__name__) from None
    return np.asarray(mask, dtype=bool).reshape(h, w)


def _size(size: Any, name: str, what: str) -> tuple[int, int]:
    """Two positive integers (integral floats allowed) whose product is within the image limit."""
    from seagull_edge.runtime.image import MAX_PIXELS

    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(s, (int, float, np.integer)) and not isinstance(s, (bool, np.bool_))
                       and math.isfinite(s) and float(s).is_integer() and s >= 1 for s in size)):
        raise _malformed(name, f"{what} must be two positive integers [h, w], got {shown_value(size)}")
    h, w = int(size[0]), int(size[1])
    if h * w > MAX_PIXELS:
        raise _malformed(name, f"{what} [{h}, {w}] is over the {MAX_PIXELS}-pixel limit (SEAGULL_EDGE_MAX_PIXELS)")
    return h, w


def runs_total(counts: str) -> int:
    """Sum of the runs of a compressed COCO counts string, decoded as pycocotools does.
    Raises ``ValueError`` for a truncated number or a negative run."""
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
