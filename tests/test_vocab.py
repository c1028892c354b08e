from __future__ import annotations

import numpy as np
import pytest

from seagull_edge import vocab
from seagull_edge.runtime.results import LevelResult, distortions_from_logits


def test_score_is_expected_level_over_four():
    assert vocab.expected_level_score(np.eye(5)[0]) == 0.0
    assert vocab.expected_level_score(np.eye(5)[4]) == 1.0
    p = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    assert vocab.expected_level_score(p) == pytest.approx((0.2 + 0.6 + 0.75 + 0.6) / 4)


def test_softmax_is_stable_and_normalised():
    p = vocab.softmax(np.array([1000.0, 0.0, -1000.0, 999.0, 3.0]))
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
    assert vocab.sigmoid(np.array([-1e4, 0.0, 1e4])).tolist() == [0.0, 0.5, 1.0]


def test_sentences_in_seagull_phrasing():
    assert vocab.quality_sentence("good") == "The quality is good."
    assert vocab.importance_sentence("important") == "This region is important to the overall quality."
    assert vocab.distortion_sentence([("blur", "moderate")]) == "With moderate blur distortion."
    assert (vocab.distortion_sentence([("blur", "moderate"), ("noise", "mild")])
            == "With moderate blur and mild noise distortions.")
    assert (vocab.distortion_sentence([("blur", "moderate"), ("noise", "mild"), ("contrast", "light")])
            == "With moderate blur, mild noise and light contrast distortions.")
    assert vocab.distortion_sentence([]) == vocab.CLEAN_SENTENCE
    with pytest.raises(ValueError):
        vocab.quality_sentence("great")
    with pytest.raises(ValueError):
        vocab.distortion_sentence([("haze", "mild")])


def test_level_result_from_logits():
    r = LevelResult.from_logits(np.array([0.0, 0.0, 0.0, 5.0, 0.0]), vocab.QUALITY_LEVELS)
    assert r.level == "good"
    assert sum(r.probs.values()) == pytest.approx(1.0)
    assert r.score == pytest.approx(vocab.expected_level_score(np.array(list(r.probs.values()))))


def test_distortions_sorted_and_thresholded():
    types = np.array([2.0, -3.0, 4.0, -0.1, 0.0, -5.0])  # blur, colorfulness, noise, compression, contrast, exposure
    sev = np.zeros((6, 5))
    sev[2, 4] = 9  # noise extreme
    sev[0, 1] = 9  # blur light
    got = distortions_from_logits(types, sev)
    assert [(d.type, d.severity) for d in got] == [("noise", "extreme"), ("blur", "light"), ("contrast", "mild")]
    assert got[0].prob > got[1].prob > got[2].prob >= 0.5
    assert distortions_from_logits(np.full(6, -9.0), sev) == []
