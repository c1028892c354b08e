"""Our synthesised data (``manifest-*.jsonl`` + ``images/``) as a torch Dataset.

Preprocessing is the runtime's own numpy code (:mod:`seagull_edge.runtime.image`), so the model
trains on exactly the tensors it will see at inference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from seagull_edge import vocab
from seagull_edge.errors import SeagullInputError
from seagull_edge.runtime import image as imops
from seagull_edge.runtime.config import CLIP_MEAN, CLIP_STD
from seagull_edge.training import labels
from seagull_edge.runtime.rle import decode as decode_rle


def read_manifests(root: str | Path, splits: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """All complete records of ``root/manifest-*.jsonl``, sorted by sample index."""
    root = Path(root)
    files = sorted(root.glob("manifest-*.jsonl"))
    if not files:
        raise SeagullInputError(f"{root}: no manifest-*.jsonl (make one with `seagull-edge synth`)")
    records = []
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise SeagullInputError(f"{f}:{n}: not valid JSON") from None
            if splits is None or rec.get("split") in splits:
                records.append(rec)
    if not records:
        raise SeagullInputError(f"{root}: no samples of split {', '.join(splits or [])}")
    return sorted(records, key=lambda r: r["index"])


#: A distorted region covering this share of an ROI, or more, without labelling it (below synth's
#: coverage rule) makes the ROI's "clean" label unreliable: its types are treated as unknown.
AMBIGUOUS_COVER = 0.1


def types_known(roi: dict[str, Any]) -> bool:
    """Whether a manifest ROI's distortion types can be trusted (see ``AMBIGUOUS_COVER``)."""
    return roi.get("partial_cover", 0.0) < AMBIGUOUS_COVER


def unit_position(score: float, bounds: Sequence[float]) -> float:
    """A label score -> its position on the 0..4 level axis: each level's bin maps linearly onto
    [k - 0.5, k + 0.5] (the end bins onto [0, 0.5] and [3.5, 4]), so rounding gives the level."""
    edges = [0.0, *bounds, 1.0]
    targets = [0.0, 0.5, 1.5, 2.5, 3.5, 4.0]
    return float(np.interp(np.clip(score, 0.0, 1.0), edges, targets))


def soft_levels(position: float, n: int = 5) -> np.ndarray:
    """Two-hot distribution over n levels whose expectation is ``position``."""
    lo = int(np.floor(position))
    hi = min(lo + 1, n - 1)
    frac = position - lo
    p = np.zeros(n, dtype=np.float32)
    p[lo] += 1 - frac
    p[hi] += frac
    return p


class SynthDataset(torch.utils.data.Dataset):
    """One item = one image with ``rois`` ROIs (resampled to exactly that many; repeats are
    marked ``valid = False`` and carry no loss).

    Item tensors: image [3,S,S], masks [Q,S,S] uint8 (0/1: a quarter of float32's bytes through
    the loader; the training loop casts them), crops [Q,3,C,C], valid [Q] bool,
    quality_soft [Q,5], importance_soft [Q,5], quality [Q] (HaarPSI), importance [Q],
    types [Q,6] (0/1), severity [Q,6] (level index, -1 where the type is absent),
    types_known [Q] bool: False where a distorted region covers part of the ROI but too little to
    label it (:func:`types_known`): such a "clean" label is unreliable, so the ROI carries no
    types loss.

    ``mean``, ``std``: the model's pixel normalisation (its preset's).
    """

    def __init__(self, root: str | Path, image_size: int, crop_size: int, rois: int = 6,
                 splits: Sequence[str] | None = None, seed: int = 0,
                 mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> None:
        self.root = Path(root)
        self.records = read_manifests(self.root, splits)
        self.image_size = image_size
        self.crop_size = crop_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.rois = rois
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def image_tensor(self, i: int) -> torch.Tensor:
        """Sample i's preprocessed image [3,S,S] (what the tower sees)."""
        rgb = imops.load_image(self.root / self.records[i]["image"])
        return torch.from_numpy(imops.preprocess_image(rgb, self.image_size, self.mean, self.std)[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.item(i)

    def item(self, i: int, with_image: bool = True) -> dict[str, torch.Tensor]:
        """Sample i (see the class doc); ``with_image=False`` leaves out ``image`` (a feature
        cache stands in for it)."""
        rec = self.records[i]
        rgb = imops.load_image(self.root / rec["image"])
        rng = np.random.default_rng([self.seed, self.epoch, i])
        n = len(rec["rois"])
        order = rng.permutation(n)[: self.rois]
        if len(order) < self.rois:
            order = np.concatenate([order, rng.integers(0, n, self.rois - len(order))])
        valid = np.zeros(self.rois, dtype=bool)
        valid[: min(n, self.rois)] = True
        rois = [rec["rois"][j] for j in order]
        masks = np.stack([decode_rle(r["rle"]) for r in rois])
        boxes = [imops.mask_bbox(m) for m in masks]
        types = np.zeros((self.rois, len(vocab.DISTORTION_TYPES)), dtype=np.float32)
        severity = np.full((self.rois, len(vocab.DISTORTION_TYPES)), -1, dtype=np.int64)
        for q, r in enumerate(rois):
            for d in r["distortions"]:
                t = vocab.DISTORTION_TYPES.index(d["type"])
                types[q, t] = 1.0
                severity[q, t] = int(d["severity"])
        item = {
            "masks": torch.from_numpy(imops.preprocess_masks(masks, self.image_size).astype(np.uint8)),
            "crops": torch.from_numpy(imops.preprocess_crops(rgb, boxes, self.crop_size, self.mean, self.std)),
            "valid": torch.from_numpy(valid),
            "types_known": torch.tensor([types_known(r) for r in rois]),
            "quality": torch.tensor([r["quality"] for r in rois], dtype=torch.float32),
            "importance": torch.tensor([r["importance"] for r in rois], dtype=torch.float32),
            "quality_soft": torch.from_numpy(np.stack(
                [soft_levels(unit_position(r["quality"], labels.QUALITY_BOUNDS)) for r in rois])),
            "importance_soft": torch.from_numpy(np.stack(
                [soft_levels(unit_position(r["importance"], labels.IMPORTANCE_BOUNDS)) for r in rois])),
            "types": torch.from_numpy(types),
            "severity": torch.from_numpy(severity),
        }
        if with_image:
            item["image"] = torch.from_numpy(imops.preprocess_image(rgb, self.image_size, self.mean, self.std)[0])
        return item
