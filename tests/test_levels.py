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
