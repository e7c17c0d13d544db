"""Streaming cohort state of explanations: running sums of maps, attention profiles and region tables.

:class:`CohortAccumulator` takes one :class:`~axial_monai.explain.scan.ScanExplanation` at a time and keeps only
sums: one volume per (group, map), one vector per (group, plane), a few numbers per atlas region and one small
row per scan. Memory does not grow with the number of scans beyond those rows (about 100 bytes each). Under DDP,
:meth:`CohortAccumulator.synchronize` adds up the state of every rank, so that the cohort outputs of rank 0 cover
every rank's scans.

Groups: ``all``; ``pred-<class>`` by predicted class; ``correct`` / ``incorrect`` when the label is known.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import ignite.distributed as idist
import numpy as np
import pandas as pd
import torch

from .regions import RegionTableAccumulator
from .scan import ScanExplanation

__all__ = ["CohortAccumulator"]

logger = logging.getLogger(__name__)


class CohortAccumulator:
    """Running sums of a cohort's explanations, by group.

    Args:
        class_names: class names in label order.
        cohort_maps: maps whose voxel-wise mean is kept per group; None for every map except ``attention`` (whose
            cohort map is the paper's outer product of the mean profiles, built from :meth:`mean_profiles`).
    """

    def __init__(self, class_names: Sequence[str], cohort_maps: Sequence[str] | None = None) -> None:
        self.class_names = list(class_names)
        self.cohort_maps = None if cohort_maps is None else list(cohort_maps)
        self.shape: tuple[int, int, int] | None = None
        self.affine: np.ndarray | None = None
        self.indices: dict[int, range] | None = None
        self.rows: list[dict] = []
        self.counts: dict[str, int] = {}
        self.map_sums: dict[tuple[str, str], np.ndarray] = {}
        self.profile_sums: dict[str, dict[int, np.ndarray]] = {}
        self.anatomy_sum: np.ndarray | None = None
        self.regions: dict[str, RegionTableAccumulator] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def groups(self, result: ScanExplanation) -> list[str]:
        """The groups a scan belongs to."""
        groups = ["all", f"pred-{self.class_names[result.prediction]}"]
        if result.label is not None:
            groups.append("correct" if result.label == result.prediction else "incorrect")
        return groups

    def _mean_maps(self, result: ScanExplanation) -> list[str]:
        names = [m for m in result.maps if m != "attention"] if self.cohort_maps is None else self.cohort_maps
        return [m for m in names if m in result.maps]

    def add(self, result: ScanExplanation, region_tables: Mapping[str, pd.DataFrame] | None = None) -> bool:
        """Add one scan; returns False (and warns) if its grid differs from the first scan's, which leaves it out."""
        if self.shape is None:
            self.shape, self.affine, self.indices = result.spatial_shape, result.affine, dict(result.indices)
        elif result.spatial_shape != self.shape:
            logger.warning(
                f"{result.scan_id}: grid {result.spatial_shape} differs from {self.shape}; left out of the cohort maps."
            )
            return False
        row = {"scan": result.scan_id, "pred": result.prediction, "pred_label": self.class_names[result.prediction]}
        row.update({f"prob_{c}": float(p) for c, p in zip(self.class_names, result.probabilities, strict=True)})
        if result.label is not None:
            row["label"] = result.label
        self.rows.append(row)
        image = result.image.astype(np.float32)
        self.anatomy_sum = image.copy() if self.anatomy_sum is None else self.anatomy_sum + image
        for group in self.groups(result):
            self.counts[group] = self.counts.get(group, 0) + 1
            profiles = self.profile_sums.setdefault(group, {})
            for plane, values in result.attention.items():
                values = np.asarray(values, np.float64)
                profiles[plane] = values.copy() if plane not in profiles else profiles[plane] + values
            for name in self._mean_maps(result):
                key = (group, name)
                volume = result.maps[name].astype(np.float32)
                self.map_sums[key] = volume.copy() if key not in self.map_sums else self.map_sums[key] + volume
        for name, table in (region_tables or {}).items():
            self.regions.setdefault(name, RegionTableAccumulator()).add(table, result.scan_id)
        return True

    def mean(self, group: str, name: str) -> np.ndarray:
        """Voxel-wise mean of map ``name`` over the scans of ``group``, ``(X, Y, Z)`` float32."""
        return (self.map_sums[(group, name)] / self.counts[group]).astype(np.float32)

    def mean_profiles(self, group: str) -> dict[int, np.ndarray]:
        """Mean attention per plane over the scans of ``group``."""
        return {p: v / self.counts[group] for p, v in self.profile_sums[group].items()}

    def mean_anatomy(self) -> np.ndarray:
        """Mean input volume over all scans, ``(X, Y, Z)`` float32."""
        return (self.anatomy_sum / max(1, len(self.rows))).astype(np.float32)

    def mean_map_names(self) -> list[str]:
        return sorted({name for _, name in self.map_sums})

    def merge(self, other: CohortAccumulator) -> None:
        """Add the scans of ``other`` (same grid)."""
        if other.shape is None:
            return
        if self.shape is None:
            self.shape, self.affine, self.indices = other.shape, other.affine, other.indices
        elif other.shape != self.shape:
            raise ValueError(f"Cannot merge cohorts on grids {other.shape} and {self.shape}.")
        self.rows += other.rows
        for group, count in other.counts.items():
            self.counts[group] = self.counts.get(group, 0) + count
        for group, profiles in other.profile_sums.items():
            mine = self.profile_sums.setdefault(group, {})
            for plane, values in profiles.items():
                mine[plane] = values.copy() if plane not in mine else mine[plane] + values
        for key, volume in other.map_sums.items():
            self.map_sums[key] = volume.copy() if key not in self.map_sums else self.map_sums[key] + volume
        if other.anatomy_sum is not None:
            self.anatomy_sum = (
                other.anatomy_sum.copy() if self.anatomy_sum is None else self.anatomy_sum + other.anatomy_sum
            )
        for name, regions in other.regions.items():
            self.regions.setdefault(name, RegionTableAccumulator()).merge(regions)

    def synchronize(self) -> None:
        """Under DDP, replace every rank's state by the sum over ranks (no-op with one process).

        Small parts (rows, counts, profiles, region sums) travel as pickled objects (``idist.all_gather``); the
        volumes are summed with ``idist.all_reduce`` one at a time, so no rank holds more than one extra volume.
        """
        if idist.get_world_size() < 2:
            return
        small = {
            "shape": self.shape,
            "affine": self.affine,
            "indices": self.indices,
            "rows": self.rows,
            "counts": self.counts,
            "profile_sums": self.profile_sums,
            "regions": self.regions,
            "keys": sorted(self.map_sums),
        }
        gathered = idist.all_gather(small)
        shapes = {tuple(g["shape"]) for g in gathered if g["shape"] is not None}
        if len(shapes) > 1:
            raise RuntimeError(f"The ranks explained scans on different grids {sorted(shapes)}: no common cohort map.")
        merged = CohortAccumulator(self.class_names, self.cohort_maps)
        for part in gathered:
            if part["shape"] is None:
                continue
            other = CohortAccumulator(self.class_names, self.cohort_maps)
            other.shape, other.affine, other.indices = tuple(part["shape"]), part["affine"], part["indices"]
            other.rows, other.counts, other.profile_sums = part["rows"], part["counts"], part["profile_sums"]
            other.regions = part["regions"]
            merged.merge(other)
        if merged.shape is None:
            return
        device = idist.device()
        keys = sorted({tuple(k) for part in gathered for k in part["keys"]})
        for key in keys:
            local = self.map_sums.get(key)
            tensor = torch.zeros(merged.shape, dtype=torch.float32) if local is None else torch.from_numpy(local)
            merged.map_sums[key] = idist.all_reduce(tensor.to(device)).cpu().numpy()
        anatomy = torch.zeros(merged.shape) if self.anatomy_sum is None else torch.from_numpy(self.anatomy_sum)
        merged.anatomy_sum = idist.all_reduce(anatomy.float().to(device)).cpu().numpy()
        self.__dict__.update(merged.__dict__)
