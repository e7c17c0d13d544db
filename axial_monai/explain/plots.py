"""Figures of explanations, written as PNG files (never displayed).

The attention profile figure is drawn on a bare matplotlib ``Figure`` with an Agg canvas, so it neither needs
nor changes the pyplot backend. The overlay is drawn by nilearn into a pyplot figure that is closed after saving
(on a machine without a display matplotlib selects the Agg backend by itself).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..geometry import PLANE_NAMES
from ..io import write_png
from .volumes import _to_numpy

__all__ = ["PLANE_NAMES", "high_attention_runs", "plot_attention_profiles", "plot_overlay"]


def high_attention_runs(
    profile: np.ndarray | torch.Tensor | Sequence[float], percentile: float = 74.0, min_length: int = 4
) -> list[tuple[int, int]]:
    """Runs of consecutive high-attention slices (the AXIAL rule: >= 74th percentile, more than 3 slices).

    Args:
        profile: ``(N,)`` attention of the slices of one plane, in slice order.
        percentile: a slice is "high" if its value is >= this percentile of ``profile`` (``numpy.percentile``,
            linear interpolation).
        min_length: shortest run kept, in slices.

    Returns:
        ``(start, stop)`` pairs, ``stop`` exclusive, in *profile* positions (``0..N``; map them to volume slice
        indices with the plane's ``indices``), in increasing order. A constant profile is one run over all slices.

    Raises:
        ValueError: for a percentile outside [0, 100], ``min_length < 1`` or a profile that is not 1-D.
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], not {percentile}.")
    if min_length < 1:
        raise ValueError(f"min_length must be at least 1 slice, not {min_length}.")
    values = _to_numpy(profile, np.float64)
    if values.ndim != 1:
        raise ValueError(f"profile must be 1-D (N,), not of shape {values.shape}.")
    if values.size == 0:
        return []
    high = np.concatenate([[False], values >= np.percentile(values, percentile), [False]])
    edges = np.flatnonzero(np.diff(high.astype(np.int8)))  # rising edge = start, falling edge = stop
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_length]


def plot_attention_profiles(
    profiles: Mapping[int, np.ndarray | torch.Tensor],
    indices: Mapping[int, Sequence[int]],
    path: str | os.PathLike,
    title: str | None = None,
    percentile: float = 74.0,
    min_length: int = 4,
) -> str:
    """Bar plot of the slice attention of each plane, high-attention runs shaded; saved as PNG.

    Args:
        profiles: plane -> ``(N_p,)`` attention of one scan (or a cohort mean).
        indices: plane -> the ``N_p`` slice positions; the x axis is the slice index in the volume.
        path: output PNG file (parent folders are created).
        title: figure title.
        percentile, min_length: the run rule of :func:`high_attention_runs`.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: if ``profiles`` is empty or a profile does not match its indices.
    """
    if not profiles:
        raise ValueError("profiles must hold the attention of at least one plane, not an empty mapping.")
    planes = sorted(profiles)
    fig = Figure(figsize=(5 * len(planes), 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(planes), squeeze=False)[0]
    for ax, plane in zip(axes, planes, strict=True):
        values = _to_numpy(profiles[plane], np.float64).reshape(-1)
        if plane not in indices:
            raise ValueError(f"No slice indices given for plane {plane}; indices has planes {sorted(indices)}.")
        position = np.asarray(list(indices[plane]))
        if position.size != values.size:
            raise ValueError(f"Plane {plane} has {values.size} attention values but {position.size} slice indices.")
        for start, stop in high_attention_runs(values, percentile, min_length):
            ax.axvspan(position[start] - 0.5, position[stop - 1] + 0.5, color="tab:orange", alpha=0.25, lw=0)
        ax.bar(position, values, width=1.0, color="tab:blue")
        ax.set_title(PLANE_NAMES.get(plane, f"plane {plane}"))
        ax.set_xlabel("slice index in the volume")
        ax.set_ylabel("attention")
        ax.set_xlim(position.min() - 1, position.max() + 1)
    if title:
        fig.suptitle(title)
    path = os.fspath(path)
    write_png(path, fig)
    return path


def _squeeze3d(img: nib.spatialimages.SpatialImage, what: str) -> nib.Nifti1Image:
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{what} must be a 3-D image, not of shape {img.shape}.")
    return nib.Nifti1Image(np.nan_to_num(data), img.affine)


def plot_overlay(
    anatomy_img: nib.spatialimages.SpatialImage,
    map_img: nib.spatialimages.SpatialImage,
    path: str | os.PathLike,
    title: str | None = None,
    threshold: float | None = None,
    cmap: str = "hot",
) -> str:
    """Overlay a (non-negative) map on anatomy in three orthogonal views cut at the map's maximum; saved as PNG.

    Uses ``nilearn.plotting.plot_stat_map`` with ``bg_img=anatomy_img`` (nothing is downloaded).

    Args:
        anatomy_img: 3-D background image (a scan or the template).
        map_img: 3-D map; it may be on another grid (nilearn resamples it to the anatomy in world space).
        path: output PNG file (parent folders are created).
        title: figure title.
        threshold: map values below it are transparent; None hides only values <= 1e-3 x the map's maximum
            (the empty background), so the whole map is shown.
        cmap: matplotlib colour map of the overlay.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: if an image is not 3-D.
    """
    from nilearn import plotting  # imported here: it loads pyplot, which the rest of the package does not need

    anatomy = _squeeze3d(anatomy_img, "anatomy_img")
    overlay = _squeeze3d(map_img, "map_img")
    data = np.asarray(overlay.dataobj)
    peak = float(data.max())
    if peak > 0:
        voxel = np.unravel_index(int(np.argmax(data)), data.shape)
        cut = tuple(float(c) for c in nib.affines.apply_affine(overlay.affine, voxel))
    else:  # nothing to show: cut through the centre of the anatomy
        centre = (np.asarray(anatomy.shape[:3]) - 1) / 2
        cut = tuple(float(c) for c in nib.affines.apply_affine(anatomy.affine, centre))
    if threshold is None:
        threshold = 1e-3 * peak if peak > 0 else 1e-6
    path = os.fspath(path)
    with warnings.catch_warnings():
        # nilearn warns "empty mask" when no map value passes the threshold; the anatomy is still drawn
        warnings.filterwarnings("ignore", message="empty mask", category=UserWarning)
        display = plotting.plot_stat_map(
            overlay,
            bg_img=anatomy,
            cut_coords=cut,
            display_mode="ortho",
            threshold=threshold,
            cmap=cmap,
            symmetric_cbar=False,
            vmin=0.0,
            vmax=peak if peak > 0 else None,
            title=title,
            draw_cross=True,
            cbar_tick_format="%.2g",
            black_bg=True,
            dim=0,
        )
    try:
        write_png(path, display)
    finally:
        display.close()  # closes only the figure nilearn opened for this plot
    return path
