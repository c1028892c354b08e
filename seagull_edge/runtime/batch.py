"""The seed's inference JSON (``demo/inference_demo.json``): ``[{"img", "rle", "points"}, ...]``.

``img`` is a file name under ``--img-dir``; ``rle`` a COCO RLE (the seed stores the compressed
counts string, its size being the image's); ``points`` an ``[x, y, w, h]`` box turned into a
rectangular mask. ``--mask-type`` picks which of the two fields gives the ROI, as the seed's
``inference.py --mask_type``. A field may also hold a list of ROIs (several per image).

A file that is not a JSON list fails as a whole. An entry that is wrong (no ``img``, a name
outside ``--img-dir``, a malformed box) fails alone: :func:`read_seed_batch` returns it with its
``error`` set, and the other entries are still answered.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from seagull_edge.errors import ImageError, PromptError, SeagullInputError
from seagull_edge.inputs import confined_path, read_json, shown, shown_value
from seagull_edge.runtime.prompts import Roi, box_to_roi, rle_to_roi

MASK_TYPES = ("rle", "points")


@dataclass
class BatchItem:
    index: int
    image: Path | None  # None when the entry names no usable image (then ``error`` says why)
    rois: list[Any]  # raw RLEs or boxes, turned into masks once the image size is known
    mask_type: str
    error: str | None = None  # why this entry cannot be answered (one line), or None

    def to_rois(self, width: int, height: int) -> list[Roi]:
        if self.error is not None:
            raise SeagullInputError(self.error)
        if self.mask_type == "points":
            return [box_to_roi(_box(b, self.index), width, height) for b in self.rois]
        return [rle_to_roi(r, width, height, name=f"entry {self.index} rle") for r in self.rois]


def _box(value: Any, index: int) -> list[float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        # json.loads accepts NaN and Infinity: refuse them here, with the entry's number
        raise PromptError(f"entry {index}: points must be [x, y, w, h] finite numbers, got {shown_value(value)}")
    return [float(v) for v in value]


def read_seed_batch(path: str | os.PathLike, img_dir: str | os.PathLike, mask_type: str) -> list[BatchItem]:
    """Parse the whole file before any image is read: one :class:`BatchItem` per entry, a bad
    entry with its ``error`` set (see :func:`require_valid`). A file that is not a non-empty JSON
    list raises :class:`SeagullInputError`."""
    if mask_type not in MASK_TYPES:
        raise SeagullInputError(f"--mask-type {mask_type!r}: choose rle or points")
    path = Path(path)
    if not path.is_file():
        raise SeagullInputError(f"batch file {shown(path)}: no such file")
    data = read_json(path, f"batch file {shown(path)}")
    if not isinstance(data, list) or not data:
        raise SeagullInputError(f"batch file {shown(path)}: expected a non-empty JSON list of "
                                f"{{\"img\", \"{mask_type}\"}} objects")
    return [_entry(i, entry, Path(img_dir), mask_type) for i, entry in enumerate(data)]


def _entry(i: int, entry: Any, img_dir: Path, mask_type: str) -> BatchItem:
    try:
        if not isinstance(entry, dict) or not isinstance(entry.get("img"), str):
            raise SeagullInputError(f"entry {i}: no \"img\" file name")
        image = confined_path(img_dir, entry["img"], f"entry {i}: img", ImageError)
        if entry.get(mask_type) is None:
            raise SeagullInputError(f"entry {i}: no \"{mask_type}\" field (img {shown(entry['img'])})")
        value = entry[mask_type]
        if mask_type == "points":
            many = isinstance(value, list) and value and isinstance(value[0], (list, tuple))
        else:
            many = isinstance(value, list) and value and isinstance(value[0], (str, dict))
        rois = list(value) if many else [value]
        if mask_type == "points":
            for b in rois:
                _box(b, i)
    except SeagullInputError as exc:
        return BatchItem(index=i, image=None, rois=[], mask_type=mask_type, error=str(exc))
    return BatchItem(index=i, image=image, rois=rois, mask_type=mask_type)


def require_valid(items: list[BatchItem]) -> list[BatchItem]:
    """The items, or the first bad entry's error raised (for callers that take a file whole)."""
    for item in items:
        if item.error is not None:
            raise SeagullInputError(item.error)
    return items


def assess_batch(assessor: Any, items: list[BatchItem], tasks: Any, emit: Callable[[Any], None],
                 report: Callable[[str], None]) -> int:
    """Answer every entry that can be answered, in file order; returns how many could not.

    ``emit(result)`` gets each :class:`~seagull_edge.runtime.results.AssessmentResult`;
    ``report(message)`` a one-line ``error: entry N: ...`` for each bad entry (refused when the
    file was read, or whose image or ROI fails). Consecutive entries of one image encode it once.
    """
    failures = 0
    current = None
    for item in items:
        if item.error is not None:
            failures += 1
            report(f"error: {item.error}")
            continue
        try:
            if item.image != current:
                assessor.set_image(item.image)
                current = item.image
            if item.mask_type == "points" and assessor.segmenter is not None:
                rois = assessor.rois_from_prompts(boxes=item.rois)
            else:
                rois = item.to_rois(*assessor.image_size)
            emit(assessor.predict(rois, tasks))
        except SeagullInputError as exc:
            failures += 1
            current = None
            report(f"error: entry {item.index}: {exc}")
    return failures
