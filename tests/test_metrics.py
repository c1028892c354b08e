from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from seagull_edge.training.metrics import (
    CLEAN, TYPE_LABELS, RoiRecord, evaluate, format_table, per_label_f1, plcc, sample_prf, srocc,
)


# ----------------------------------------------------------------------------- correlations


def test_correlations_match_scipy_on_random_data(rng):
    for n in (2, 3, 10, 257):
        x = rng.normal(size=n)
        y = 0.5 * x + rng.normal(size=n)
        assert srocc(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
        assert plcc(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    # ties: average ranks, as scipy
    x = rng.integers(0, 4, size=50).astype(float)
    y = rng.integers(0, 4, size=50).astype(float)
    assert srocc(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


def test_correlations_hand_computed():
    # ranks of [1, 2, 3, 4] vs [1, 3, 2, 4]: d = [0, 1, -1, 0], rho = 1 - 6*2/(4*15) = 0.8
    assert srocc([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    # x = [1,2,3], y = [1,2,4]: sum of co-deviations 3, sums of squares 2 and 14/3
    assert plcc([1, 2, 3], [1, 2, 4]) == pytest.approx(3 / np.sqrt(2 * 14 / 3))
    # PLCC is linear, not rank based: a monotone non-linear map keeps SROCC = 1 but not PLCC
    x = np.arange(1.0, 8.0)
    assert srocc(x, np.exp(x)) == pytest.approx(1.0)
    assert plcc(x, np.exp(x)) < 0.95


def test_perfect_and_reversed_and_scale_invariance():
    x = np.array([0.1, 0.5, 0.2, 0.9, 0.7])
    assert srocc(x, x) == pytest.approx(1.0) and plcc(x, x) == pytest.approx(1.0)
    assert srocc(x, -x) == pytest.approx(-1.0) and plcc(x, -x) == pytest.approx(-1.0)
    assert plcc(x * 1e200, 3 * x + 1e-300) == pytest.approx(1.0)  # no overflow
    assert plcc(x * 1e-200, x) == pytest.approx(1.0)  # no underflow


def test_constant_or_tiny_input_is_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert srocc([1, 1, 1], [1, 2, 3]) == 0.0
        assert plcc([1, 1, 1], [1, 2, 3]) == 0.0
        assert srocc([1, 2, 3], [5, 5, 5]) == 0.0
        assert plcc([2.0, 2.0], [2.0, 2.0]) == 0.0
        assert srocc([1.0], [2.0]) == 0.0 and plcc([], []) == 0.0


def test_correlations_refuse_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        srocc([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="non-finite"):
        plcc([1, 2, 3], [1, np.inf, 3])
    with pytest.raises(ValueError, match="3 predictions but 2 targets"):
        plcc([1, 2, 3], [1, 2])


# ----------------------------------------------------------------------------- label sets


def test_sample_prf_hand_computed():
    pred = [{"blur"}, {"blur", "noise"}, {"contrast"}]
    true = [{"blur"}, {"blur"}, {"blur", "exposure"}]
    p, r, f = sample_prf(pred, true)
    # sample 1: 1, 1, 1; sample 2: 1/2, 1, 2/3; sample 3: 0, 0, 0
    assert p == pytest.approx((1 + 0.5 + 0) / 3)
    assert r == pytest.approx((1 + 1 + 0) / 3)
    assert f == pytest.approx((1 + 2 / 3 + 0) / 3)  # mean of per-sample F1s, not hmean(p, r)


def test_sample_prf_clean_handling():
    # clean predicted for a clean ROI is a full match; nothing predicted for a distorted ROI is 0
    assert sample_prf([set()], [set()]) == (1.0, 1.0, 1.0)
    assert sample_prf([set()], [{"blur"}]) == (0.0, 0.0, 0.0)
    assert sample_prf([{"blur"}], [set()]) == (0.0, 0.0, 0.0)
    assert sample_prf([{CLEAN}], [set()]) == (1.0, 1.0, 1.0)  # "clean" written out is the same
    p, r, f = sample_prf([set(), {"noise"}], [set(), {"noise", "blur"}])
    assert (p, r, f) == pytest.approx((1.0, 0.75, (1 + 2 / 3) / 2))
    # all predictions empty ("everything is clean") on distorted labels
    assert sample_prf([[], []], [["blur"], ["noise"]]) == (0.0, 0.0, 0.0)


def test_severity_pairs_match_only_on_type_and_severity():
    pred = [{("blur", "moderate"), ("noise", "mild")}]
    true = [{("blur", "moderate"), ("noise", "extreme")}]
    assert sample_prf(pred, true) == pytest.approx((0.5, 0.5, 0.5))
    assert sample_prf([{("blur", "mild")}], [{("noise", "mild")}]) == (0.0, 0.0, 0.0)
    assert sample_prf([set()], [set()]) == (1.0, 1.0, 1.0)


def test_sample_prf_refuses_mismatch_and_empty():
    with pytest.raises(ValueError, match="2 predicted sets but 1"):
        sample_prf([set(), set()], [set()])
    with pytest.raises(ValueError, match="no samples"):
        sample_prf([], [])


def test_per_label_f1_hand_computed():
    pred = [{"blur"}, {"blur", "noise"}, set(), {"noise"}]
    true = [{"blur"}, {"noise"}, set(), {"blur"}]
    f1 = per_label_f1(pred, true, ["blur", "noise", "clean", "exposure"])
    # blur: TP 1, FP 1, FN 1 -> 2/4; noise: TP 1, FP 1, FN 0 -> 2/3; clean: TP 1 -> 1; exposure absent -> 0
    assert f1 == pytest.approx({"blur": 0.5, "noise": 2 / 3, "clean": 1.0, "exposure": 0.0})


# ----------------------------------------------------------------------------- evaluate / table


def _records() -> list[RoiRecord]:
    return [
        RoiRecord(0.9, 0.8, 0.2, 0.1, [], [], [], [], "good", "good"),
        RoiRecord(0.3, 0.2, 0.7, 0.9, {"blur"}, {"blur"}, {("blur", "moderate")}, {("blur", "moderate")},
                  "poor", "bad"),
        RoiRecord(0.5, 0.6, 0.4, 0.3, {"noise", "blur"}, {"noise"}, [("noise", "mild"), ("blur", "mild")],
                  [("noise", "light")], "fair", "fair"),
        RoiRecord(0.1, 0.1, 0.9, 0.8, {"exposure"}, {"contrast"}, {("exposure", "extreme")},
                  {("contrast", "extreme")}),
    ]


def test_evaluate_keys_and_ranges():
    res = evaluate(_records())
    assert res["n"] == 4
    assert set(res) >= {"n", "quality", "importance", "distortion_type", "severity", "per_type_f1",
                        "per_type_f1_avg", "quality_level_accuracy"}
    for task in ("quality", "importance"):
        assert set(res[task]) == {"srocc", "plcc"}
        assert all(-1.0 <= v <= 1.0 for v in res[task].values())
    assert res["quality"]["srocc"] == pytest.approx(stats.spearmanr([0.9, 0.3, 0.5, 0.1], [0.8, 0.2, 0.6, 0.1])[0])
    for key in ("distortion_type", "severity"):
        assert set(res[key]) == {"precision", "recall", "f1"}
        assert all(0.0 <= v <= 1.0 for v in res[key].values())
    # types: clean 1/1/1, blur 1/1/1, {noise, blur} vs {noise}: 1/2, 1, 2/3, exposure vs contrast: 0
    assert res["distortion_type"]["precision"] == pytest.approx(2.5 / 4)
    assert res["distortion_type"]["recall"] == pytest.approx(3 / 4)
    # severity: clean match, exact match, no pair matches (mild != light), wrong type
    assert res["severity"]["f1"] == pytest.approx(2 / 4)
    assert list(res["per_type_f1"]) == list(TYPE_LABELS)
    assert res["per_type_f1"]["clean"] == 1.0 and res["per_type_f1"]["colorfulness"] == 0.0
    assert res["per_type_f1"]["blur"] == pytest.approx(2 / 3)
    assert res["per_type_f1_avg"] == pytest.approx(np.mean(list(res["per_type_f1"].values())))
    # level accuracy only over the 3 records with both levels: good=good, poor!=bad, fair=fair
    assert res["quality_level_n"] == 3 and res["quality_level_accuracy"] == pytest.approx(2 / 3)


def test_evaluate_without_levels_and_empty():
    recs = [RoiRecord(0.1, 0.2, 0.3, 0.4, set(), set(), set(), set())] * 2
    res = evaluate(recs)
    assert res["quality_level_accuracy"] is None
    assert res["quality"] == {"srocc": 0.0, "plcc": 0.0}  # constant scores
    with pytest.raises(ValueError):
        evaluate([])


def test_roi_record_validates_sets():
    r = RoiRecord(0, 0, 0, 0, ["blur"], ("blur",), [["blur", "mild"]], set())
    assert r.types_pred == frozenset({"blur"}) and r.severities_pred == frozenset({("blur", "mild")})
    with pytest.raises(TypeError, match="set of type words"):
        RoiRecord(0, 0, 0, 0, "blur", set(), set(), set())
    with pytest.raises(TypeError, match="pairs"):
        RoiRecord(0, 0, 0, 0, set(), set(), {"blur"}, set())


def test_format_table_contains_the_numbers():
    res = evaluate(_records())
    text = format_table(res)
    assert f"{res['quality']['srocc']:.4f}" in text and f"{res['importance']['plcc']:.4f}" in text
    t = res["distortion_type"]
    assert f"{100 * t['precision']:.2f}/{100 * t['recall']:.2f}/{100 * t['f1']:.2f}" in text
    s = res["severity"]
    assert f"{100 * s['precision']:.2f}/{100 * s['recall']:.2f}/{100 * s['f1']:.2f}" in text
    for head in ("Quality SROCC", "Importance PLCC", "Severity P/R/F1 (%)", "Type P/R/F1 (%)", "Clean", "Avg"):
        assert head in text
    assert f"{100 * res['per_type_f1_avg']:.2f}" in text
    assert "66.67%" in text and "n = 4" in text
    # the paper's Seagull row is reproduced in the same layout
    paper = {"n": 1, "quality": {"srocc": 0.7452, "plcc": 0.7465}, "importance": {"srocc": 0.8603, "plcc": 0.8468},
             "severity": {"precision": 0.2950, "recall": 0.3251, "f1": 0.2903},
             "distortion_type": {"precision": 0.5990, "recall": 0.6687, "f1": 0.5908}}
    row = format_table(paper).splitlines()[-1]
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "0.7452", "0.7465", "0.8603", "0.8468", "29.50/32.51/29.03", "59.90/66.87/59.08"]
