"""Subject-wise training / validation / test datalists for the bundle: one hold-out split, or ``k`` folds.

The splits are those of the cross-validation (:mod:`axial_monai.crossval.splits`): the test split of the hold-out
datalist is fold 0 of a ``round(1 / test_fraction)``-fold assignment, and validation subjects are taken from the
rest, stratified by label, grouped by subject. With ``assign_with`` (the other task's table) the assignment covers
both tasks' subjects, so an MCI converter tested for sMCI vs pMCI was never trained on for AD vs CN. Every datalist
passes :func:`axial_monai.crossval.leakage.check_no_leakage` before it is written.

Example:
    >>> table = clinica_task_table("/data/bids", "ADvsCN", derivatives_dir="/data/out")
    >>> written = write_datalists(table, "datalist.json")  # {"training": [...], "validation": [...], "test": [...]}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..errors import InputError, SettingsError
from ..io import write_json
from .leakage import check_no_leakage
from .runner import table_to_items
from .splits import SPLITS, assign_folds, make_folds, split_fold

__all__ = ["holdout_split", "class_counts", "fold_paths", "write_datalists"]


def holdout_split(
    table: pd.DataFrame,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    seed: int = 0,
    assign_with: Sequence[pd.DataFrame] = (),
) -> dict[str, pd.DataFrame]:
    """One subject-wise stratified training / validation / test split of ``table`` (see the module docstring).

    Args:
        table: labelled scans (``subject``, ``label``, ...).
        test_fraction: share of the subjects in the test split, in (0, 0.5].
        val_fraction: share of the remaining subjects in the validation split.
        seed: seed of the assignment and of the validation split.
        assign_with: more tables whose subjects take part in the assignment (the other task).

    Raises:
        ValueError: for a ``test_fraction`` outside (0, 0.5] or too few subjects.
    """
    if not 0.0 < test_fraction <= 0.5:
        raise SettingsError(f"test_fraction must be in (0, 0.5], not {test_fraction!r}.")
    folds = assign_folds([table, *assign_with], max(2, round(1.0 / test_fraction)), seed)
    return split_fold(table, folds, 0, val_fraction, seed)


def class_counts(splits: dict[str, pd.DataFrame], class_names: Sequence[str]) -> pd.DataFrame:
    """Scans and subjects per split and class: columns ``split``, ``class``, ``scans``, ``subjects``."""
    rows = []
    for split in SPLITS:
        part = splits[split]
        for label, name in enumerate(class_names):
            members = part[part["label"] == label]
            rows.append(
                {"split": split, "class": name, "scans": len(members), "subjects": members["subject"].nunique()}
            )
    return pd.DataFrame(rows)


def fold_paths(out: str | os.PathLike, k: int | None) -> list[Path]:
    """``[out]`` for a hold-out split; ``<stem>_fold-<i><suffix>`` next to ``out`` for ``k`` folds."""
    out = Path(out)
    if k is None:
        return [out]
    return [out.with_name(f"{out.stem}_fold-{i}{out.suffix or '.json'}") for i in range(k)]


def write_datalists(
    table: pd.DataFrame,
    out: str | os.PathLike,
    k: int | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    seed: int = 0,
    assign_with: Sequence[pd.DataFrame] = (),
) -> list[tuple[Path, dict[str, pd.DataFrame]]]:
    """Write the hold-out datalist (``k=None``) or one datalist per fold, each checked for subject leakage.

    Items are those of the cross-validation (:func:`axial_monai.crossval.runner.table_to_items`: absolute
    ``image``, ``label``, ``subject``, ``session``, ``diagnosis``), so they load with
    :func:`axial_monai.data.datalist.load_split` whatever ``dataset_dir`` is.

    Args:
        table: labelled scans with ``image`` (e.g. :func:`axial_monai.data.clinica.clinica_task_table`).
        out: JSON path (with ``k``: the stem of the per-fold files, see :func:`fold_paths`).
        k: number of folds, or None for one hold-out split.
        test_fraction: share of test subjects of the hold-out split (ignored with ``k``).
        val_fraction: share of validation subjects among the non-test subjects.
        seed: seed of the splits.
        assign_with: other tables whose subjects take part in the fold assignment.

    Returns:
        ``(path, splits)`` per datalist written.

    Raises:
        ValueError: for bad arguments, a table with missing images, or subject leakage (never written then).
    """
    if table["image"].isna().any():
        raise InputError("The table has scans without image; build it with missing_image='drop' to leave them out.")
    if k is None:
        all_splits = [holdout_split(table, test_fraction, val_fraction, seed, assign_with)]
    else:
        folds = assign_folds([table, *assign_with], k, seed)
        all_splits = make_folds(table, k, seed, val_fraction, folds=folds)
    written = []
    for fold, (path, splits) in enumerate(zip(fold_paths(out, k), all_splits, strict=True)):
        check_no_leakage(splits, fold=None if k is None else fold)
        datalist = {name: table_to_items(splits[name]) for name in SPLITS}
        write_json(path, datalist, indent=1)
        written.append((path, splits))
    return written
