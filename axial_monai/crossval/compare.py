"""Paired tests between two models scored on the same test subjects, with a correction for multiple comparisons.

Both models of a pair are cross-validated on the same folds, so each subject is tested once by each, by models that
never saw it. The tests are paired on the subjects (one scan per subject, the earliest: the ``subject`` level of
:mod:`axial_monai.scores`, so the pairs are independent):

* AUC: DeLong's test for two correlated ROC curves (DeLong, DeLong and Clarke-Pearson 1988, in the fast form of
  Sun and Xu 2014). It uses the probabilities, not a threshold, and its variance accounts for both models having
  scored the same subjects.
* Accuracy: McNemar's exact test. Only the subjects on which the two models disagree carry information; their
  count is small on cohorts of ADNI's size, where the chi-squared approximation is poor, so the two-sided binomial
  test on the discordant pairs is used.

Each test is made once per baseline against the reference model; Holm's step-down correction over the baselines
keeps the chance of any false claim of a difference at the nominal level for each metric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InputError
from ..scores import baseline_scans

__all__ = ["delong_test", "mcnemar_test", "holm", "paired_comparisons"]


def _placements(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: for each positive, the share of negatives it outranks (ties count half),
    and for each negative, the share of positives that outrank it."""
    order = np.sign(positive[:, None] - negative[None, :]) * 0.5 + 0.5  # 1, 0.5 or 0 per pair
    return order.mean(1), order.mean(0)


def delong_test(labels: Sequence[int], scores_a: Sequence[float], scores_b: Sequence[float]) -> dict[str, float]:
    """DeLong's test of equal AUCs for two scores of the same cases.

    Args:
        labels: 0/1 per case, ``(N,)``.
        scores_a, scores_b: each model's score of the positive class per case, ``(N,)``.

    Returns:
        ``auc_a``, ``auc_b``, ``difference`` (a - b), ``z`` and the two-sided ``p``; ``p`` is 1 when the two
        scores rank the cases alike (zero variance), NaN when one class is absent.
    """
    labels = np.asarray(labels, int)
    scores = np.stack([np.asarray(scores_a, float), np.asarray(scores_b, float)])
    positives, negatives = labels == 1, labels == 0
    if not positives.any() or not negatives.any():
        nan = float("nan")
        return {"auc_a": nan, "auc_b": nan, "difference": nan, "z": nan, "p": nan}
    v10, v01 = zip(*(_placements(s[positives], s[negatives]) for s in scores), strict=True)
    v10, v01 = np.stack(v10), np.stack(v01)
    aucs = v10.mean(1)
    contrast = np.array([1.0, -1.0])
    variance = 0.0
    for components in (v10, v01):
        if components.shape[1] > 1:
            variance += contrast @ np.cov(components) @ contrast / components.shape[1]
    difference = float(aucs[0] - aucs[1])
    if variance <= 1e-15:
        z, p = 0.0, 1.0
    else:
        z = difference / float(np.sqrt(variance))
        p = float(2 * stats.norm.sf(abs(z)))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": difference, "z": float(z), "p": p}


def mcnemar_test(labels: Sequence[int], predicted_a: Sequence[int], predicted_b: Sequence[int]) -> dict[str, float]:
    """McNemar's exact test of equal accuracies for two classifiers of the same cases.

    Args:
        labels, predicted_a, predicted_b: class per case, ``(N,)``.

    Returns:
        ``acc_a``, ``acc_b``, ``only_a`` (cases only a got right), ``only_b`` and the two-sided ``p`` of the
        binomial test on the discordant cases (1 when there are none).
    """
    labels = np.asarray(labels)
    right_a, right_b = np.asarray(predicted_a) == labels, np.asarray(predicted_b) == labels
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"acc_a": float(right_a.mean()), "acc_b": float(right_b.mean()), "only_a": only_a, "only_b": only_b, "p": p}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p values (the family-wise error rate), in the input order; NaN stays NaN."""
    p = np.asarray(p_values, float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def _subjects(frame: pd.DataFrame, positive: int) -> pd.DataFrame:
    """One row per subject (the earliest scan): ``subject``, ``label``, ``score`` (positive class), ``pred``."""
    probs = [c for c in frame.columns if c.startswith("prob_")]  # in class order
    first = baseline_scans(frame)
    return pd.DataFrame(
        {
            "subject": first["subject"].astype(str),
            "label": first["label"].astype(int),
            "score": first[probs[positive]].astype(float),
            "pred": first[probs].to_numpy().argmax(1),
        }
    ).set_index("subject")


def paired_comparisons(predictions: Mapping[str, pd.DataFrame], reference: str, positive: int = 1) -> pd.DataFrame:
    """The reference model against each other model, on the same test subjects.

    Args:
        predictions: model name -> its pooled out-of-fold predictions (``subject``, ``session``, ``label``,
            ``prob_<class>``; :func:`axial_monai.scores.pool_predictions`).
        reference: the model the others are compared with (e.g. ``"axial"``).
        positive: index of the positive class (its ``prob_`` column in class order).

    Returns:
        one row per other model: ``model``, ``n_subjects``, the DeLong figures (``auc_reference``, ``auc_model``,
        ``auc_difference``, ``auc_p``, ``auc_p_holm``) and McNemar's (``acc_reference``, ``acc_model``,
        ``only_reference``, ``only_model``, ``acc_p``, ``acc_p_holm``).

    Raises:
        InputError: if a model was tested on other subjects or with other labels than the reference (not the same
            folds).
    """
    if reference not in predictions:
        raise InputError(f"No predictions of the reference model {reference!r} (models: {sorted(predictions)}).")
    base = _subjects(predictions[reference], positive)
    rows = []
    for name, frame in predictions.items():
        if name == reference:
            continue
        other = _subjects(frame, positive)
        if set(other.index) != set(base.index):
            missing = sorted(set(base.index) ^ set(other.index))[:5]
            raise InputError(f"{name} and {reference} were not tested on the same subjects (e.g. {missing}).")
        other = other.loc[base.index]
        if not (other["label"] == base["label"]).all():
            raise InputError(f"{name} and {reference} have different labels for the same subjects.")
        auc = delong_test(base["label"], base["score"], other["score"])
        acc = mcnemar_test(base["label"], base["pred"], other["pred"])
        rows.append(
            {
                "model": name,
                "n_subjects": len(base),
                "auc_reference": auc["auc_a"],
                "auc_model": auc["auc_b"],
                "auc_difference": auc["difference"],
                "auc_p": auc["p"],
                "acc_reference": acc["acc_a"],
                "acc_model": acc["acc_b"],
                "only_reference": acc["only_a"],
                "only_model": acc["only_b"],
                "acc_p": acc["p"],
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        table.insert(table.columns.get_loc("auc_p") + 1, "auc_p_holm", holm(table["auc_p"]))
        table["acc_p_holm"] = holm(table["acc_p"])
    return table
