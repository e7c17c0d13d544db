"""Subject-wise, stratified, seeded k-fold splits, shared between tasks for double transfer learning.

Fold assignment (:func:`assign_folds`)
    Every *subject* gets one fold index in ``0 .. k-1`` from scikit-learn's ``StratifiedGroupKFold`` (seeded
    shuffle): rows are scans, groups are subjects, so all scans of a subject land in the same fold, and the
    stratification target is ``(table, label)`` per scan, so each fold gets about ``1/k`` of the scans of every
    class of every table.

    For double transfer learning the assignment is built on the *union* of the subjects of several tables (the
    AD-vs-CN and the sMCI-vs-pMCI tables): a subject who is in both (an MCI converter has AD sessions too) gets
    the same fold for both tasks. So the AD-vs-CN model of fold ``i`` never trained on a subject of fold ``i``,
    the fold on which the sMCI-vs-pMCI model that starts from it is tested. An existing assignment can be
    passed as ``fixed`` (e.g. the AD-vs-CN run's ``fold_assignment.csv``): its subjects keep their fold and only
    the other subjects are assigned, by the same rule among themselves (leak-free, since they were never in the
    other run, but folds are less balanced than with a joint assignment).

Fold splits (:func:`split_fold`)
    The test split of fold ``i`` is the scans of the subjects assigned to ``i``; the subjects of the other folds
    are split again, grouped by subject and stratified by label, into training and validation (about
    ``val_fraction`` of the subjects: the first fold of a ``round(1 / val_fraction)``-fold
    ``StratifiedGroupKFold`` seeded with ``seed + i``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from ..errors import InputError, SettingsError

__all__ = ["SPLITS", "check_table", "assign_folds", "split_fold", "make_folds"]

#: the datalist keys of one fold, in order.
SPLITS = ("training", "validation", "test")


def check_table(table: pd.DataFrame, columns: Sequence[str] = ("subject", "label")) -> None:
    """Raise :class:`~axial_monai.errors.InputError` if ``table`` lacks one of ``columns`` or a subject or label."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"The table has no column {missing}; it has {list(table.columns)}.")
    for column in ("subject", "label"):
        if column in columns and table[column].isna().any():
            raise InputError(f"The table has rows without {column}: rows {table.index[table[column].isna()][:10]}.")


def _stratified_group_folds(frame: pd.DataFrame, n_splits: int, seed: int) -> list[np.ndarray]:
    """Row positions of the ``n_splits`` test folds of ``StratifiedGroupKFold`` (groups = subject, y = stratum).

    When every stratum has fewer rows than ``n_splits`` (too few to stratify; scikit-learn refuses), the subjects
    are shuffled with ``seed`` and dealt to the folds in turn instead, with a warning.
    """
    strata = pd.factorize(frame["stratum"])[0]
    subjects = frame["subject"].to_numpy()
    if np.bincount(strata).max() >= n_splits:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return [test for _, test in splitter.split(np.zeros(len(frame)), strata, groups=subjects)]
    warnings.warn(f"Too few scans per class to stratify {n_splits} folds; subjects are dealt at random.", stacklevel=3)
    order = np.random.default_rng(seed).permutation(sorted(set(subjects)))
    fold_of = {s: i % n_splits for i, s in enumerate(order)}
    return [np.flatnonzero([fold_of[s] == fold for s in subjects]) for fold in range(n_splits)]


def assign_folds(
    tables: pd.DataFrame | Sequence[pd.DataFrame], k: int = 5, seed: int = 0, fixed: Mapping[str, int] | None = None
) -> pd.Series:
    """One fold per subject over the union of the subjects of ``tables`` (see the module docstring).

    Args:
        tables: one table, or several (e.g. AD-vs-CN and sMCI-vs-pMCI) with ``subject`` and ``label`` columns.
        k: number of folds (>= 2).
        seed: seed of the shuffle.
        fixed: ``{subject: fold}`` that is kept as it is; only the other subjects are assigned.

    Returns:
        ``fold`` (int) indexed by ``subject``, sorted by subject.

    Raises:
        SettingsError: for ``k < 2``, a fixed fold outside ``0 .. k-1``, or fewer than ``k`` subjects to assign
            when nothing is fixed.
        InputError: for missing columns.
    """
    if int(k) != k or k < 2:
        raise SettingsError(f"k must be an integer >= 2, not {k!r}.")
    k = int(k)
    tables = [tables] if isinstance(tables, pd.DataFrame) else list(tables)
    if not tables:
        raise SettingsError("assign_folds needs at least one table.")
    rows = []
    for number, table in enumerate(tables):
        check_table(table)
        rows.append(
            pd.DataFrame(
                {"subject": table["subject"].astype(str), "stratum": [f"{number}:{v}" for v in table["label"]]}
            )
        )
    scans = pd.concat(rows, ignore_index=True)
    fixed = {str(s): int(f) for s, f in (fixed or {}).items()}
    bad = {s: f for s, f in fixed.items() if not 0 <= f < k}
    if bad:
        raise SettingsError(f"Fixed folds must be in 0..{k - 1}; got {dict(list(bad.items())[:10])}.")
    folds = dict(fixed)
    rest = scans[~scans["subject"].isin(set(fixed))].reset_index(drop=True)
    subjects = rest["subject"].unique()
    if len(subjects) >= k:
        for fold, positions in enumerate(_stratified_group_folds(rest, k, seed)):
            folds.update(dict.fromkeys(rest["subject"].iloc[positions], fold))
    elif len(subjects):
        if not fixed:
            raise SettingsError(
                f"{k}-fold cross-validation needs at least {k} subjects; the tables have {len(subjects)}."
            )
        order = np.random.default_rng(seed).permutation(sorted(subjects))
        folds.update({s: i % k for i, s in enumerate(order)})  # too few new subjects to stratify: round robin
    return pd.Series(folds, name="fold", dtype=int).rename_axis("subject").sort_index()


def split_fold(
    table: pd.DataFrame, folds: pd.Series | Mapping[str, int], fold: int, val_fraction: float = 0.2, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """The training / validation / test rows of ``table`` for one fold.

    Args:
        table: labelled scans (``subject``, ``label``, ...).
        folds: ``{subject: fold}`` from :func:`assign_folds`; must cover every subject of ``table``.
        fold: the test fold.
        val_fraction: share of the remaining subjects held out for validation (0 < val_fraction < 1).
        seed: seed of the validation split (``seed + fold`` is used).

    Returns:
        ``{"training": ..., "validation": ..., "test": ...}`` (row subsets of ``table``, original order).

    Raises:
        SettingsError: for a bad ``val_fraction``.
        InputError: for subjects without a fold, or a split that would be empty.
    """
    check_table(table)
    if not 0.0 < val_fraction < 1.0:
        raise SettingsError(f"val_fraction must be in (0, 1), not {val_fraction!r}.")
    folds = pd.Series(folds) if not isinstance(folds, pd.Series) else folds
    subject = table["subject"].astype(str)
    unassigned = sorted(set(subject) - set(folds.index.astype(str)))
    if unassigned:
        raise InputError(f"Subjects without a fold: {unassigned[:10]}{' ...' if len(unassigned) > 10 else ''}.")
    in_test = subject.map(folds).to_numpy() == fold
    test, rest = table[in_test], table[~in_test]
    if test.empty:
        raise InputError(f"Fold {fold} has no test scan: no subject of the table is assigned to it.")
    n_rest = rest["subject"].nunique()
    if n_rest < 2:
        raise InputError(f"Fold {fold} leaves {n_rest} subject(s) for training and validation; at least 2 are needed.")
    n_inner = min(max(2, round(1.0 / val_fraction)), n_rest)
    frame = pd.DataFrame({"subject": rest["subject"].astype(str).to_numpy(), "stratum": rest["label"].to_numpy()})
    val_positions = _stratified_group_folds(frame, n_inner, seed + fold)[0]
    is_val = np.zeros(len(rest), dtype=bool)
    is_val[val_positions] = True
    return {"training": rest[~is_val], "validation": rest[is_val], "test": test}


def make_folds(
    table: pd.DataFrame,
    k: int = 5,
    seed: int = 0,
    val_fraction: float = 0.2,
    folds: pd.Series | Mapping[str, int] | None = None,
) -> list[dict[str, pd.DataFrame]]:
    """All ``k`` fold splits of ``table`` (:func:`split_fold`), with ``folds`` from :func:`assign_folds` by default."""
    folds = assign_folds(table, k, seed) if folds is None else folds
    return [split_fold(table, folds, i, val_fraction, seed) for i in range(k)]
