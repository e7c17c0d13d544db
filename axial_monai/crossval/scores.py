"""Per-fold scores at scan and subject level, and their mean +- sd over folds.

* ``scan`` level: every test scan of the fold.
* ``subject`` level: one scan per test subject, its *baseline*: the earliest session among that subject's test
  scans of the fold (by month of ``ses-M<digits>`` ids, then by session id), since longitudinal scans of one
  subject are not independent.

Metrics: those of :func:`axial_monai.metrics.classification_scores` (ACC, BA, SEN, SPE, MCC, ROC AUC), with
the positive class (AD, pMCI) given by index.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from axial_monai.data.clinica import session_month
from axial_monai.metrics import METRICS, classification_scores

__all__ = ["LEVELS", "join_predictions", "baseline_scans", "level_scores", "summarize"]

LEVELS = ("scan", "subject")


def _key(path: str) -> str:
    return os.path.normpath(os.path.abspath(str(path)))


def join_predictions(predictions_csv: str | os.PathLike, items: Sequence[Mapping]) -> pd.DataFrame:
    """The datalist ``items`` of a split joined (by image path) to the bundle's ``predictions.csv``.

    Args:
        predictions_csv: ``eval-<split>/predictions.csv`` (``file``, ``prob_<class>``..., ``pred``, ...).
        items: the split's datalist items (``image``, ``label``, ``subject``, ``session``).

    Returns:
        one row per item: ``image``, ``subject``, ``session``, ``label`` and the ``prob_<class>`` columns.

    Raises:
        FileNotFoundError: if the CSV is missing.
        RuntimeError: if the CSV has no probability column, or scans of ``items`` have no prediction.
    """
    path = str(predictions_csv)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The predictions file {path} does not exist; did the evaluation run?")
    predictions = pd.read_csv(path)
    probs = [c for c in predictions.columns if c.startswith("prob_")]
    if "file" not in predictions.columns or not probs:
        raise RuntimeError(f"{path} has no 'file' or 'prob_<class>' columns; it has {list(predictions.columns)}.")
    predictions = predictions.assign(image=predictions["file"].map(_key)).drop_duplicates("image")
    frame = pd.DataFrame(
        {
            "image": [_key(item["image"]) for item in items],
            "subject": [str(item["subject"]) for item in items],
            "session": [str(item.get("session", "")) for item in items],
            "label": [int(item["label"]) for item in items],
        }
    )
    joined = frame.merge(predictions[["image", *probs]], on="image", how="left", validate="one_to_one")
    absent = joined.loc[joined[probs[0]].isna(), "image"].tolist()
    if absent:
        raise RuntimeError(f"{path} has no prediction for {len(absent)} scan(s) of the datalist: {absent[:5]}.")
    return joined


def baseline_scans(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per subject: the earliest session (month of ``ses-M<digits>``, then session id; see the module)."""
    months = frame["session"].map(session_month)
    order = frame.assign(_month=months.fillna(np.inf).astype(float), _position=np.arange(len(frame)))
    order = order.sort_values(["subject", "_month", "session", "_position"], kind="stable")
    return order.drop_duplicates("subject").drop(columns=["_month", "_position"]).reset_index(drop=True)


def level_scores(frame: pd.DataFrame, positive: int = 1) -> dict[str, dict[str, float]]:
    """``{level: {metric: value, "n_scans": .., "n_subjects": ..}}`` for a joined test split (see the module)."""
    probs = [c for c in frame.columns if c.startswith("prob_")]
    scores = {}
    for level, rows in (("scan", frame), ("subject", baseline_scans(frame))):
        values = classification_scores(rows[probs].to_numpy(), rows["label"].to_numpy(), positive=positive)
        values.update(n_scans=int(len(rows)), n_subjects=int(rows["subject"].nunique()))
        scores[level] = values
    return scores


def summarize(folds: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and sample sd (``ddof=1``) over folds of each metric at each level, ignoring NaN (e.g. AUC of a
    single-class fold).

    Args:
        folds: one row per fold and level (columns ``fold``, ``level`` and the metrics).

    Returns:
        columns ``level``, ``metric``, ``mean``, ``sd``, ``n_folds`` (folds with a value).
    """
    rows = []
    for level in [lv for lv in LEVELS if lv in set(folds["level"])]:
        part = folds[folds["level"] == level]
        for metric in metrics:
            values = part[metric].astype(float).dropna()
            rows.append(
                {
                    "level": level,
                    "metric": metric,
                    "mean": float(values.mean()) if len(values) else float("nan"),
                    "sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                    "n_folds": int(len(values)),
                }
            )
    return pd.DataFrame(rows, columns=["level", "metric", "mean", "sd", "n_folds"])
