"""Per-fold scores at scan and subject level, and their mean +- sd over folds.

* ``scan`` level: every test scan of the fold.
* ``subject`` level: one scan per test subject, its *baseline*: the earliest session among that subject's test
  scans of the fold (by month of ``ses-M<digits>`` ids, then by session id), since longitudinal scans of one
  subject are not independent.

Metrics: those of :func:`axial_monai.metrics.classification_scores` (ACC, BA, SEN, SPE, MCC, ROC AUC), with
the positive class (AD, pMCI) given by index.

Confidence intervals (:func:`level_intervals`): percentile bootstrap over *subjects*, stratified by the label of
the subject's baseline scan. At subject level each drawn subject contributes its baseline scan; at scan level it
contributes all its scans (a cluster bootstrap: scans of one subject are not independent, so resampling scans
would give intervals that are too narrow).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .derivatives import session_month
from .errors import InputError
from .metrics import METRICS, bootstrap_intervals, classification_scores

__all__ = [
    "LEVELS",
    "join_predictions",
    "baseline_scans",
    "level_scores",
    "level_intervals",
    "pool_predictions",
    "prediction_frame",
    "summarize",
]

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


_SUBJECT = re.compile(r"(sub-[A-Za-z0-9]+)")


def prediction_frame(predictions: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A ``predictions.csv`` (bundle evaluation or pooled cross-validation) as a table to score per level.

    Args:
        predictions: the CSV path or its table; needs ``label`` and ``prob_<class>`` columns.

    Returns:
        the table with ``subject`` and ``session`` filled in: from their columns when present, else the
        ``sub-<label>`` / ``ses-<label>`` entities of the file name, else the file itself (every scan its own subject).

    Raises:
        ValueError: if there is no ``label`` or ``prob_<class>`` column (e.g. inference on unlabelled scans).
    """
    frame = pd.read_csv(predictions) if not isinstance(predictions, pd.DataFrame) else predictions.copy()
    source = predictions if not isinstance(predictions, pd.DataFrame) else "the predictions"
    if "label" not in frame.columns or not any(c.startswith("prob_") for c in frame.columns):
        raise InputError(f"{source} needs 'label' and 'prob_<class>' columns; it has {list(frame.columns)}.")
    names = frame["file"].astype(str).map(os.path.basename) if "file" in frame.columns else None
    if "subject" not in frame.columns:
        found = names.str.extract(_SUBJECT, expand=False) if names is not None else None
        frame["subject"] = found.fillna(frame["file"].astype(str)) if found is not None else np.arange(len(frame))
    if "session" not in frame.columns:
        found = names.str.extract(r"(ses-[A-Za-z0-9]+)", expand=False) if names is not None else None
        frame["session"] = found.fillna("") if found is not None else ""
    frame["subject"] = frame["subject"].astype(str)
    frame["session"] = frame["session"].fillna("").astype(str)
    frame["label"] = frame["label"].astype(int)
    return frame


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


def level_intervals(
    frame: pd.DataFrame, positive: int = 1, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, dict]:
    """Estimates and bootstrap confidence intervals per level (see the module docstring).

    Args:
        frame: one row per scan with ``subject``, ``session``, ``label`` and two ``prob_<class>`` columns.
        positive: index of the positive class.
        n_resamples, confidence, seed: of the bootstrap (:func:`axial_monai.metrics.bootstrap_intervals`).

    Returns:
        ``{level: {"n_scans", "n_subjects", metric: {"estimate", "low", "high"}}}`` for ``scan`` and ``subject``.
    """
    probs = [c for c in frame.columns if c.startswith("prob_")]
    frame = frame.assign(subject=frame["subject"].astype(str))
    baseline = baseline_scans(frame)
    stratum = frame["subject"].map(dict(zip(baseline["subject"], baseline["label"])))
    out = {}
    for level, rows, strata in (("scan", frame, stratum), ("subject", baseline, baseline["label"])):
        intervals = bootstrap_intervals(
            rows[probs].to_numpy(),
            rows["label"].to_numpy(),
            clusters=rows["subject"].to_numpy(),
            strata=strata.to_numpy(),
            positive=positive,
            n_resamples=n_resamples,
            confidence=confidence,
            seed=seed,
        )
        out[level] = {"n_scans": int(len(rows)), "n_subjects": int(rows["subject"].nunique()), **intervals}
    return out


def pool_predictions(folds: Sequence[tuple[int, pd.DataFrame]]) -> pd.DataFrame:
    """The out-of-fold predictions of all folds in one table, with ``fold``, ``pred`` (argmax) columns.

    Args:
        folds: ``(fold, joined test split)`` pairs (:func:`join_predictions`).

    Raises:
        ValueError: if a scan appears in two folds' test splits (it would be scored twice).
    """
    pooled = pd.concat([frame.assign(fold=fold) for fold, frame in folds], ignore_index=True)
    twice = pooled.loc[pooled["image"].duplicated(), "image"].tolist()
    if twice:
        raise InputError(f"Scans tested in more than one fold: {twice[:5]}.")
    probs = [c for c in pooled.columns if c.startswith("prob_")]
    pooled["pred"] = pooled[probs].to_numpy().argmax(1)
    return pooled[["fold", "subject", "session", "image", "label", *probs, "pred"]]


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
