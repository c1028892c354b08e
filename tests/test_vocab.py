from __future__ import annotations

import numpy as np
import pytest

from seagull_edge import vocab
from seagull_edge.runtime.results import AssessmentResult, LevelResult, RoiResult, distortions_from_logits


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


def test_score_bins():
    assert vocab.SCORE_BOUNDS == vocab.score_bounds(5) == (0.125, 0.375, 0.625, 0.875)
    q = vocab.QUALITY_LEVELS
    assert [vocab.score_level(s, q) for s in (0.0, 0.1249, 0.125, 0.5, 0.6249, 0.625, 0.875, 1.0)] == [
        "bad", "bad", "poor", "fair", "fair", "good", "excellent", "excellent"]
    assert vocab.level_index(0.3, (0.2, 0.4)) == 1 and vocab.level_of(0.4, (0.2, 0.4), "abc") == "c"
    with pytest.raises(ValueError):
        vocab.level_of(0.5, (0.2, 0.4), "ab")


def _roi(quality: LevelResult, importance: LevelResult) -> RoiResult:
    return RoiResult(0, {"box": [0, 0, 4, 4]}, [0, 0, 4, 4], 16, quality=quality, importance=importance)


def test_level_is_the_most_likely_word_and_score_the_expectation():
    """The default level is the argmax (right more often on held-out data than the score's bin);
    the score is the expectation; both are reported, and the bin rule is there on request."""
    probs = np.array([0.4, 1e-12, 0.1, 1e-12, 0.5])  # argmax excellent, expectation (0.2 + 2) / 4
    r = LevelResult.from_logits(np.log(probs), vocab.QUALITY_LEVELS)
    assert r.level == "excellent" and r.score == pytest.approx(0.55)
    roi = _roi(r, LevelResult.from_logits(np.log(probs), vocab.IMPORTANCE_LEVELS))
    d = roi.to_dict()
    assert d["quality"]["level"] == "excellent" and d["quality"]["probs"]["bad"] == 0.4  # probs kept
    assert d["answers"]["quality"] == "The quality is excellent."
    assert d["answers"]["importance"] == "This region is essential to the overall quality."
    text = AssessmentResult("x.png", 4, 4, "m", "onnxruntime", [roi]).summary()
    assert "quality: The quality is excellent. (score 0.55)" in text
    assert LevelResult.from_logits(np.log(probs), vocab.QUALITY_LEVELS, rule="score").level == "fair"
    with pytest.raises(ValueError):
        LevelResult.from_logits(np.log(probs), vocab.QUALITY_LEVELS, rule="mode")


def test_rules_over_random_logits():
    """argmax: the most likely word; score: the score's bin (the labels' bins); the sentence
    always follows the level."""
    rng = np.random.default_rng(0)
    q_words, i_words = vocab.QUALITY_LEVELS, vocab.IMPORTANCE_LEVELS
    for n in range(3000):
        scale = (0.1, 1.0, 4.0, 20.0)[n % 4]  # flat to peaked distributions
        logits_q, logits_i = rng.normal(0.0, scale, 5), rng.normal(0.0, scale, 5)
        q = LevelResult.from_logits(logits_q, q_words)
        i = LevelResult.from_logits(logits_i, i_words)
        assert q.level == q_words[int(np.argmax(logits_q))] and i.level == i_words[int(np.argmax(logits_i))]
        for r, words in ((LevelResult.from_logits(logits_q, q_words, rule="score"), q_words),
                         (LevelResult.from_logits(logits_i, i_words, rule="score"), i_words)):
            assert 0.0 <= r.score <= 1.0
            k = min(int(np.floor(4 * r.score + 0.5)), 4)  # the level index / 4, rounded (half up)
            assert r.level == words[k] == vocab.score_level(r.score, words)
        answers = _roi(q, i).to_dict()["answers"]
        assert answers["quality"] == vocab.quality_sentence(q.level)
        assert answers["importance"] == vocab.importance_sentence(i.level)


def test_distortions_sorted_and_thresholded():
    types = np.array([2.0, -3.0, 4.0, -0.1, 0.0, -5.0])  # blur, colorfulness, noise, compression, contrast, exposure
    sev = np.zeros((6, 5))
    sev[2, 4] = 9  # noise extreme
    sev[0, 1] = 9  # blur light
    got = distortions_from_logits(types, sev)
    assert [(d.type, d.severity) for d in got] == [("noise", "extreme"), ("blur", "light"), ("contrast", "mild")]
    assert got[0].prob > got[1].prob > got[2].prob >= 0.5
    assert distortions_from_logits(np.full(6, -9.0), sev) == []
