"""Scan-level classification metrics (scikit-learn) and their ignite wrappers for the bundle's evaluators."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ignite.distributed as idist
import numpy as np
import torch
from ignite.metrics import EpochMetric
from monai.utils import evenly_divisible_all_gather
from scipy import sparse
from sklearn import metrics as skm

from .errors import InputError, SettingsError

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "classification_scores",
    "weighted_binary_scores",
    "cluster_bootstrap_weights",
    "bootstrap_intervals",
    "ClassificationMetric",
    "classification_metrics",
    "probs_and_labels",
]

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "mcc", "auc")
#: metric -> label shown in tables (reports, bundle READMEs).
METRIC_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "mcc": "MCC",
    "auc": "ROC AUC",
}


def classification_scores(
    probs: np.ndarray, labels: np.ndarray, positive: int = 1, names: Sequence[str] = METRICS
) -> dict[str, float]:
    """ACC, BA, SEN, SPE, MCC and ROC AUC of a binary task.

    Args:
        probs: class probabilities ``(N, C)`` (or scores); the prediction is their argmax.
        labels: integer labels ``(N,)``.
        positive: index of the positive class (AD, pMCI); sensitivity is its recall, specificity the recall of
            the other scans. With more than 2 classes, BA, MCC and accuracy are multi-class and AUC is
            one-vs-rest macro.
        names: which metrics to return.

    Returns:
        ``{name: value}``; AUC is NaN when only one class is present, every metric is NaN without scans.
    """
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels).astype(int).ravel()
    if not len(labels):  # scikit-learn refuses empty inputs
        return {k: float("nan") for k in names}
    pred = probs.argmax(1)
    is_pos, pred_pos = labels == positive, pred == positive
    scores = {
        "accuracy": skm.accuracy_score(labels, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(labels, pred),
        "sensitivity": skm.recall_score(is_pos, pred_pos, zero_division=np.nan),
        "specificity": skm.recall_score(~is_pos, ~pred_pos, zero_division=np.nan),
        "mcc": skm.matthews_corrcoef(labels, pred),
        "auc": float("nan"),
    }
    if len(np.unique(labels)) > 1:
        if probs.shape[1] == 2:
            scores["auc"] = skm.roc_auc_score(is_pos, probs[:, positive])
        else:
            scores["auc"] = skm.roc_auc_score(labels, probs, multi_class="ovr", labels=list(range(probs.shape[1])))
    return {k: float(scores[k]) for k in names}


def weighted_binary_scores(
    scores: np.ndarray, is_positive: np.ndarray, predicted_positive: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """The six :data:`METRICS` of a binary task for many weightings of the same scans at once.

    A bootstrap resample is a weighting: weight = how often the scan was drawn. Computing all resamples as one
    matrix product is about a thousand times faster than calling scikit-learn per resample; with unit weights the
    values equal :func:`classification_scores` (checked in ``tests/test_confidence.py``, ties included).

    Args:
        scores: ``(N,)`` probability of the positive class (AUC).
        is_positive: ``(N,)`` bool, true label is the positive class.
        predicted_positive: ``(N,)`` bool, predicted label (argmax) is the positive class.
        weights: ``(B, N)`` non-negative weights (one row per resample).

    Returns:
        ``{metric: (B,)}``; NaN where undefined (a class absent: SEN or SPE, AUC), BA over the classes present and
        MCC 0 where its denominator is 0 (as scikit-learn).
    """
    w = np.asarray(weights, dtype=np.float64)
    pos, pred = np.asarray(is_positive, bool), np.asarray(predicted_positive, bool)
    tp, fn = w @ (pos & pred), w @ (pos & ~pred)
    tn, fp = w @ (~pos & ~pred), w @ (~pos & pred)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = tp + fn + tn + fp
        sensitivity, specificity = tp / (tp + fn), tn / (tn + fp)
        denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        mcc = np.where(denominator > 0, (tp * tn - fp * fn) / np.where(denominator > 0, denominator, 1), 0.0)
        # AUC (Mann-Whitney): each positive beats the negative weight below its score, and half of the tied one
        levels, level_of = np.unique(np.asarray(scores, np.float64), return_inverse=True)
        one_hot = sparse.csr_array((np.ones(len(level_of)), (np.arange(len(level_of)), level_of)))  # (N, L)
        neg_at, pos_at = np.asarray((w * ~pos) @ one_hot), np.asarray((w * pos) @ one_hot)  # (B, L)
        below = np.cumsum(neg_at, axis=1) - neg_at
        auc = (pos_at * (below + 0.5 * neg_at)).sum(1) / ((tp + fn) * (tn + fp))
    return {
        "accuracy": (tp + tn) / n,
        # scikit-learn averages the recall of the classes present only
        "balanced_accuracy": np.where(
            np.isnan(sensitivity),
            specificity,
            np.where(np.isnan(specificity), sensitivity, (sensitivity + specificity) / 2),
        ),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "mcc": mcc,
        "auc": auc,
    }


def cluster_bootstrap_weights(
    clusters: np.ndarray, strata: np.ndarray | None = None, n_resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """Bootstrap weights ``(n_resamples, N)`` that resample whole clusters (subjects), within strata.

    Each resample draws, in every stratum, as many clusters as it has, with replacement; a scan's weight is the
    number of times its cluster was drawn. Stratifying by class keeps both classes in every resample, so AUC,
    sensitivity and specificity are always defined.

    Args:
        clusters: ``(N,)`` cluster id of each scan (e.g. the subject).
        strata: ``(N,)`` stratum of each scan, constant within a cluster (e.g. the subject's baseline label);
            ``None`` for one stratum.
        n_resamples: number of resamples B.
        seed: seed of ``numpy.random.default_rng``.
    """
    cluster_ids, cluster_of = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    stratum_of_cluster = np.zeros(len(cluster_ids), dtype=np.int64)
    if strata is not None:
        codes = np.unique(np.asarray(strata).astype(str), return_inverse=True)[1]
        stratum_of_cluster[cluster_of] = codes  # the last scan's stratum; strata are constant within a cluster
    rng = np.random.default_rng(seed)
    drawn = np.zeros((n_resamples, len(cluster_ids)))
    rows = np.arange(n_resamples)[:, None]
    for stratum in np.unique(stratum_of_cluster):
        members = np.flatnonzero(stratum_of_cluster == stratum)
        picks = members[rng.integers(0, len(members), size=(n_resamples, len(members)))]
        np.add.at(drawn, (np.broadcast_to(rows, picks.shape), picks), 1.0)
    return drawn[:, cluster_of]


def bootstrap_intervals(
    probs: np.ndarray,
    labels: np.ndarray,
    clusters: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    positive: int = 1,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Point estimates and percentile bootstrap confidence intervals of the six :data:`METRICS` (binary tasks).

    Args:
        probs: ``(N, 2)`` class probabilities.
        labels: ``(N,)`` integer labels.
        clusters: ``(N,)`` resampling unit of each scan (subject); ``None``: every scan is its own unit.
        strata: ``(N,)`` stratum per scan, constant within a cluster; default: the labels.
        positive: index of the positive class.
        n_resamples: bootstrap resamples.
        confidence: coverage of the interval, e.g. 0.95.
        seed: seed of the resampling.

    Returns:
        ``{metric: {"estimate", "low", "high"}}``: the estimate from :func:`classification_scores` on all scans,
        the interval from the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resamples
        (NaN resamples ignored).

    Raises:
        ValueError: for probabilities that are not ``(N, 2)``, a confidence outside (0, 1) or fewer than 1 resample.
    """
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels).astype(int).ravel()
    if probs.ndim != 2 or probs.shape[1] != 2 or len(probs) != len(labels):
        raise InputError(f"probs must be (N, 2) for N={len(labels)} labels, not {probs.shape}.")
    if not 0.0 < confidence < 1.0 or n_resamples < 1:
        raise SettingsError(f"confidence must be in (0, 1) and n_resamples >= 1, not {confidence}, {n_resamples}.")
    estimate = classification_scores(probs, labels, positive)
    if not len(labels):
        return {m: {"estimate": estimate[m], "low": float("nan"), "high": float("nan")} for m in METRICS}
    clusters = np.arange(len(labels)) if clusters is None else np.asarray(clusters)
    weights = cluster_bootstrap_weights(clusters, labels if strata is None else strata, n_resamples, seed)
    draws = weighted_binary_scores(probs[:, positive], labels == positive, probs.argmax(1) == positive, weights)
    tails = [50 * (1 - confidence), 50 * (1 + confidence)]
    out = {}
    for metric in METRICS:
        values = draws[metric][np.isfinite(draws[metric])]
        low, high = np.percentile(values, tails) if len(values) else (np.nan, np.nan)
        out[metric] = {"estimate": estimate[metric], "low": float(low), "high": float(high)}
    return out


def probs_and_labels(output: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Output transform for decollated evaluator outputs: ``(probs (B, C), labels (B,))``."""
    probs = torch.stack([torch.as_tensor(o["pred"]).float().view(-1) for o in output])
    labels = torch.stack([torch.as_tensor(o["label"]).long().view(-1)[0] for o in output])
    return probs, labels


class ClassificationMetric(EpochMetric):
    """One of ``METRICS`` as an ignite metric, computed on the whole epoch (gathered over DDP ranks).

    Args:
        name: metric name from ``METRICS``.
        positive: index of the positive class.
        output_transform: maps the engine output to ``(probs (B, C), labels (B,))``.
    """

    def __init__(self, name: str, positive: int = 1, output_transform: Callable = probs_and_labels) -> None:
        if name not in METRICS:
            raise SettingsError(f"Unknown metric {name!r}; choose one of {METRICS}.")
        self.name, self.positive = name, positive
        super().__init__(self._compute, output_transform=output_transform, check_compute_fn=False)

    def _compute(self, probs: torch.Tensor, labels: torch.Tensor) -> float:
        return classification_scores(probs.cpu().numpy(), labels.cpu().numpy(), self.positive, [self.name])[self.name]

    def compute(self) -> float:
        # EpochMetric's all_gather needs the same number of samples on every rank (DistributedSampler with
        # even_divisible=False breaks it): gather padded shards, trim, and score the same data on every rank.
        if idist.get_world_size() <= 1:
            return super().compute()
        probs = evenly_divisible_all_gather(torch.cat(self._predictions), concat=True)
        labels = evenly_divisible_all_gather(torch.cat(self._targets), concat=True)
        return self._compute(probs, labels)


def classification_metrics(
    names: Sequence[str] = METRICS, positive: int = 1, prefix: str = ""
) -> dict[str, ClassificationMetric]:
    """New ignite metrics ``{prefix + name: ClassificationMetric(name, positive)}``, e.g. for an evaluator's
    ``key_val_metric`` or ``additional_metrics``.

    Every call builds new metric objects: an ignite metric holds the state of the engine it is attached to, so a
    trainer and an evaluator must not share one. The bundle configs define the positive class once
    (``"metrics"``, a partial of this function) and call it where metrics are needed.

    Args:
        names: metric names from ``METRICS``.
        positive: index of the positive class.
        prefix: prefix of the keys (e.g. ``"val_"``), which are the names in ``engine.state.metrics``.
    """
    return {f"{prefix}{name}": ClassificationMetric(name, positive) for name in names}
