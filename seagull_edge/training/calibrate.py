"""``seagull-edge calibrate``: per-type distortion thresholds chosen on validation data.

The types head is trained with positives weighed up (each type is present in few ROIs), so its
probabilities are not calibrated at 0.5, and the six types are not equally hard. The thresholds
that maximise SEAGULL's sample-averaged type F1 over the validation ROIs whose types are known
(no distorted region partly covering a "clean" ROI) are written into ``model.json``
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
from seagull_edge.errors import SeagullInputError
from seagull_edge.training.dataset import read_manifests, types_known
from seagull_edge.runtime.rle import decode as decode_rle

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
            if not types_known(truth):
                continue
            p = {d.type: d.prob for d in pred.distortions}
            probs.append([p[t] for t in vocab.DISTORTION_TYPES])
            present = {d["type"] for d in truth["distortions"]}
            labels.append([t in present for t in vocab.DISTORTION_TYPES])
        if progress:
            progress(n, len(records))
    return np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=bool)


def sample_f1(pred: np.ndarray, labels: np.ndarray) -> float:
    """SEAGULL's distortion-type F1 (metrics.sample_prf): per ROI, F1 of the predicted and the
    labelled type sets, an empty set counting as {"clean"}; averaged over ROIs."""
    tp = (pred & labels).sum(1)
    n_pred, n_true = pred.sum(1), labels.sum(1)
    both_clean = (n_pred == 0) & (n_true == 0)
    f1 = np.where(both_clean, 1.0, 2 * tp / np.maximum(n_pred + n_true, 1))
    return float(f1.mean())


def best_thresholds(probs: np.ndarray, labels: np.ndarray, grid: np.ndarray = GRID,
                    passes: int = 3) -> dict[str, dict]:
    """Thresholds that maximise the sample-averaged type F1 (:func:`sample_f1`, which counts a
    false alarm on a clean ROI as an error, unlike each type's own F1), by coordinate ascent from
    0.5: each pass tries every grid value for one type at a time, the others held. Returns, per
    type, the threshold and that type's own F1 at it and at 0.5; ``"sample_f1"`` and
    ``"sample_f1_at_0.5"`` under the key ``"_all"``."""
    n_types = probs.shape[1]
    th = np.full(n_types, 0.5)

    def score(t: np.ndarray) -> float:
        return sample_f1(probs >= t, labels)

    best = score(th)
    for _ in range(passes):
        for k in range(n_types):
            for value in grid:
                trial = th.copy()
                trial[k] = value
                s = score(trial)
                if s > best + 1e-12:
                    best, th = s, trial

    def type_f1(k: int, t: float) -> float:
        pred, y = probs[:, k] >= t, labels[:, k]
        denom = int(pred.sum()) + int(y.sum())
        return 2 * int((pred & y).sum()) / denom if denom else 0.0

    out: dict[str, dict] = {t: {"threshold": float(th[k]), "f1": type_f1(k, th[k]), "f1_at_0.5": type_f1(k, 0.5),
                                "positives": int(labels[:, k].sum())} for k, t in enumerate(vocab.DISTORTION_TYPES)}
    out["_all"] = {"sample_f1": best, "sample_f1_at_0.5": score(np.full(n_types, 0.5))}
    return out


def calibrate(model: str | Path, data: str | Path, splits: Sequence[str] | None = None, backend: str = "auto",
              progress: Callable[[int, int], None] | None = None) -> dict[str, dict]:
    """Choose the thresholds on ``data`` and write them into ``model/model.json`` (atomically)."""
    probs, labels = type_probabilities(model, data, splits, backend, progress)
    if not len(probs):
        raise SeagullInputError(f"{data}: no ROI with known distortion types to calibrate on")
    chosen = best_thresholds(probs, labels)
    overall = chosen.pop("_all")
    cfg = ModelConfig.load(model)
    cfg.distortion_thresholds = {t: c["threshold"] for t, c in chosen.items()}
    cfg.extra["calibration"] = {"data": Path(data).name, "rois": int(len(probs)),
                                "sample_f1": round(overall["sample_f1"], 4),
                                "sample_f1_at_0.5": round(overall["sample_f1_at_0.5"], 4)}
    cfg.validate()
    cfg.save(model)
    return {**chosen, "_all": overall}
