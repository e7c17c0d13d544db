"""Atlas-region metrics of a voxel map (attention or CAM), per scan and over a cohort.

The map ``M`` and the label volume are ``(X, Y, Z)`` arrays on the same grid (resample the atlas onto the map's
grid first, e.g. with :func:`axial_monai.data.atlas.resample_atlas`). Label 0 is background; every other label
is a region. Volumes ``V`` are counts of voxels; ``volume_mm3`` is ``V`` times the volume of one voxel
(``abs(det(affine[:3, :3]))``) when that is given. Region names are parameters: nothing here knows a region.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .volumes import _to_numpy

__all__ = [
    "REGION_COLUMNS",
    "RELEVANCE_COLUMNS",
    "COHORT_COLUMNS",
    "MISSING_RANK",
    "region_metrics",
    "region_relevance",
    "rank_of",
    "cohort_region_table",
    "RegionTableAccumulator",
]

#: Columns of :func:`region_metrics` (``volume_mm3`` is appended when a voxel volume is given).
REGION_COLUMNS = ["index", "name", "V", "mean", "std", "max", "min", "P", "mass_share"]
#: Columns of :func:`region_relevance`.
RELEVANCE_COLUMNS = ["index", "name", "voxels", "mass", "mean", "max"]
#: Columns of :func:`cohort_region_table` (``volume_mm3`` is appended when the per-scan tables have it).
COHORT_COLUMNS = ["index", "name", "n_scans", "scan_fraction", "V", "P", "mass_share"]
#: Rank given by :func:`rank_of` to a region that is not in the table. It is a large constant rather than
#: ``len(table) + 1`` so that a region missing from an *empty* table never looks top-ranked.
MISSING_RANK = 1_000_000


def _inputs(volume, labels) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 map and int64 labels of one shape, checked."""
    m = _to_numpy(volume, np.float64)
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if m.shape != lab.shape:
        raise ValueError(f"The map {m.shape} and the label volume {lab.shape} must have the same shape.")
    if not np.isfinite(m).all():
        raise ValueError("The map contains NaN or infinite values.")
    if lab.dtype.kind == "f":
        if not np.isfinite(lab).all() or (lab != np.round(lab)).any():
            raise ValueError("The label volume must hold integer region indices.")
    elif lab.dtype.kind not in "iub":
        raise ValueError(f"The label volume must hold integer region indices, not dtype {lab.dtype}.")
    return m.reshape(-1), lab.astype(np.int64).reshape(-1)


def _label_codes(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct labels and, per voxel, the position of its label in that list (fast for small labels)."""
    if lab.size and lab.min() >= 0 and lab.max() < 2**24:
        counts = np.bincount(lab)
        present = np.flatnonzero(counts)
        lookup = np.zeros(counts.size, np.int64)
        lookup[present] = np.arange(present.size)
        return present, lookup[lab]
    present, position = np.unique(lab, return_inverse=True)
    return present, position.reshape(-1)


def _region_name(names: Mapping[int, str], index: int) -> str:
    return str(names.get(index, f"label {index}"))


def region_metrics(
    volume: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    names: Mapping[int, str],
    percentile: float = 99.9,
    voxel_volume: float | None = None,
) -> pd.DataFrame:
    """Where the highest values of a map fall, region by region (the AXIAL region table).

    ``tau`` is the ``percentile``-th percentile of ``M`` over the whole volume (linear interpolation, as
    ``numpy.percentile``) and ``B = {v : M(v) > tau}``. For each region ``R`` (label != 0) with ``B & R`` not
    empty:

    * ``V`` = ``|B & R|`` (voxels); ``volume_mm3`` = ``V * voxel_volume`` (only if ``voxel_volume`` is given);
    * ``mean``, ``std`` (population, ddof=0), ``max``, ``min`` of ``M`` over ``B & R``;
    * ``P`` = ``|B & R| / |R|``, the fraction of the region above the threshold;
    * ``mass_share`` = ``sum(M over B & R) / sum(M over B)``, the region's share of the above-threshold
      relevance (the denominator includes voxels of ``B`` outside every region, so shares may add up to < 1;
      meaningful for non-negative maps).

    Args:
        volume: ``(X, Y, Z)`` map ``M``.
        labels: ``(X, Y, Z)`` integer atlas labels on the same grid, 0 = background.
        names: region index -> name; a label missing from it is named ``"label <index>"``.
        percentile: threshold percentile in [0, 100] (99.9 in the paper).
        voxel_volume: volume of one voxel in mm^3, to add ``volume_mm3``.

    Returns:
        One row per region with ``V > 0``, sorted by ``V`` descending, then ``mass_share`` descending, then
        index; columns :data:`REGION_COLUMNS` (+ ``volume_mm3``). Empty (with these columns) when no voxel is
        above the threshold, e.g. for a constant map.

    Raises:
        ValueError: for different shapes, non-finite map values, non-integer labels or a percentile outside
            [0, 100].
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], not {percentile}.")
    if voxel_volume is not None and not voxel_volume > 0:
        raise ValueError(f"voxel_volume must be a positive volume in mm^3, not {voxel_volume}.")
    m, lab = _inputs(volume, labels)
    columns = REGION_COLUMNS + (["volume_mm3"] if voxel_volume is not None else [])
    tau = np.percentile(m, percentile) if m.size else 0.0
    above = m > tau
    values, regions = m[above], lab[above]
    total_mass = float(values.sum())
    present, position = _label_codes(lab)
    sizes = dict(zip(present.tolist(), np.bincount(position, minlength=present.size).tolist(), strict=True))
    rows = []
    for index in np.unique(regions[regions != 0]):
        v = values[regions == index]
        region_size = sizes[int(index)]
        row = {
            "index": int(index),
            "name": _region_name(names, int(index)),
            "V": int(v.size),
            "mean": float(v.mean()),
            "std": float(v.std()),
            "max": float(v.max()),
            "min": float(v.min()),
            "P": v.size / region_size,
            "mass_share": float(v.sum()) / total_mass if total_mass != 0 else float("nan"),
        }
        if voxel_volume is not None:
            row["volume_mm3"] = v.size * float(voxel_volume)
        rows.append(row)
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    table = pd.DataFrame(rows, columns=columns)
    table = table.sort_values(["V", "mass_share", "index"], ascending=[False, False, True], kind="stable")
    return table.reset_index(drop=True)


def region_relevance(
    volume: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, names: Mapping[int, str]
) -> pd.DataFrame:
    """Threshold-free ranking of regions by their share of the map's total relevance inside the brain.

    For every region ``R`` present in ``labels`` (label != 0): ``mass = sum(M over R) / sum(M over brain)`` with
    brain = all labelled voxels, ``mean`` and ``max`` of ``M`` over ``R``, and ``voxels = |R|``. Unlike
    :func:`region_metrics` no threshold decides what counts, so it suits checks against a known ground truth.
    Large regions collect mass simply by size: compare ``mean`` too.

    Args:
        volume: ``(X, Y, Z)`` map ``M`` (non-negative for ``mass`` to be a share).
        labels: ``(X, Y, Z)`` integer atlas labels, 0 = background.
        names: region index -> name; a label missing from it is named ``"label <index>"``.

    Returns:
        One row per region present, sorted by ``mass`` descending (then ``mean``, then index); columns
        :data:`RELEVANCE_COLUMNS`. ``mass`` is 0 everywhere when the map sums to 0 over the brain. Regions of
        ``names`` absent from ``labels`` are left out.

    Raises:
        ValueError: as :func:`region_metrics`.
    """
    m, lab = _inputs(volume, labels)
    present, position = _label_codes(lab)
    keep = present != 0
    if not keep.any():
        return pd.DataFrame({c: pd.Series(dtype=float) for c in RELEVANCE_COLUMNS})
    stats = pd.DataFrame({"position": position, "value": m}).groupby("position")["value"].agg(["size", "sum", "max"])
    stats = stats.reindex(np.arange(present.size))[keep]
    sums = stats["sum"].to_numpy(np.float64)
    total = float(sums.sum())
    table = pd.DataFrame(
        {
            "index": present[keep].astype(int),
            "name": [_region_name(names, int(i)) for i in present[keep]],
            "voxels": stats["size"].to_numpy(np.int64),
            "mass": sums / total if total != 0 else np.zeros(sums.size),
            "mean": sums / stats["size"].to_numpy(np.float64),
            "max": stats["max"].to_numpy(np.float64),
        },
        columns=RELEVANCE_COLUMNS,
    )
    table = table.sort_values(["mass", "mean", "index"], ascending=[False, False, True], kind="stable")
    return table.reset_index(drop=True)


def rank_of(table: pd.DataFrame, names: Sequence[str] | str, missing: int = MISSING_RANK) -> list[int]:
    """1-based rank (row position) of each named region in a sorted region table.

    Args:
        table: a table with a ``name`` column, already sorted (e.g. :func:`region_metrics`,
            :func:`region_relevance`, :func:`cohort_region_table`).
        names: region names, matched exactly.
        missing: rank given to a name that is not in the table (:data:`MISSING_RANK`).

    Returns:
        One rank per name, in the order of ``names``; the first row has rank 1.
    """
    if isinstance(names, str):
        names = [names]
    order = list(table["name"]) if "name" in table.columns else []
    ranks = {}
    for position, name in enumerate(order, start=1):
        ranks.setdefault(name, position)
    return [int(ranks.get(name, missing)) for name in names]


def cohort_region_table(per_scan: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Aggregate per-scan :func:`region_metrics` tables over a cohort.

    Means are over *all* scans, a scan in which the region does not appear counting as 0 (so a region found in
    one scan only does not outrank one found in every scan). ``n_scans`` counts the scans in which the region
    appears, ``scan_fraction`` = ``n_scans`` / number of scans.

    Args:
        per_scan: scan id -> its region table (columns at least ``index``, ``name``, ``V``, ``P``,
            ``mass_share``; e.g. read back from CSV). Empty tables count as scans with no region.

    Returns:
        One row per region appearing in any scan, sorted by mean ``V`` descending, then mean ``mass_share``,
        then ``n_scans`` descending, then index; columns :data:`COHORT_COLUMNS` (+ mean ``volume_mm3`` when every
        non-empty table has it). Empty with these columns when no scan has a region.

    Raises:
        ValueError: if a non-empty table lacks a needed column.
    """
    needed = ["index", "name", "V", "P", "mass_share"]
    frames = []
    for scan, table in per_scan.items():
        if len(table) == 0:
            continue
        absent = [c for c in needed if c not in table.columns]
        if absent:
            raise ValueError(f"The region table of scan {scan!r} lacks the columns {absent}.")
        frames.append(table.assign(scan=scan))
    with_mm3 = bool(frames) and all("volume_mm3" in f.columns for f in frames)
    columns = COHORT_COLUMNS + (["volume_mm3"] if with_mm3 else [])
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    n = len(per_scan)
    data = pd.concat(frames, ignore_index=True)
    data["mass_share"] = data["mass_share"].fillna(0.0)
    value_columns = ["V", "P", "mass_share"] + (["volume_mm3"] if with_mm3 else [])
    grouped = data.groupby("index", sort=True)
    table = (grouped[value_columns].sum() / n).reset_index()
    table["name"] = grouped["name"].first().to_numpy()
    table["n_scans"] = grouped["scan"].nunique().to_numpy()
    table["scan_fraction"] = table["n_scans"] / n
    table = table[columns].sort_values(
        ["V", "mass_share", "n_scans", "index"], ascending=[False, False, False, True], kind="stable"
    )
    return table.reset_index(drop=True)


class RegionTableAccumulator:
    """Streaming :func:`cohort_region_table`: per-region sums over scans, so per-scan tables need not stay in memory.

    ``add`` one per-scan :func:`region_metrics` table at a time (then drop it, or keep it on disk); ``table()``
    gives exactly what :func:`cohort_region_table` gives for the same tables. ``merge`` adds another accumulator
    (e.g. gathered from other DDP ranks). The state is a few numbers per region, whatever the number of scans.
    """

    _VALUES = ("V", "P", "mass_share", "volume_mm3")

    def __init__(self) -> None:
        self.n_scans = 0
        self.sums: dict[int, dict[str, float]] = {}
        self.names: dict[int, str] = {}
        self.all_have_mm3 = True
        self.any_rows = False

    def add(self, table: pd.DataFrame, scan: str = "scan") -> None:
        """Count one scan whose region table is ``table`` (empty: a scan with no region)."""
        self.n_scans += 1
        if len(table) == 0:
            return
        absent = [c for c in ("index", "name", "V", "P", "mass_share") if c not in table.columns]
        if absent:
            raise ValueError(f"The region table of scan {scan!r} lacks the columns {absent}.")
        self.any_rows = True
        self.all_have_mm3 &= "volume_mm3" in table.columns
        seen = set()
        for row in table.to_dict("records"):
            index = int(row["index"])
            entry = self.sums.setdefault(index, dict.fromkeys((*self._VALUES, "n_scans"), 0.0))
            self.names.setdefault(index, str(row["name"]))
            for key in self._VALUES:
                value = row.get(key, 0.0)
                entry[key] += 0.0 if pd.isna(value) else float(value)
            if index not in seen:
                entry["n_scans"] += 1
                seen.add(index)

    def merge(self, other: RegionTableAccumulator) -> None:
        """Add the scans of ``other``."""
        self.n_scans += other.n_scans
        self.any_rows |= other.any_rows
        self.all_have_mm3 &= other.all_have_mm3
        for index, values in other.sums.items():
            entry = self.sums.setdefault(index, dict.fromkeys((*self._VALUES, "n_scans"), 0.0))
            for key, value in values.items():
                entry[key] += value
            self.names.setdefault(index, other.names[index])

    def table(self) -> pd.DataFrame:
        """The cohort table (see :func:`cohort_region_table`)."""
        with_mm3 = self.any_rows and self.all_have_mm3
        columns = COHORT_COLUMNS + (["volume_mm3"] if with_mm3 else [])
        if not self.sums:
            return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
        n = self.n_scans
        rows = []
        for index in sorted(self.sums):
            entry = self.sums[index]
            row = {"index": index, "name": self.names[index], "n_scans": int(entry["n_scans"])}
            row.update({k: entry[k] / n for k in ("V", "P", "mass_share")})
            row["scan_fraction"] = entry["n_scans"] / n
            if with_mm3:
                row["volume_mm3"] = entry["volume_mm3"] / n
            rows.append(row)
        table = pd.DataFrame(rows)[columns].sort_values(
            ["V", "mass_share", "n_scans", "index"], ascending=[False, False, False, True], kind="stable"
        )
        return table.reset_index(drop=True)
