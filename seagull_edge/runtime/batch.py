"""The seed's inference JSON (``demo/inference_demo.json``): ``[{"img", "rle", "points"}, ...]``.

``img`` is a file name under ``--img-dir``; ``rle`` a COCO RLE (the seed stores the compressed
counts string, its size being the image's); ``points`` an ``[x, y, w, h]`` box turned into a
rectangular mask. ``--mask-type`` picks which of the two fields gives the ROI, as the seed's
``inference.py --mask_type``. A field may also hold a list of ROIs (several per image).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seagull_edge.errors import PromptError, SeagullInputError
from seagull_edge.runtime.prompts import Roi, box_to_roi, rle_to_roi

MASK_TYPES = ("rle", "points")


@dataclass
class BatchItem:
    index: int
    image: Path
    rois: list[Any]  # raw RLEs or boxes, turned into masks once the image size is known
    mask_type: str

    def to_rois(self, width: int, height: int) -> list[Roi]:
        if self.mask_type == "points":
            return [box_to_roi(_box(b, self.index), width, height) for b in self.rois]
        return [rle_to_roi(r, width, height, name=f"entry {self.index} rle") for r in self.rois]


def _box(value: Any, index: int) -> list[float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        # json.loads accepts NaN and Infinity: refuse them here, with the entry's number
        raise PromptError(f"entry {index}: points must be [x, y, w, h] finite numbers, got {value!r}")
    return [float(v) for v in value]


def read_seed_batch(path: str | os.PathLike, img_dir: str | os.PathLike, mask_type: str) -> list[BatchItem]:
    """Parse and check the whole file before any image is read (a bad file fails at once)."""
    if mask_type not in MASK_TYPES:
        raise SeagullInputError(f"--mask-type {mask_type!r}: choose rle or points")
    path = Path(path)
    if not path.is_file():
        raise SeagullInputError(f"batch file {path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SeagullInputError(f"batch file {path}: not valid JSON ({exc})") from None
    if not isinstance(data, list) or not data:
        raise SeagullInputError(f"batch file {path}: expected a non-empty JSON list of {{\"img\", \"{mask_type}\"}} objects")
    items = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("img"), str):
            raise SeagullInputError(f"batch file {path}: entry {i} has no \"img\" file name")
        if entry.get(mask_type) is None:
            raise SeagullInputError(f"batch file {path}: entry {i} ({entry['img']!r}) has no \"{mask_type}\" field")
        value = entry[mask_type]
        if mask_type == "points":
            many = isinstance(value, list) and value and isinstance(value[0], (list, tuple))
        else:
            many = isinstance(value, list) and value and isinstance(value[0], (str, dict))
        rois = list(value) if many else [value]
        if mask_type == "points":
            for b in rois:
                _box(b, i)
        items.append(BatchItem(index=i, image=Path(img_dir) / entry["img"], rois=rois, mask_type=mask_type))
    return items
