"""The QC picture of one preprocessed scan, as fMRIPrep and MRIQC show registrations.

Rows 1-3: the registered scan on the template grid in sagittal, coronal and axial slices (five of each), with the
outline of the template's brain mask over it: a registration that worked puts the brain's edge on that outline.
Row 4: the raw scan in its own space, with the brain mask carried back onto it (the brain the pipeline kept). The
figure is drawn by nilearn (``plot_anat`` + ``add_contours``), nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["plot_preprocessing_qc", "write_qc_figure", "qc_title"]

_PLANES = (("x", "sagittal"), ("y", "coronal"), ("z", "axial"))


def _cuts(mask: nib.Nifti1Image, axis: int, n: int = 5) -> list[float]:
    """``n`` world coordinates along ``axis`` spread over the inner 80 % of ``mask``'s extent."""
    index = np.argwhere(np.asarray(mask.dataobj) > 0)
    world = nib.affines.apply_affine(mask.affine, index)[:, axis]
    low, high = np.percentile(world, [10, 90])
    return [float(c) for c in np.linspace(low, high, n)]


def plot_preprocessing_qc(
    registered: nib.Nifti1Image,
    template_mask: nib.Nifti1Image,
    raw: nib.Nifti1Image,
    native_mask: nib.Nifti1Image,
    path: str | os.PathLike,
    title: str = "",
) -> str:
    """Write the QC picture (PNG) of one scan.

    Args:
        registered: the preprocessed scan on the template grid (3-D).
        template_mask: the template's brain mask on that grid.
        raw: the scan as read, in its own space.
        native_mask: the brain mask on the raw scan's grid (the template's, carried back).
        path: the PNG file (parent folders are created).
        title: the figure's title (the scan and its QC figures).

    Returns:
        ``path`` as a string.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nilearn import plotting

    figure, axes = plt.subplots(4, 1, figsize=(11, 9.5), facecolor="black")
    for row, (mode, name) in enumerate(_PLANES):
        display = plotting.plot_anat(
            registered,
            display_mode=mode,
            cut_coords=_cuts(template_mask, row),
            axes=axes[row],
            annotate=False,
            draw_cross=False,
            dim=-0.5,
            title=f"{name}: registered, template brain outline" if row == 0 else None,
        )
        display.add_contours(template_mask, levels=[0.5], colors="red", linewidths=0.8)
    display = plotting.plot_anat(
        raw,
        display_mode="ortho",
        cut_coords=[float(c) for c in nib.affines.apply_affine(native_mask.affine, _centre(native_mask))],
        axes=axes[3],
        annotate=False,
        draw_cross=False,
        dim=-0.5,
        title="raw scan, brain mask outline",
    )
    display.add_contours(native_mask, levels=[0.5], colors="lime", linewidths=0.8)
    if title:
        figure.suptitle(title, color="white", fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80, facecolor="black")
    plt.close(figure)
    return str(path)


def _centre(mask: nib.Nifti1Image) -> np.ndarray:
    index = np.argwhere(np.asarray(mask.dataobj) > 0)
    if len(index) == 0:
        return (np.array(mask.shape[:3]) - 1) / 2
    return index.mean(0)


def write_qc_figure(png: str | os.PathLike, result, template, source: str | os.PathLike, title: str = "") -> str:
    """:func:`plot_preprocessing_qc` of a :class:`~.pipeline.PreprocessedScan` ``result`` of the scan at
    ``source`` onto ``template`` (a :class:`~.templates.Template`); returns the PNG path."""
    import ants

    from .pipeline import read_t1w

    raw = ants.to_nibabel_nifti(read_t1w(source))
    native = nib.Nifti1Image(result.native_mask.astype(np.uint8), raw.affine)
    registered = ants.to_nibabel_nifti(result.brain)
    mask = ants.to_nibabel_nifti(template.brain_mask)
    return plot_preprocessing_qc(registered, mask, raw, native, png, title)


def qc_title(name: str, metrics: dict) -> str:
    """``name`` and its QC figures, one line."""
    shown = ("template_correlation", "mask_dice", "jacobian_min", "similarity_cc")
    return name + ": " + ", ".join(f"{key} {metrics[key]:.3f}" for key in shown if metrics.get(key) is not None)
