"""What training discovers about its data: the input grid of the training images and the template they were
registered to, and the run settings built from them (:func:`training_settings`, the ``run_settings`` of
``train.json``)."""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import nibabel.processing
import numpy as np
import torch
from scipy import ndimage

from ..data.datalist import check_nifti_header, load_split, voxel_problems
from ..derivatives import DerivativesLayout
from ..errors import InputError, refuse_or_drop
from ..input_check import Grid, read_grid
from ..layout import RunLayout
from .network import checked_class_names, network_recipe, slice_problem
from .settings import RunSettings, package_versions

__all__ = ["training_settings", "preprocessing_profile"]

logger = logging.getLogger(__name__)


def _to_uint8(image: np.ndarray) -> torch.Tensor:
    image = np.nan_to_num(np.asarray(image, dtype=np.float32))
    top = float(np.percentile(image[image > 0], 99.9)) if (image > 0).any() else 1.0
    return torch.from_numpy(np.clip(np.round(image / top * 255.0), 0, 255).astype(np.uint8))


def _support(image: np.ndarray) -> np.ndarray:
    """Brain mask of a brain-only template: its non-zero support with holes filled."""
    return ndimage.binary_fill_holes(np.asarray(image) > 1e-6)


def _on_grid(image: nib.spatialimages.SpatialImage, grid: Grid, order: int) -> np.ndarray:
    """``image`` resampled onto ``grid`` in world coordinates (``order`` 1 linear, 0 nearest), RAS array."""
    affine = np.asarray(grid.affine)
    if image.shape[:3] == grid.shape and np.allclose(image.affine, affine, atol=1e-4):
        return np.asarray(image.dataobj, dtype=np.float32).reshape(grid.shape)
    target = (grid.shape, affine)
    return np.asarray(nibabel.processing.resample_from_to(image, target, order=order).dataobj, dtype=np.float32)


def _qc_settings(image_path: str) -> dict:
    """The settings the preprocessing recorded for ``image_path`` in its QC record (empty without a record)."""
    path = Path(image_path)
    if len(path.parents) < 4:
        return {}
    record_path = DerivativesLayout(path.parents[3]).record_path(path)
    if not record_path.is_file():
        return {}
    return json.loads(record_path.read_text()).get("settings") or {}


def _qc_template(image_path: str) -> tuple[str, str | None] | None:
    """The template and mask the preprocessing registered ``image_path`` to, from its QC record, if there is one."""
    settings = _qc_settings(image_path)
    return (settings["template"], settings.get("template_mask")) if settings.get("template") else None


def preprocessing_profile(image_path: str) -> str | None:
    """The preprocessing profile of ``image_path`` from its QC record (a record of axial-monai before 0.3.0 names
    none: it is the paper profile), or None without a record (data preprocessed elsewhere, the demo cohort)."""
    settings = _qc_settings(image_path)
    return str(settings.get("profile", "paper")) if settings else None


def _template_file(template: str) -> str:
    """A shipped template name (``MNI152NLin2009cAsym``, ...) or a NIfTI path, as a path."""
    from ..preprocess.templates import TEMPLATES, template_file

    if template in TEMPLATES:
        return str(template_file(template))
    if not os.path.isfile(template):
        raise FileNotFoundError(
            f"template {template!r} is neither a shipped template ({sorted(TEMPLATES)}) nor a file."
        )
    return str(template)


def _training_template(
    template: str | None, template_mask: str | None, dataset_dir: str | None, first_image: str
) -> tuple[str, str | None]:
    """Which template the training images are registered to: given, the demo cohort's, the preprocessing's, or
    the shipped default."""
    if template:
        return _template_file(template), template_mask
    if dataset_dir and os.path.isfile(os.path.join(dataset_dir, "template.nii.gz")):
        return os.path.join(dataset_dir, "template.nii.gz"), None
    found = _qc_template(first_image)
    if found is not None:
        return _template_file(found[0]), found[1]
    from ..preprocess.templates import DEFAULT_TEMPLATE

    logger.warning(
        f"No template given, none next to the data and no preprocessing record of {first_image}: the run records "
        f"the shipped {DEFAULT_TEMPLATE} template. Set `template` if the images are registered to another one."
    )
    return _template_file(DEFAULT_TEMPLATE), None


def _common_grid(items: Sequence[Mapping], where: str, drop: bool = False) -> tuple[Grid, list[Mapping]]:
    """The one grid of the training images (headers only) and the items on it.

    The grid is the most common one among the readable images. Images that are missing, unreadable, not one 3D
    volume, with a singular affine (:func:`~axial_monai.data.datalist.check_nifti_header`) or off the grid are
    refused together in one message that lists them all, or with ``drop`` left out with a warning each. Damaged
    voxel data behind a fine header (cut short, NaN, all zero) shows only when a volume is read, which the training
    dataset does next and reports together; when the headers already refuse the split, the voxels of the other
    images are read first, so that the one message lists those too.
    """
    bad, readable = [], []
    for item in items:
        path = str(item["image"])
        problem = "does not exist" if not os.path.isfile(path) else check_nifti_header(path)
        if problem:
            bad.append(f"{path} {problem}")
        else:
            readable.append(item)
    grids = [read_grid(str(item["image"])) for item in readable]
    if not grids:
        raise InputError(f"No image of {where} is usable: {'; '.join(bad)}.")
    # group by shape and affine to 0.1 um (a float rounding apart is the same grid)
    keys = [(g.shape, tuple(np.round(np.asarray(g.affine), 4).ravel())) for g in grids]
    index = keys.index(Counter(keys).most_common(1)[0][0])
    grid, first = grids[index], str(readable[index]["image"])
    problems = [grid.mismatch(g) for g in grids]
    bad += [
        f"{item['image']} {p} (not on one grid with {first}, the most common grid)"
        for item, p in zip(readable, problems, strict=True)
        if p is not None
    ]
    kept = [item for item, p in zip(readable, problems, strict=True) if p is None]
    refuse_or_drop(bad, len(items), f"images of {where}", drop, more=lambda: voxel_problems(kept))
    return grid, kept


def training_settings(
    network: functools.partial,
    class_names: Sequence[str],
    positive_class: int = 1,
    intensity: str = "percentile",
    dataset_dir: str | None = None,
    datalist: str | None = None,
    template: str | None = None,
    template_mask: str | None = None,
    split: str = "training",
    drop_bad_items: bool = False,
) -> RunSettings:
    """The settings of a run about to train.

    Args:
        network: the network recipe, a partial of its class with all keyword arguments (``network_spec``).
        class_names: class names in label order.
        positive_class: index of the positive class of the metrics.
        intensity: volume intensity mode of ``load_volume`` (``percentile`` or ``zscore``).
        dataset_dir, datalist: the training data; the grid is read from the ``split`` items' headers.
        template: the template the images are registered to (shipped name or path); None: the demo cohort's
            ``template.nii.gz``, else the one in the preprocessing QC records of the images, else the shipped
            default.
        template_mask: brain mask of a template given by path (default: its non-zero support).
        split: the datalist split whose images define the grid.
        drop_bad_items: leave out training images that are missing, unreadable or off the common grid (with a
            warning each) instead of refusing them all in one message.

    Raises:
        SettingsError: for a network that is not a recipe or class names that do not fit ``positive_class``.
        InputError: if training images are missing, unreadable or not on one grid (all listed at once), or
            have fewer voxels along the plane than ``num_slices``.
    """
    target, kwargs = network_recipe(network)
    names = checked_class_names(class_names, positive_class, kwargs)
    datalist_path = os.path.abspath(datalist or os.path.join(str(dataset_dir), RunLayout.DATALIST))
    where = f"the {split} split of {datalist_path}"
    items = load_split(str(dataset_dir), split, datalist_path)
    grid, items = _common_grid(items, where, drop=drop_bad_items)
    problem = slice_problem(grid, kwargs)
    if problem:
        raise InputError(f"The training images of {datalist_path} (e.g. {items[0]['image']}) {problem}.")
    template_path, mask_path = _training_template(template, template_mask, dataset_dir, str(items[0]["image"]))
    template_image = nib.load(template_path)
    mask = _support(template_image.get_fdata()) if mask_path is None else np.asarray(nib.load(mask_path).dataobj)
    mask_image = nib.Nifti1Image((np.asarray(mask, dtype=np.float32) > 0.5).astype(np.float32), template_image.affine)
    brain = _on_grid(mask_image, grid, 0) > 0.5
    if not brain.any():
        raise InputError(f"The template {template_path} does not overlap the training images' {grid.describe()}.")
    image = _on_grid(template_image, grid, 1)
    return RunSettings(
        network=target,
        network_kwargs=kwargs,
        class_names=names,
        positive_class=int(positive_class),
        intensity=str(intensity),
        grid=grid,
        template=_to_uint8(image).numpy(),
        brain_mask=brain,
        template_source=template_path,
        preprocessing=preprocessing_profile(str(items[0]["image"])),
        dataset_dir=None if dataset_dir is None else os.path.abspath(str(dataset_dir)),
        datalist=datalist_path,
        versions=package_versions(),
        created=datetime.datetime.now().isoformat(timespec="seconds"),
        recipe=network,
    )
