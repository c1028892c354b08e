"""SEAGULL's answer vocabulary: level words, distortion types, scores and answer sentences.

The level lists follow the authors' development code (``QUALITY_LEVEL``, ``IMPORTANCE_LEVEL``,
``DIST_LEVEL``), worst first, so that a level's index is its rank. ``score`` is the expected
level index over 4, as SEAGULL is scored (Q-Align style: probability-weighted level words).
A reported level is the bin its score falls in (:func:`score_level`), so word and score agree.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

QUALITY_LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")
IMPORTANCE_LEVELS: tuple[str, ...] = ("unimportant", "minor", "normal", "important", "essential")
DISTORTION_TYPES: tuple[str, ...] = ("blur", "colorfulness", "noise", "compression", "contrast", "exposure")
SEVERITY_LEVELS: tuple[str, ...] = ("mild", "light", "moderate", "considerable", "extreme")

TASKS: tuple[str, ...] = ("quality", "importance", "distortion")

CLEAN_SENTENCE = "No obvious distortion is found in this region."


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # tanh form never overflows


def expected_level_score(probs: np.ndarray) -> np.ndarray:
    """Expected level index / (n_levels - 1), in [0, 1]. ``probs``: [..., n_levels]."""
    probs = np.asarray(probs, dtype=np.float64)
    n = probs.shape[-1]
    return probs @ np.arange(n, dtype=np.float64) / (n - 1)


def level_index(score: float, bounds: Sequence[float]) -> int:
    """The bin of ``score`` given the upper bounds of all bins but the last, ascending: the first
    bin whose bound is above it (a score equal to a bound is in the bin above). The one binning
    rule: the training labels' levels (``training.labels``, on the label axis) and the reported
    levels (:func:`score_level`, on the score axis) both come from it."""
    return int(np.searchsorted(np.asarray(bounds, dtype=np.float64), score, side="right"))


def level_of(score: float, bounds: Sequence[float], levels: Sequence[str]) -> str:
    """The level word of ``score`` (:func:`level_index`); ``len(levels) == len(bounds) + 1``."""
    if len(levels) != len(bounds) + 1:
        raise ValueError(f"{len(levels)} levels need {len(levels) - 1} bounds, got {len(bounds)}")
    return levels[level_index(score, bounds)]


def score_bounds(n_levels: int = 5) -> tuple[float, ...]:
    """The bins of :func:`expected_level_score` (index / (n - 1)): level k holds the scores whose
    level index rounds to k, i.e. [(k - 0.5) / (n - 1), (k + 0.5) / (n - 1)) (the ends closed at 0
    and 1). For 5 levels: 0.125, 0.375, 0.625, 0.875. The training targets put a label of level k
    at exactly these positions (``training.dataset.unit_position`` maps level k's label bin onto
    index [k - 0.5, k + 0.5]), so a score's bin is the level the labels would give it."""
    return tuple((k + 0.5) / (n_levels - 1) for k in range(n_levels - 1))


SCORE_BOUNDS: tuple[float, ...] = score_bounds(5)


def score_level(score: float, levels: Sequence[str]) -> str:
    """The level word reported for a score in [0, 1]: the bin of :func:`score_bounds` it is in."""
    return level_of(score, score_bounds(len(levels)), levels)


def quality_sentence(level: str) -> str:
    if level not in QUALITY_LEVELS:
        raise ValueError(f"unknown quality level {level!r}")
    return f"The quality is {level}."


def importance_sentence(level: str) -> str:
    if level not in IMPORTANCE_LEVELS:
        raise ValueError(f"unknown importance level {level!r}")
    return f"This region is {level} to the overall quality."


def distortion_sentence(distortions: Sequence[tuple[str, str]]) -> str:
    """SEAGULL's phrasing for (type, severity) pairs, most likely first.

    [] -> the clean sentence; [("blur", "moderate")] -> "With moderate blur distortion.";
    three pairs -> "With moderate blur, mild noise and light contrast distortions."
    """
    if not distortions:
        return CLEAN_SENTENCE
    for dtype, sev in distortions:
        if dtype not in DISTORTION_TYPES:
            raise ValueError(f"unknown distortion type {dtype!r}")
        if sev not in SEVERITY_LEVELS:
            raise ValueError(f"unknown severity {sev!r}")
    parts = [f"{sev} {dtype}" for dtype, sev in distortions]
    if len(parts) == 1:
        return f"With {parts[0]} distortion."
    return f"With {', '.join(parts[:-1])} and {parts[-1]} distortions."


def vocabularies() -> Mapping[str, Sequence[str]]:
    """All vocabularies, as written into each model's ``model.json``."""
    return {
        "quality": list(QUALITY_LEVELS),
        "importance": list(IMPORTANCE_LEVELS),
        "distortion_types": list(DISTORTION_TYPES),
        "severity": list(SEVERITY_LEVELS),
    }
