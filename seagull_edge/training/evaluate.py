"""``seagull-edge eval``: run a model folder through the runtime over a synthesised set, score it.

It goes through the same :class:`~seagull_edge.runtime.Assessor` users call, so the numbers
describe the shipped graphs, not the torch model they came from. ``baseline="brisque"`` scores
the same ROIs with BRISQUE (:mod:`seagull_edge.training.baselines`) for the score-only metrics.
The quality-level accuracy compares the level the runtime reports (``LevelResult.level``: the
most likely word) with the manifest's label level (:func:`seagull_edge.training.labels.quality_level`):
what users read is what is scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from seagull_edge import vocab
from seagull_edge.runtime import Assessor
from seagull_edge.runtime.prompts import Roi
from seagull_edge.training.dataset import read_manifests, types_known
from seagull_edge.training.metrics import RoiRecord, evaluate, srocc
from seagull_edge.runtime.rle import decode as decode_rle



def _score_metrics(scores: list[float], truth: list[dict], images: list[int], modes: list[str]) -> dict:
    """Score-only metrics (higher score = better quality) over ROIs, shared by model and baseline:

    * ``quality_srocc``: against the HaarPSI labels;
    * ``localization``: over regional images with distorted and clean ROIs, the fraction of
      (distorted, clean) pairs of one image in which the distorted ROI scores lower;
    * ``severity_srocc``: over ROIs with one distortion, SROCC of the score against minus the
      severity level (a worse severity should score lower).
    """
    s = np.asarray(scores, dtype=np.float64)
    q_true = [t["quality"] for t in truth]
    pairs_ok = pairs = 0
    for img in sorted(set(images)):
        idx = [i for i, k in enumerate(images) if k == img]
        if modes[idx[0]] != "regional":
            continue
        bad = [s[i] for i in idx if truth[i]["distortions"]]
        good = [s[i] for i in idx if not truth[i]["distortions"]]
        if bad and good:
            cmp = np.asarray(bad)[:, None] < np.asarray(good)[None, :]
            pairs_ok += int(cmp.sum())
            pairs += cmp.size
    single = [i for i, t in enumerate(truth) if len(t["distortions"]) == 1]
    sev = [-int(truth[i]["distortions"][0]["severity"]) for i in single]
    return {"quality_srocc": srocc(s, q_true),
            "localization": {"pairs": pairs, "distorted_below_clean": pairs_ok / pairs if pairs else float("nan")},
            "severity_srocc": {"n": len(single), "srocc": srocc(s[single], sev) if single else 0.0}}


def evaluate_model(model: str | Path | None, data: str | Path, splits: Sequence[str] | None = ("heldout",),
                   backend: str = "auto", limit: int | None = None, baseline: str | None = None,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Metrics of a model folder on the ROIs of ``data`` (see :func:`metrics.evaluate`), plus
    the score-only metrics of :func:`_score_metrics` (``localization``, ``severity_srocc``),
    ``clean_flagged`` (the fraction of clean ROIs given any distortion; ``unambiguous``: only
    those whose types are known, :func:`dataset.types_known`) and, with ``baseline``,
    the baseline's score-only metrics on the same ROIs."""
    assessor = Assessor.from_pretrained(model, backend=backend)
    scorer = None
    if baseline is not None:
        if baseline != "brisque":
            raise ValueError(f"unknown baseline {baseline!r} (known: brisque)")
        from seagull_edge.training.baselines import Brisque

        scorer = Brisque()
    records = read_manifests(data, splits)
    if limit:
        records = records[:limit]
    rows: list[RoiRecord] = []
    truth: list[dict] = []
    images: list[int] = []
    modes: list[str] = []
    model_scores: list[float] = []
    baseline_scores: list[float] = []
    flagged: list[tuple[bool, bool]] = []  # (flagged, unambiguous) of each clean ROI
    for n, rec in enumerate(records, 1):
        assessor.set_image(Path(data) / rec["image"])
        masks = [decode_rle(r["rle"]) for r in rec["rois"]]
        result = assessor.predict([Roi(m, {"id": i}) for i, m in enumerate(masks)])
        for t, pred, mask in zip(rec["rois"], result.rois, masks):
            true_types = frozenset(d["type"] for d in t["distortions"])
            rows.append(RoiRecord(
                quality_pred=pred.quality.score, quality_true=t["quality"],
                importance_pred=pred.importance.score, importance_true=t["importance"],
                types_pred=frozenset(d.type for d in pred.distortions), types_true=true_types,
                severities_pred=frozenset((d.type, d.severity) for d in pred.distortions),
                severities_true=frozenset((d["type"], d["severity_word"]) for d in t["distortions"]),
                quality_level_pred=pred.quality.level, quality_level_true=t["quality_level"],
            ))
            truth.append(t)
            images.append(n)
            modes.append(rec.get("mode", ""))
            model_scores.append(pred.quality.score)
            if not true_types:
                flagged.append((bool(pred.distortions), types_known(t)))
            if scorer is not None:
                baseline_scores.append(-scorer.score_roi(assessor.image, mask))  # lower BRISQUE = better
        if progress:
            progress(n, len(records))
    out = evaluate(rows)
    out["images"] = len(records)
    out.update(_score_metrics(model_scores, truth, images, modes))
    unamb = [f for f, u in flagged if u]
    out["clean_flagged"] = {"n": len(flagged), "rate": float(np.mean([f for f, _ in flagged])) if flagged else 0.0,
                            "unambiguous_n": len(unamb),
                            "unambiguous_rate": float(np.mean(unamb)) if unamb else 0.0}
    if scorer is not None:
        out["baseline"] = {"name": "brisque", **_score_metrics(baseline_scores, truth, images, modes)}
    out["model"] = assessor.config.name
    out["severity_levels"] = list(vocab.SEVERITY_LEVELS)
    return out
