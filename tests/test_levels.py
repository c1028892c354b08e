"""Labels and reported levels share one binning rule (vocab.level_of): a label's level is the bin
that its training target's expected score falls in."""

from __future__ import annotations

import numpy as np
import pytest

from seagull_edge import vocab

pytest.importorskip("torch")  # training.dataset needs it

from seagull_edge.training import labels  # noqa: E402
from seagull_edge.training.dataset import soft_levels, unit_position  # noqa: E402


def test_labels_use_the_vocab_binning():
    assert labels.level is vocab.level_of


@pytest.mark.parametrize("bounds, words, level_of", [
    (labels.QUALITY_BOUNDS, vocab.QUALITY_LEVELS, labels.quality_level),
    (labels.IMPORTANCE_BOUNDS, vocab.IMPORTANCE_LEVELS, labels.importance_level),
])
def test_label_level_is_the_score_bin_of_its_target(bounds, words, level_of):
    rng = np.random.default_rng(1)
    for raw in np.concatenate([rng.uniform(0.0, 1.0, 2000), [0.0, 1.0], np.asarray(bounds)]):
        target = soft_levels(unit_position(raw, bounds))  # what the heads are trained towards
        score = float(vocab.expected_level_score(target))
        assert vocab.score_level(score, words) == level_of(raw), raw


def test_batched_answers_equal_one_roi_at_a_time(rng):
    """answers_from_logits converts all ROIs at once; each answer equals the one-ROI conversion."""
    from seagull_edge.backends.base import answers_from_logits
    from seagull_edge.runtime.results import LevelResult, distortions_from_logits, type_thresholds

    q = 9
    logits = {"quality_logits": rng.normal(size=(q, 5)), "importance_logits": rng.normal(size=(q, 5)),
              "distortion_logits": rng.normal(size=(q, 6)), "severity_logits": rng.normal(size=(q, 6, 5))}
    logits["distortion_logits"][0] = -5.0  # one ROI with no type present
    thresholds = type_thresholds(dict(zip(vocab.DISTORTION_TYPES, [0.3, 0.5, 0.7, 0.4, 0.6, 0.5])))
    answers = answers_from_logits(logits, ("quality", "importance", "distortion"), thresholds)
    def same(a, b):  # the score's dot product may round in the last bit ([Q,n] @ [n] against [n] @ [n])
        return a.level == b.level and a.probs == b.probs and a.score == pytest.approx(b.score, abs=1e-12)

    for i, a in enumerate(answers):
        assert same(a["quality"], LevelResult.from_logits(logits["quality_logits"][i], vocab.QUALITY_LEVELS))
        assert same(a["importance"], LevelResult.from_logits(logits["importance_logits"][i], vocab.IMPORTANCE_LEVELS))
        assert a["distortions"] == distortions_from_logits(logits["distortion_logits"][i],
                                                           logits["severity_logits"][i], thresholds)
    assert any(a["distortions"] for a in answers) and any(not a["distortions"] for a in answers)
    assert same(LevelResult.batch_from_logits(logits["quality_logits"], vocab.QUALITY_LEVELS, rule="score")[0],
                LevelResult.from_logits(logits["quality_logits"][0], vocab.QUALITY_LEVELS, rule="score"))
