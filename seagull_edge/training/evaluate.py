"""``seagull-edge eval``: run a model folder through the runtime over a synthesised set, score it.

It goes through the same :class:`~seagull_edge.runtime.Assessor` users call, so the numbers
describe the shipped graphs, not the torch model they came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from seagull_edge.runtime import Assessor
from seagull_edge.runtime.prompts import Roi
from seagull_edge.training.dataset import read_manifests
from seagull_edge.training.metrics import RoiRecord, evaluate
from seagull_edge.training.rois import decode_rle


def evaluate_model(model: str | Path | None, data: str | Path, splits: Sequence[str] | None = ("heldout",),
                   backend: str = "auto", limit: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Metrics of a model folder on the ROIs of ``data`` (see :func:`metrics.evaluate`), plus
    ``localization``: over images with distorted and clean ROIs, the fraction of (distorted, clean)
    pairs in which the distorted ROI gets the lower quality score."""
    assessor = Assessor.from_pretrained(model, backend=backend)
    records = read_manifests(data, splits)
    if limit:
        records = records[:limit]
    rows: list[RoiRecord] = []
    pairs_ok = pairs = 0
    for n, rec in enumerate(records, 1):
        assessor.set_image(Path(data) / rec["image"])
        rois = [Roi(decode_rle(r["rle"]), {"id": i}) for i, r in enumerate(rec["rois"])]
        result = assessor.predict(rois)
        scores = []
        for truth, pred in zip(rec["rois"], result.rois):
            true_types = frozenset(d["type"] for d in truth["distortions"])
            rows.append(RoiRecord(
                quality_pred=pred.quality.score, quality_true=truth["quality"],
                importance_pred=pred.importance.score, importance_true=truth["importance"],
                types_pred=frozenset(d.type for d in pred.distortions), types_true=true_types,
                severities_pred=frozenset((d.type, d.severity) for d in pred.distortions),
                severities_true=frozenset((d["type"], d["severity_word"]) for d in truth["distortions"]),
                quality_level_pred=pred.quality.level, quality_level_true=truth["quality_level"],
            ))
            scores.append((bool(true_types), pred.quality.score))
        bad = [s for distorted, s in scores if distorted]
        good = [s for distorted, s in scores if not distorted]
        if rec.get("mode") == "regional" and bad and good:
            cmp = np.asarray(bad)[:, None] < np.asarray(good)[None, :]
            pairs_ok += int(cmp.sum())
            pairs += cmp.size
        if progress:
            progress(n, len(records))
    result = evaluate(rows)
    result["images"] = len(records)
    result["localization"] = {"pairs": pairs, "distorted_below_clean": pairs_ok / pairs if pairs else float("nan")}
    result["model"] = assessor.config.name
    return result
