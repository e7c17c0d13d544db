"""Scores of a voxel map against a known ground-truth mask (the demo cohort's planted atrophy).

Every score is computed over a *reference* set of voxels: the brain voxels the network reads (``support`` of a
:class:`~axial_monai.explain.scan.ScanExplanation`). A map cannot put relevance where the network reads nothing,
so the chance level is set by what it reads: a uniform map over the reference scores a relevance-mass ratio of 1
and an AUPRC equal to the prevalence. Maps are non-negative ``(X, Y, Z)`` arrays; masks and references are bool
arrays of the same shape. Region names are parameters: nothing here knows a region.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score

from .regions import MISSING_RANK, rank_of, region_relevance
from .volumes import _to_numpy

__all__ = ["pointing_game", "relevance_mass_ratio", "auprc", "region_ranking", "best_region_rank", "map_spearman"]


def _arrays(volume, mask, reference=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = _to_numpy(volume, np.float64)
    truth = np.asarray(mask, bool)
    ref = np.ones(m.shape, bool) if reference is None else np.asarray(reference, bool)
    if not (m.shape == truth.shape == ref.shape):
        raise ValueError(f"map {m.shape}, mask {truth.shape} and reference {ref.shape} must have the same shape.")
    if not np.isfinite(m).all():
        raise ValueError("The map contains NaN or infinite values.")
    return m, truth, ref


def pointing_game(volume, mask, reference=None) -> float:
    """Whether the map's maximum lies in the mask (Zhang et al. 2018), tie-aware.

    Returns:
        the fraction of the voxels holding the maximum (over ``reference``) that lie in ``mask``: 1 or 0 for a
        unique maximum, the expected hit under random tie-breaking otherwise (e.g. a slab-constant attention map);
        0 for a map that is 0 everywhere on the reference.
    """
    m, truth, ref = _arrays(volume, mask, reference)
    values = np.where(ref, m, -np.inf)
    peak = values.max()
    if not np.isfinite(peak) or peak <= 0:
        return 0.0
    top = values == peak
    return float((top & truth).sum() / top.sum())


def relevance_mass_ratio(volume, mask, reference=None) -> float:
    """Share of the map's mass inside the mask divided by the mask's share of the reference volume.

    1 is chance (a uniform map); ``1 / prevalence`` is the maximum (all mass inside the mask). NaN when the map
    has no mass or the mask has no reference voxel.
    """
    m, truth, ref = _arrays(volume, mask, reference)
    total = m[ref].sum()
    inside = truth & ref
    if total <= 0 or not inside.any():
        return float("nan")
    return float((m[inside].sum() / total) / (inside.sum() / ref.sum()))


def auprc(volume, mask, reference=None) -> tuple[float, float]:
    """Area under the precision-recall curve of the map as a voxel classifier of the mask, and the prevalence.

    Uses ``sklearn.metrics.average_precision_score`` over the reference voxels. A random map scores about the
    prevalence (the mask's share of the reference).

    Returns:
        ``(average precision, prevalence)``; ``(nan, 0)`` when the mask has no reference voxel.
    """
    m, truth, ref = _arrays(volume, mask, reference)
    y = truth[ref]
    if not y.any():
        return float("nan"), 0.0
    return float(average_precision_score(y, m[ref])), float(y.mean())


def region_ranking(
    volume, labels, names: Mapping[int, str], reference=None, by: str = "mean", min_voxels: int = 10
) -> pd.DataFrame:
    """Atlas regions ranked by the map over the reference voxels (:func:`.region_relevance` restricted to them).

    Args:
        volume: ``(X, Y, Z)`` map.
        labels: ``(X, Y, Z)`` integer atlas labels.
        names: index -> region name.
        reference: voxels that count (others are treated as background); None for all.
        by: ``"mean"`` (relevance per voxel: a small region that holds the evidence ranks first) or ``"mass"``
            (share of the total relevance: large regions gain by size).
        min_voxels: regions with fewer reference voxels are left out (their mean is noise).

    Returns:
        the :func:`.region_relevance` table, filtered and sorted by ``by`` (descending).
    """
    if by not in ("mean", "mass"):
        raise ValueError(f"by must be 'mean' or 'mass', not {by!r}.")
    lab = np.asarray(labels).astype(np.int64)
    if reference is not None:
        lab = np.where(np.asarray(reference, bool), lab, 0)
    table = region_relevance(volume, lab, names)
    table = table[table["voxels"] >= min_voxels]
    order = ["mean", "mass", "index"] if by == "mean" else ["mass", "mean", "index"]
    return table.sort_values(order, ascending=[False, False, True], kind="stable").reset_index(drop=True)


def best_region_rank(table: pd.DataFrame, regions: Sequence[str]) -> int:
    """1-based rank of the best-ranked of ``regions`` in a ranking table (:data:`.MISSING_RANK` if none is in it)."""
    return min(rank_of(table, list(regions), MISSING_RANK))


def map_spearman(a, b, reference=None) -> float:
    """Spearman rank correlation of two maps over the reference voxels (NaN if either is constant there)."""
    x, _, ref = _arrays(a, np.zeros(np.shape(a), bool), reference)
    y = _to_numpy(b, np.float64)
    if y.shape != x.shape:
        raise ValueError(f"The maps have shapes {x.shape} and {y.shape}.")
    u, v = x[ref], y[ref]
    if u.size < 2 or np.ptp(u) == 0 or np.ptp(v) == 0:
        return float("nan")
    return float(spearmanr(u, v).statistic)
