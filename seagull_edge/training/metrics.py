"""SEAGULL's evaluation metrics (arXiv 2411.10161, Sec. 4 / Tables 1-2), with numpy and scipy only.

The four ROI sub-tasks and how they are scored:

* **Quality score** and **importance score**: SROCC and PLCC between predicted and labelled
  scores. PLCC here is the *plain* Pearson correlation of the raw values: **no logistic
  (4/5-parameter) fit is applied** before it, as SEAGULL's tables report it (the usual VQEG
  logistic mapping of classical IQA papers is not used). Scores from discrete level words are
  expected to be Q-Align-style expected levels (``vocab.expected_level_score``).
* **Distortion type**: sample-averaged precision, recall and F1 over per-ROI label *sets*
  (multi-label). Per sample with predicted set P and labelled set T:
  ``precision = |P∩T|/|P|``, ``recall = |P∩T|/|T|``, ``F1 = 2|P∩T|/(|P|+|T|)``; each is then
  averaged over the samples (the F1 is the mean of per-sample F1s, *not* the harmonic mean of
  the averaged precision and recall).
* **Distortion severity**: the same sample-averaged P/R/F1, on sets of ``(type, severity)``
  pairs: a pair matches only if both the type and the severity word match.
* **Per-type F1** (Table 2): one F1 per label over all samples (``2TP/(2TP+FP+FN)``), including
  ``clean``; Table 2's "Avg" column is the plain mean over the 7 columns (checked against the
  transcribed numbers: Seagull's row averages to 46.93).

"Clean": an empty set (no distortion) is replaced by ``{"clean"}`` on both sides, as SEAGULL's
Table 2 counts Clean as a label. So predicting "no distortion" for a clean ROI is a full match,
and predicting nothing for a distorted ROI scores 0 (never a division by zero).

Undefined cases are reported as 0.0, never NaN and never with a warning: a correlation with a
constant input (or fewer than 2 samples), and a per-label F1 of a label that appears in neither
predictions nor labels (sklearn's ``zero_division=0`` convention). Non-finite scores (NaN, inf)
are refused with ``ValueError``: silently dropping them would hide a parsing failure upstream.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np

from seagull_edge.vocab import DISTORTION_TYPES

CLEAN = "clean"
#: Table 2's columns: the six types (vocab order = Table 2's order), then Clean.
TYPE_LABELS: tuple[str, ...] = tuple(DISTORTION_TYPES) + (CLEAN,)

__all__ = [
    "CLEAN", "TYPE_LABELS", "srocc", "plcc", "roc_auc", "sample_prf", "per_label_f1", "RoiRecord", "evaluate",
    "format_table",
]


# ----------------------------------------------------------------------------- correlations


def _paired(pred: Any, target: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    if p.size != t.size:
        raise ValueError(f"{name}: {p.size} predictions but {t.size} targets")
    bad = int((~np.isfinite(p)).sum() + (~np.isfinite(t)).sum())
    if bad:
        raise ValueError(f"{name}: {bad} non-finite value(s) (NaN or inf) in the scores")
    return p, t


def _constant(x: np.ndarray) -> bool:
    return x.size < 2 or bool(x.max() == x.min())


def srocc(pred: Sequence[float], target: Sequence[float]) -> float:
    """Spearman rank-order correlation (``scipy.stats.spearmanr``; ties get average ranks).

    0.0 (and no warning) when either side is constant or there are fewer than 2 samples.
    """
    from scipy.stats import spearmanr

    p, t = _paired(pred, target, "srocc")
    if _constant(p) or _constant(t):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = float(spearmanr(p, t)[0])
    return r if math.isfinite(r) else 0.0


def plcc(pred: Sequence[float], target: Sequence[float]) -> float:
    """Pearson linear correlation of the raw values, SEAGULL-style: no logistic fit is applied.

    0.0 (and no warning) when either side is constant or there are fewer than 2 samples.
    Computed in float64 on centred, max-abs-scaled values so that huge or tiny scales neither
    overflow nor underflow; equal to ``scipy.stats.pearsonr`` otherwise.
    """
    p, t = _paired(pred, target, "plcc")
    if _constant(p) or _constant(t):
        return 0.0
    x = p - p.mean()
    y = t - t.mean()
    x /= np.abs(x).max()
    y /= np.abs(y).max()
    denom = math.sqrt(float(x @ x) * float(y @ y))
    if not denom or not math.isfinite(denom):
        return 0.0
    return float(np.clip(float(x @ y) / denom, -1.0, 1.0))


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the probability that a positive outranks a negative (ties
    count half), by the Mann-Whitney rank sum. 0.5 when either class is absent."""
    from scipy.stats import rankdata

    s, y = _paired(scores, np.asarray(labels, dtype=np.float64), "roc_auc")
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return 0.5
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ----------------------------------------------------------------------------- label sets


def _as_set(labels: Iterable[Hashable] | None) -> frozenset:
    """A sample's label set; empty (or None) means clean -> ``{"clean"}``."""
    s = frozenset(labels) if labels is not None else frozenset()
    return s if s else frozenset((CLEAN,))


def _check_lengths(pred_sets: Sequence, true_sets: Sequence, name: str) -> None:
    if len(pred_sets) != len(true_sets):
        raise ValueError(f"{name}: {len(pred_sets)} predicted sets but {len(true_sets)} labelled sets")
    if not len(pred_sets):
        raise ValueError(f"{name}: no samples")


def sample_prf(pred_sets: Sequence[Iterable[Hashable]],
               true_sets: Sequence[Iterable[Hashable]]) -> tuple[float, float, float]:
    """Sample-averaged (precision, recall, F1), each in [0, 1]. Empty sets count as {"clean"}.

    Elements may be any hashables: type words, or ``(type, severity)`` pairs for severity.
    """
    _check_lengths(pred_sets, true_sets, "sample_prf")
    ps = rs = fs = 0.0
    for pred, true in zip(pred_sets, true_sets):
        p, t = _as_set(pred), _as_set(true)
        inter = len(p & t)
        ps += inter / len(p)
        rs += inter / len(t)
        fs += 2.0 * inter / (len(p) + len(t))
    n = len(pred_sets)
    return ps / n, rs / n, fs / n


def per_label_f1(pred_sets: Sequence[Iterable[Hashable]], true_sets: Sequence[Iterable[Hashable]],
                 labels: Sequence[Hashable] = TYPE_LABELS) -> dict[Hashable, float]:
    """Per-label F1 over all samples, ``2TP / (2TP + FP + FN)``, in [0, 1] (Table 2).

    Empty sets count as {"clean"}, so "clean" can be one of ``labels``. A label that occurs in
    neither predictions nor labels gets 0.0.
    """
    _check_lengths(pred_sets, true_sets, "per_label_f1")
    tp = dict.fromkeys(labels, 0)
    fp = dict.fromkeys(labels, 0)
    fn = dict.fromkeys(labels, 0)
    for pred, true in zip(pred_sets, true_sets):
        p, t = _as_set(pred), _as_set(true)
        for lab in labels:
            if lab in p and lab in t:
                tp[lab] += 1
            elif lab in p:
                fp[lab] += 1
            elif lab in t:
                fn[lab] += 1
    out: dict[Hashable, float] = {}
    for lab in labels:
        d = 2 * tp[lab] + fp[lab] + fn[lab]
        out[lab] = 2.0 * tp[lab] / d if d else 0.0
    return out


# ----------------------------------------------------------------------------- per-ROI records


@dataclass
class RoiRecord:
    """One ROI's prediction and label. Empty type/severity sets mean "clean".

    Sets may be passed as any iterable (lists, sets); they are stored as frozensets.
    Severities are ``(type, severity word)`` pairs, e.g. ``("blur", "moderate")``.
    """

    quality_pred: float
    quality_true: float
    importance_pred: float
    importance_true: float
    types_pred: frozenset[str] = field(default_factory=frozenset)
    types_true: frozenset[str] = field(default_factory=frozenset)
    severities_pred: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    severities_true: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    quality_level_pred: str = ""
    quality_level_true: str = ""

    def __post_init__(self) -> None:
        for name in ("types_pred", "types_true"):
            v = getattr(self, name)
            if isinstance(v, str):
                raise TypeError(f"RoiRecord.{name}: expected a set of type words, got the string {v!r}")
            setattr(self, name, frozenset(v))
        for name in ("severities_pred", "severities_true"):
            pairs = []
            for item in getattr(self, name):
                if isinstance(item, str) or len(item) != 2:
                    raise TypeError(f"RoiRecord.{name}: expected (type, severity) pairs, got {item!r}")
                pairs.append((item[0], item[1]))
            setattr(self, name, frozenset(pairs))


def evaluate(records: Sequence[RoiRecord]) -> dict[str, Any]:
    """All of SEAGULL's ROI metrics over ``records``.

    Returns ``{"n", "quality": {"srocc", "plcc"}, "importance": {"srocc", "plcc"},
    "distortion_type": {"precision", "recall", "f1"}, "severity": {"precision", "recall", "f1"},
    "per_type_f1": {label: f1 for the 6 types and "clean"}, "per_type_f1_avg",
    "quality_level_accuracy", "quality_level_n"}``. Correlations are in [-1, 1]; P/R/F1 and
    accuracy are fractions in [0, 1] (``format_table`` prints them in %).
    ``quality_level_accuracy`` uses only the records that carry both a predicted and a labelled
    level (``quality_level_n`` of them); it is None when there are none. ``evaluate_model`` fills
    them with the level users see (``LevelResult.level``, the most likely word) and the label's
    level (``labels.quality_level``): it is the accuracy of the reported word.
    """
    records = list(records)
    if not records:
        raise ValueError("evaluate: no records")
    out: dict[str, Any] = {"n": len(records)}
    for task in ("quality", "importance"):
        pred = [getattr(r, f"{task}_pred") for r in records]
        true = [getattr(r, f"{task}_true") for r in records]
        out[task] = {"srocc": srocc(pred, true), "plcc": plcc(pred, true)}
    for key, attr in (("distortion_type", "types"), ("severity", "severities")):
        p, r, f = sample_prf([getattr(x, f"{attr}_pred") for x in records],
                             [getattr(x, f"{attr}_true") for x in records])
        out[key] = {"precision": p, "recall": r, "f1": f}
    per = per_label_f1([r.types_pred for r in records], [r.types_true for r in records], TYPE_LABELS)
    out["per_type_f1"] = per
    out["per_type_f1_avg"] = float(np.mean(list(per.values())))
    levelled = [r for r in records if r.quality_level_pred and r.quality_level_true]
    out["quality_level_n"] = len(levelled)
    out["quality_level_accuracy"] = (
        sum(r.quality_level_pred == r.quality_level_true for r in levelled) / len(levelled) if levelled else None
    )
    return out


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"


def _table(header: Sequence[str], values: Sequence[str]) -> list[str]:
    widths = [max(len(h), len(v)) for h, v in zip(header, values)]
    return [_row(header, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|", _row(values, widths)]


def format_table(result: Mapping[str, Any]) -> str:
    """A plain-text table in the layout of the paper's Table 1 row (SROCC/PLCC to 4 decimals,
    P/R/F1 in % to 2 decimals), then Table 2's per-type F1 (%) and the quality-level accuracy."""
    lines = [f"SEAGULL ROI evaluation: n = {result.get('n', '?')} ROIs"]
    header: list[str] = []
    values: list[str] = []
    for task, title in (("quality", "Quality"), ("importance", "Importance")):
        if task in result:
            header += [f"{title} SROCC", f"{title} PLCC"]
            values += [f"{result[task]['srocc']:.4f}", f"{result[task]['plcc']:.4f}"]
    for key, title in (("severity", "Severity"), ("distortion_type", "Type")):
        if key in result:
            d = result[key]
            header.append(f"{title} P/R/F1 (%)")
            values.append(f"{100 * d['precision']:.2f}/{100 * d['recall']:.2f}/{100 * d['f1']:.2f}")
    if header:
        lines += _table(header, values)
    per = result.get("per_type_f1")
    if per:
        header = [str(k).capitalize() for k in per] + ["Avg"]
        avg = result.get("per_type_f1_avg", float(np.mean(list(per.values()))))
        values = [f"{100 * v:.2f}" for v in per.values()] + [f"{100 * avg:.2f}"]
        lines += ["", "Per-type F1 (%):"] + _table(header, values)
    acc = result.get("quality_level_accuracy")
    if acc is not None:
        lines += ["", f"Quality level accuracy: {100 * acc:.2f}% (n = {result.get('quality_level_n', '?')})"]
    return "\n".join(lines)
