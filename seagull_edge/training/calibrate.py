"""``seagull-edge calibrate``: per-type distortion thresholds chosen on validation data.

The types head is trained with positives weighed up (each type is present in few ROIs), so its
probabilities are not calibrated at 0.5, and the six types are not equally hard. For each type,
the threshold that maximises that type's F1 over the validation ROIs whose types are known
(no distorted region partly covering a "clean" ROI) is written into ``model.json``
(``distortion_thresholds``), which every backend's results then use. Calibrate on data made from
*training* photographs (another seed), never on the held-out set the model card reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from seagull_edge import vocab
from seagull_edge.runtime import Assessor
from seagull_edge.runtime.config import ModelConfig
from seagull_edge.runtime.prompts import Roi
from seagull_edge.training.dataset import read_manifests
from seagull_edge.training.evaluate import AMBIGUOUS_COVER
from seagull_edge.training.rois import decode_rle

GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)


def type_probabilities(model: str | Path, data: str | Path, splits: Sequence[str] | None = None,
                       backend: str = "auto", progress: Callable[[int, int], None] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """probs [N,6] of every type and labels [N,6] (0/1) over the ROIs of ``data`` whose types are known."""
    assessor = Assessor.from_pretrained(model, backend=backend)
    assessor.distortion_thresholds = np.zeros(len(vocab.DISTORTION_TYPES))  # every type, with its probability
    records = read_manifests(data, splits)
    probs, labels = [], []
    for n, rec in enumerate(records, 1):
        assessor.set_image(Path(data) / rec["image"])
        result = assessor.predict([Roi(decode_rle(r["rle"]), {"id": i}) for i, r in enumerate(rec["rois"])],
                                  tasks="distortion")
        for truth, pred in zip(rec["rois"], result.rois):
            if truth.get("partial_cover", 0.0) >= AMBIGUOUS_COVER:
                continue
            p = {d.type: d.prob for d in pred.distortions}
            probs.append([p[t] for t in vocab.DISTORTION_TYPES])
            present = {d["type"] for d in truth["distortions"]}
            labels.append([t in present for t in vocab.DISTORTION_TYPES])
        if progress:
            progress(n, len(records))
    return np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=bool)


def best_thresholds(probs: np.ndarray, labels: np.ndarray, grid: np.ndarray = GRID) -> dict[str, dict]:
    """For each type, the grid threshold with the highest F1 (ties: the higher threshold, fewer
    false alarms), with that F1 and the F1 at 0.5."""
    out = {}
    for k, t in enumerate(vocab.DISTORTION_TYPES):
        y = labels[:, k]

        def f1(th: float) -> float:
            pred = probs[:, k] >= th
            tp = int((pred & y).sum())
            denom = int(pred.sum()) + int(y.sum())
            return 2 * tp / denom if denom else 0.0

        scores = [f1(th) for th in grid]
        best = max(range(len(grid)), key=lambda i: (scores[i], grid[i]))
        out[t] = {"threshold": float(grid[best]), "f1": scores[best], "f1_at_0.5": f1(0.5),
                  "positives": int(y.sum())}
    return out


def calibrate(model: str | Path, data: str | Path, splits: Sequence[str] | None = None, backend: str = "auto",
              progress: Callable[[int, int], None] | None = None) -> dict[str, dict]:
    """Choose the thresholds on ``data`` and write them into ``model/model.json`` (atomically)."""
    probs, labels = type_probabilities(model, data, splits, backend, progress)
    chosen = best_thresholds(probs, labels)
    cfg = ModelConfig.load(model)
    cfg.distortion_thresholds = {t: c["threshold"] for t, c in chosen.items()}
    cfg.extra["calibration"] = {"data": Path(data).name, "rois": int(len(probs)),
                                "f1": {t: round(c["f1"], 4) for t, c in chosen.items()}}
    cfg.validate()
    cfg.save(model)
    return chosen
