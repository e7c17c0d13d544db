"""Scan-level classification metrics (scikit-learn) and their ignite wrappers for the bundle's evaluators."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ignite.distributed as idist
import numpy as np
import torch
from ignite.metrics import EpochMetric
from monai.utils import evenly_divisible_all_gather
from sklearn import metrics as skm

from axial_monai.errors import SettingsError

__all__ = ["METRICS", "classification_scores", "ClassificationMetric", "classification_metrics", "probs_and_labels"]

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "mcc", "auc")


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
        ``{name: value}``; AUC is NaN when only one class is present.
    """
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels).astype(int).ravel()
    pred = probs.argmax(1)
    is_pos, pred_pos = labels == positive, pred == positive
    scores = {
        "accuracy": skm.accuracy_score(labels, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(labels, pred) if len(labels) else float("nan"),
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
