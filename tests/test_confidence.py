"""Bootstrap confidence intervals: the vectorised metrics equal scikit-learn's, resamples keep whole subjects and
both classes, and the intervals behave as intervals should (cover the estimate, shrink with more subjects, widen
when scans of one subject are not independent)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from axial_monai.errors import InputError, SettingsError
from axial_monai.metrics import (
    METRICS,
    bootstrap_intervals,
    classification_scores,
    cluster_bootstrap_weights,
    weighted_binary_scores,
)
from axial_monai.scores import level_intervals, level_scores, pool_predictions, prediction_frame


def _same(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) < 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_weighted_scores_equal_scikit_learn_on_repeated_scans(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(2, 25))
        p = np.round(rng.random(n), 1)  # ties in the scores
        probs, labels = np.stack([1 - p, p], 1), rng.integers(0, 2, n)
        weights = rng.integers(0, 3, (1, n)).astype(float)
        repeated = np.repeat(np.arange(n), weights[0].astype(int))
        if not len(repeated):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn warns on one-class resamples
            expected = classification_scores(probs[repeated], labels[repeated])
        got = weighted_binary_scores(p, labels == 1, probs.argmax(1) == 1, weights)
        for metric in METRICS:
            assert _same(expected[metric], got[metric][0]), metric


def test_resamples_keep_whole_subjects_and_both_classes():
    subjects = np.array(["a", "a", "b", "c", "c", "c", "d", "e"])
    strata = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    weights = cluster_bootstrap_weights(subjects, strata, n_resamples=300, seed=1)
    assert weights.shape == (300, 8)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()  # whole subjects
    per_subject = np.stack([weights[:, 0], weights[:, 2], weights[:, 3], weights[:, 6], weights[:, 7]], 1)
    assert (per_subject[:, [0, 1, 4]].sum(1) == 3).all() and (per_subject[:, [2, 3]].sum(1) == 2).all()  # strata
    assert np.array_equal(weights, cluster_bootstrap_weights(subjects, strata, n_resamples=300, seed=1))
    assert not np.array_equal(weights, cluster_bootstrap_weights(subjects, strata, n_resamples=300, seed=2))


def _data(n_subjects: int, scans_per_subject: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.integers(0, 2, n_subjects), scans_per_subject)
    score = np.repeat(np.clip(0.5 + (rng.random(n_subjects) - 0.5) * 0.9, 0, 1), scans_per_subject)
    score = np.where(labels == 1, np.clip(score + 0.15, 0, 1), score)
    subjects = np.repeat(np.arange(n_subjects), scans_per_subject)
    return np.stack([1 - score, score], 1), labels, subjects


def test_intervals_cover_the_estimate_and_shrink_with_more_subjects():
    small = bootstrap_intervals(*_data(30, 1)[:2], n_resamples=500)
    large = bootstrap_intervals(*_data(600, 1)[:2], n_resamples=500)
    for metric in ("accuracy", "balanced_accuracy", "auc"):
        for result in (small, large):
            assert result[metric]["low"] <= result[metric]["estimate"] <= result[metric]["high"]
        assert large[metric]["high"] - large[metric]["low"] < small[metric]["high"] - small[metric]["low"]


def test_subject_resampling_is_wider_than_treating_repeated_scans_as_independent():
    probs, labels, subjects = _data(40, 5)  # 5 identical scans per subject: 40 independent units, not 200
    clustered = bootstrap_intervals(probs, labels, clusters=subjects, n_resamples=500)
    naive = bootstrap_intervals(probs, labels, n_resamples=500)
    width = {name: r["auc"]["high"] - r["auc"]["low"] for name, r in (("clustered", clustered), ("naive", naive))}
    assert width["clustered"] > 1.5 * width["naive"]


def test_level_intervals_and_pooled_predictions():
    probs, labels, subjects = _data(24, 2, seed=3)
    frame = pd.DataFrame(
        {
            "image": [f"/x/sub-{s}_ses-M{12 * (i % 2):03d}.nii.gz" for i, s in enumerate(subjects)],
            "subject": [f"sub-{s}" for s in subjects],
            "session": [f"ses-M{12 * (i % 2):03d}" for i in range(len(subjects))],
            "label": labels,
            "prob_CN": probs[:, 0],
            "prob_AD": probs[:, 1],
        }
    )
    pooled = pool_predictions([(0, frame.iloc[:24]), (1, frame.iloc[24:])])
    assert list(pooled["fold"]) == [0] * 24 + [1] * 24 and (pooled["pred"] == probs.argmax(1)).all()
    with pytest.raises(ValueError, match="more than one fold"):
        pool_predictions([(0, frame), (1, frame.iloc[:1])])
    intervals = level_intervals(pooled, n_resamples=200)
    point = level_scores(pooled)
    assert intervals["scan"]["n_scans"] == 48 and intervals["subject"]["n_scans"] == 24
    for level in ("scan", "subject"):
        for metric in METRICS:
            assert _same(intervals[level][metric]["estimate"], point[level][metric])
    # subject ids come from the BIDS file names when predictions.csv has no subject column
    csv = frame.drop(columns=["subject", "session"]).rename(columns={"image": "file"})
    recovered = prediction_frame(csv)
    assert recovered["subject"].tolist() == frame["subject"].tolist()
    assert recovered["session"].tolist() == frame["session"].tolist()
    with pytest.raises(ValueError, match="needs 'label'"):
        prediction_frame(csv.drop(columns="label"))


#: four scans, four subjects: sensitivity 0.5 for class 1 and 1.0 for class 0 (hand-computed below)
PROBS = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.55, 0.45], [0.9, 0.1], [0.2, 0.8]])
LABELS = np.array([0, 1, 0, 1, 0, 1])


def test_bootstrap_intervals_refuse_bad_arguments():
    with pytest.raises(InputError, match=r"probs must be \(N, 2\)"):
        bootstrap_intervals(PROBS[:, :1], LABELS)
    with pytest.raises(InputError, match=r"probs must be \(N, 2\)"):
        bootstrap_intervals(PROBS[0], LABELS[:2])  # one row of two values, not an (N, 2) table
    with pytest.raises(InputError, match=r"probs must be \(N, 2\)"):
        bootstrap_intervals(PROBS[:5], LABELS)
    for confidence in (0.0, 1.0, 1.5):
        with pytest.raises(SettingsError, match="confidence must be in"):
            bootstrap_intervals(PROBS, LABELS, confidence=confidence)
    with pytest.raises(SettingsError, match="n_resamples >= 1"):
        bootstrap_intervals(PROBS, LABELS, n_resamples=0)
    one = bootstrap_intervals(PROBS, LABELS, n_resamples=1)  # one resample is allowed: low == high
    assert all(one[m]["low"] == one[m]["high"] or np.isnan(one[m]["low"]) for m in METRICS)


def test_bootstrap_defaults_are_1000_resamples_seed_0_stratified_by_label():
    probs, labels, _ = _data(40, 1)  # enough subjects that the interval ends move with the resamples
    default = bootstrap_intervals(probs, labels)
    assert default == bootstrap_intervals(probs, labels, strata=labels, n_resamples=1000, seed=0)
    assert default != bootstrap_intervals(probs, labels, n_resamples=1001)
    assert bootstrap_intervals(probs, labels, strata=np.zeros(len(labels))) != default  # one stratum
    assert bootstrap_intervals(probs, labels, seed=3) == bootstrap_intervals(probs, labels, seed=3)
    assert bootstrap_intervals(probs, labels, seed=3) != bootstrap_intervals(probs, labels, seed=4)


def test_bootstrap_interval_is_the_percentile_interval_of_the_resampled_scores():
    """confidence 0.5: the 25th and 75th percentiles of the scores over the same resamples."""
    result = bootstrap_intervals(PROBS, LABELS, n_resamples=200, confidence=0.5, seed=5)
    weights = cluster_bootstrap_weights(np.arange(len(LABELS)), LABELS, n_resamples=200, seed=5)
    draws = weighted_binary_scores(PROBS[:, 1], LABELS == 1, PROBS.argmax(1) == 1, weights)
    for metric in METRICS:
        values = draws[metric][np.isfinite(draws[metric])]
        assert result[metric]["low"] == pytest.approx(np.percentile(values, 25), abs=1e-12), metric
        assert result[metric]["high"] == pytest.approx(np.percentile(values, 75), abs=1e-12), metric


def test_bootstrap_estimates_use_the_positive_class():
    # positive 1: 2 of 3 class-1 scans called 1 (0.7, 0.8; 0.45 is not); positive 0: all 3 class-0 scans called 0
    assert bootstrap_intervals(PROBS, LABELS, n_resamples=5)["sensitivity"]["estimate"] == pytest.approx(2 / 3)
    by_zero = bootstrap_intervals(PROBS, LABELS, positive=0, n_resamples=5)
    assert by_zero["sensitivity"]["estimate"] == 1.0 and by_zero["specificity"]["estimate"] == pytest.approx(2 / 3)


def test_bootstrap_of_no_scans_gives_nan_intervals():
    assert all(np.isnan(v) for v in classification_scores(np.zeros((0, 2)), np.zeros(0, dtype=int)).values())
    result = bootstrap_intervals(np.zeros((0, 2)), np.zeros(0, dtype=int))
    assert set(result) == set(METRICS)
    for metric, entry in result.items():
        assert set(entry) == {"estimate", "low", "high"}, metric
        assert np.isnan(entry["low"]) and np.isnan(entry["high"]), metric


def test_cluster_resamples_draw_each_stratum_from_itself_and_reach_every_cluster():
    strata = np.array([0, 1, 1, 2, 2, 2])  # three strata of 1, 2 and 3 subjects
    weights = cluster_bootstrap_weights(np.arange(6), strata, n_resamples=400, seed=0)
    assert (weights[:, :1].sum(1) == 1).all() and (weights[:, 1:3].sum(1) == 2).all()
    assert (weights[:, 3:].sum(1) == 3).all()
    assert (weights.max(0) >= 1).all()  # every subject, the first of its stratum included, is drawn some time
    default = cluster_bootstrap_weights(np.arange(6))
    assert default.shape == (1000, 6) and np.array_equal(
        default, cluster_bootstrap_weights(np.arange(6), None, 1000, 0)
    )


def test_bootstrap_of_one_class_gives_nan_where_a_metric_is_undefined():
    """Only negatives: sensitivity and AUC are undefined in every resample (NaN interval, no error)."""
    result = bootstrap_intervals(PROBS[LABELS == 0], LABELS[LABELS == 0], n_resamples=50)
    for metric in ("sensitivity", "auc"):
        assert np.isnan(result[metric]["low"]) and np.isnan(result[metric]["high"]), metric
    assert result["specificity"] == {"estimate": 1.0, "low": 1.0, "high": 1.0}
