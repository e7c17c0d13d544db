"""What a trained model accepts as input, and the checks that hold every scan to it.

A model of this package cuts fixed slices out of volumes on the grid it was trained on (voxel positions mean
anatomy only on that grid) and has only seen brain-extracted scans. So a scan is usable only if

1. it is on the run's :class:`Grid`: the same RAS shape, voxel size and position (``affine``) as the training
   images (:meth:`Grid.mismatch`);
2. it is brain-extracted: at most ``max_outside`` (default 5 %) of its non-zero voxels lie outside the template
   brain mask dilated by ``dilation_mm`` (default 6 mm) (:func:`outside_brain_share`). A head scan with skull and
   scalp on the right grid has 30-60 % of its voxels there; the preprocessing output has 0 %, the demo cohort's
   deformed phantoms at most 0.3 %.

:class:`InputCheck` does both and words the problem as one line that names what was expected and ends with
``preprocess first: <command>``; every place that takes scans (inference and explanation datalists, the loading
transform, ``axial-monai predict``) uses it, so the rule and its message live here only.

Example:
    >>> check = InputCheck(grid, brain_mask, model="runs/axial")
    >>> check("scans/ch2.nii.gz")
    'is on a (181, 217, 181) grid of 1 mm voxels, but the model expects (97, 115, 97) of 2 mm voxels (RAS); ...'
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from .errors import InputError, one_line

__all__ = [
    "PREPROCESS_FIRST",
    "Grid",
    "load_header",
    "read_grid",
    "ras_volume",
    "dilated_mask",
    "outside_brain_share",
    "affine_problem",
    "volume_problem",
    "voxel_problem",
    "InputCheck",
]

#: the words every refusal of an unpreprocessed scan contains, before the command that preprocesses it.
PREPROCESS_FIRST = "preprocess first"
#: voxel sizes that differ by less than this many mm are the same.
_SPACING_ATOL = 1e-2
#: directions (columns of the affine divided by the voxel size) that differ by less than this are the same.
_DIRECTION_ATOL = 1e-3


@dataclass(frozen=True)
class Grid:
    """A voxel grid in RAS order: ``shape`` ``(X, Y, Z)`` and the 4x4 voxel-to-world ``affine`` (mm).

    This is the grid of a volume after ``Orientationd(axcodes="RAS")``, which is how every volume reaches a network.
    """

    shape: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]

    @classmethod
    def from_affine(cls, shape: Sequence[int], affine: Any) -> Grid:
        """The grid of an array of ``shape`` with voxel-to-world ``affine`` (both already RAS)."""
        matrix = np.asarray(affine, dtype=float)
        if matrix.shape != (4, 4) or len(shape) != 3:
            raise InputError(f"A grid needs a 3D shape and a 4x4 affine, not shape {tuple(shape)}, {matrix.shape}.")
        return cls(tuple(int(s) for s in shape), tuple(tuple(float(v) for v in row) for row in matrix))

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Grid:
        """Inverse of :meth:`to_dict`."""
        return cls.from_affine(value["shape"], value["affine"])

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``shape``, ``spacing`` (mm), ``orientation`` (``"RAS"``) and ``affine``."""
        return {
            "shape": list(self.shape),
            "spacing": [round(s, 6) for s in self.spacing],
            "orientation": "".join(nib.aff2axcodes(np.asarray(self.affine))),
            "affine": [list(row) for row in self.affine],
        }

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis."""
        return tuple(float(v) for v in np.sqrt((np.asarray(self.affine)[:3, :3] ** 2).sum(0)))

    def describe(self) -> str:
        """E.g. ``"(97, 115, 97) grid of 2 mm voxels"``."""
        spacing = [f"{s:.3g}" for s in self.spacing]
        size = spacing[0] if len(set(spacing)) == 1 else " x ".join(spacing)
        return f"{self.shape} grid of {size} mm voxels"

    def mismatch(self, other: Grid) -> str | None:
        """What differs between ``other`` and this (expected) grid, or ``None`` if they are the same grid.

        Shapes must be equal, voxel sizes within 0.01 mm, directions within 1e-3, and the position of the first
        voxel within half a voxel (farther, the same slice index would cut other anatomy).
        """
        if other.shape != self.shape or not np.allclose(other.spacing, self.spacing, atol=_SPACING_ATOL):
            return f"is on a {other.describe()}, but the model expects a {self.describe()} (RAS)"
        mine, theirs = np.asarray(self.affine), np.asarray(other.affine)
        if not np.allclose(theirs[:3, :3] / other.spacing, mine[:3, :3] / self.spacing, atol=_DIRECTION_ATOL):
            return f"has the {self.describe()} but other voxel axes (affine {theirs[:3, :3].round(3).tolist()})"
        offset = np.abs(theirs[:3, 3] - mine[:3, 3])
        if np.any(offset > np.asarray(self.spacing) / 2):
            return (
                f"has the {self.describe()} but is shifted by {offset.round(1).tolist()} mm from the model's grid "
                f"(origin {theirs[:3, 3].round(1).tolist()} instead of {mine[:3, 3].round(1).tolist()})"
            )
        return None


def _ras(shape: Sequence[int], affine: np.ndarray) -> tuple[np.ndarray, tuple[int, ...], np.ndarray]:
    """The orientation change to RAS of an array of ``shape`` and ``affine``, the RAS shape and the RAS affine."""
    ornt = nib.orientations.io_orientation(affine)
    ras_shape = [0, 0, 0]
    for axis, (target, _) in enumerate(ornt):
        ras_shape[int(target)] = int(shape[axis])
    return ornt, tuple(ras_shape), affine @ nib.orientations.inv_ornt_aff(ornt, shape)


def affine_problem(affine: Any) -> str | None:
    """What is wrong with a voxel-to-world ``affine`` (not finite, or singular: the header's sform/qform do not map
    the voxels to a 3D grid), or ``None``."""
    matrix = np.asarray(affine, dtype=float)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        return f"has an affine that is not a finite 4x4 matrix ({matrix.round(3).tolist()}); fix its header"
    spacing = np.sqrt((matrix[:3, :3] ** 2).sum(0))
    if spacing.min() <= 0 or abs(np.linalg.det(matrix[:3, :3] / spacing)) < 1e-6:
        return (
            f"has a singular affine (voxel axes {matrix[:3, :3].round(3).tolist()}): its header's sform/qform do not "
            "describe a 3D grid; fix the header (e.g. with the scanner's conversion tool) and preprocess it again"
        )
    return None


def volume_problem(volume: Any) -> str | None:
    """What makes a volume's voxels unusable (NaN or infinite values, all voxels 0), or ``None``."""
    volume = np.asarray(volume)
    finite = np.isfinite(volume)
    if not finite.all():
        return (
            f"has {int((~finite).sum())} NaN or infinite voxels (of {volume.size}); a failed conversion or "
            "preprocessing step? Preprocess it again"
        )
    if not volume.any():
        return "is empty (all voxels are 0); a failed preprocessing step? Preprocess it again"
    return None


def _spatial_shape(image: nib.spatialimages.SpatialImage, path: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a single 3D volume, got shape {shape}.")
    return shape


def load_header(path: str | os.PathLike) -> nib.spatialimages.SpatialImage:
    """``nib.load(path)``, once per version of the file: the real path, size and modification time key a cache, so
    the start of training (grid discovery, item checks) and inference read each header once; a changed file is read
    again. Only the header is read here; the voxels stay on disk (``image.dataobj``)."""
    real = os.path.realpath(os.fspath(path))
    stat = os.stat(real)
    return _load_header(real, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16384)
def _load_header(path: str, size: int, mtime_ns: int) -> nib.spatialimages.SpatialImage:
    return nib.load(path)


def read_grid(path: str | os.PathLike) -> Grid:
    """The RAS grid of a NIfTI file, from its header only (no voxel data is read).

    Raises:
        InputError: if the file cannot be read as NIfTI or is not a single 3D volume.
    """
    try:
        image = load_header(path)
    except Exception as err:  # nibabel raises many kinds for damaged files
        raise InputError(f"{path}: cannot be read as NIfTI ({one_line(err)}).") from None
    shape = _spatial_shape(image, str(path))
    problem = affine_problem(image.affine)
    if problem:
        raise InputError(f"{path}: {problem}.")
    _, ras_shape, ras_affine = _ras(shape, np.asarray(image.affine, dtype=float))
    return Grid.from_affine(ras_shape, ras_affine)


def ras_volume(path: str | os.PathLike) -> tuple[np.ndarray, Grid]:
    """The voxel data of a NIfTI file in RAS order (float32) and its grid.

    Raises:
        InputError: if the file cannot be read or is not a single 3D volume.
    """
    try:
        image = load_header(path)
        shape = _spatial_shape(image, str(path))
        data = np.asarray(image.dataobj, dtype=np.float32).reshape(shape)
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{path}: cannot be read as NIfTI ({one_line(err)}).") from None
    problem = affine_problem(image.affine)
    if problem:
        raise InputError(f"{path}: {problem}.")
    ornt, ras_shape, ras_affine = _ras(shape, np.asarray(image.affine, dtype=float))
    return nib.orientations.apply_orientation(data, ornt), Grid.from_affine(ras_shape, ras_affine)


def voxel_problem(path: str | os.PathLike) -> str | None:
    """One line naming ``path`` and what makes its voxel data unusable (cut short or unreadable behind a fine
    header, NaN or infinite values, all voxels 0), or ``None``. Reads the whole volume."""
    try:
        volume, _ = ras_volume(path)
    except InputError as err:
        return " ".join(str(err).split()).rstrip(".")
    problem = volume_problem(volume)
    return f"{path} {problem}" if problem else None


def dilated_mask(mask: np.ndarray, spacing: Sequence[float], dilation_mm: float) -> np.ndarray:
    """``mask`` grown by ``dilation_mm`` (Euclidean distance in mm, anisotropic voxels allowed)."""
    mask = np.asarray(mask, dtype=bool)
    if dilation_mm <= 0:
        return mask
    return ndimage.distance_transform_edt(~mask, sampling=tuple(spacing)) <= dilation_mm


def outside_brain_share(volume: np.ndarray, allowed: np.ndarray, relative_threshold: float = 0.01) -> float:
    """Share of a volume's foreground voxels that lie outside ``allowed`` (a dilated brain mask), 0 to 1.

    Foreground: ``|v| > relative_threshold * p99``, the 99th percentile of the non-zero ``|v|``, so that
    interpolation crumbs and a noise floor do not count.

    Raises:
        InputError: if the volume has no non-zero voxel.
    """
    magnitude = np.abs(np.asarray(volume, dtype=np.float32))
    nonzero = magnitude[magnitude > 0]
    if nonzero.size == 0:
        raise InputError("the volume is empty (all voxels are 0)")
    foreground = magnitude > relative_threshold * float(np.percentile(nonzero, 99))
    return float((foreground & ~allowed).sum() / max(int(foreground.sum()), 1))


class InputCheck:
    """Hold scans to a model's input grid and to "brain-extracted"; every problem is one line.

    Args:
        grid: the model's input grid (the training images').
        brain_mask: template brain mask on ``grid`` (RAS array of ``grid.shape``), or ``None`` to check the grid only.
        max_outside: largest share of foreground voxels allowed outside the dilated brain mask.
        dilation_mm: how far the brain mask is grown before counting, in mm (registration is not exact).
        model: the run or bundle the scans are for; it goes into the suggested command.

    Calling the check on a file path returns ``None`` for a usable scan, else the problem (no file name; callers
    prefix it): ``"is on a (181, 217, 181) grid of 1 mm voxels, but the model expects a ...; preprocess first:
    axial-monai predict ch2.nii.gz --model runs/axial"``.
    """

    def __init__(
        self,
        grid: Grid,
        brain_mask: np.ndarray | None = None,
        max_outside: float = 0.05,
        dilation_mm: float = 6.0,
        model: str | None = None,
    ) -> None:
        if brain_mask is not None and tuple(np.shape(brain_mask)) != grid.shape:
            raise InputError(f"The brain mask has shape {np.shape(brain_mask)}, the grid is {grid.shape}.")
        if not 0.0 <= max_outside <= 1.0:
            raise ValueError(f"max_outside must be a share in [0, 1], not {max_outside}.")
        self.grid = grid
        self.brain_mask = None if brain_mask is None else np.asarray(brain_mask, dtype=bool)
        self.max_outside = float(max_outside)
        self.dilation_mm = float(dilation_mm)
        self.model = model

    def cache_key(self) -> dict[str, Any]:
        """What decides which volumes pass: the grid, the brain mask (its SHA-256), ``max_outside`` and
        ``dilation_mm``; not ``model``, which only names the run in messages."""
        mask = None
        if self.brain_mask is not None:
            mask = hashlib.sha256(np.packbits(self.brain_mask).tobytes()).hexdigest()
        grid = None if self.grid is None else self.grid.to_dict()
        return {"grid": grid, "brain_mask": mask, "max_outside": self.max_outside, "dilation_mm": self.dilation_mm}

    @classmethod
    def from_mask_file(cls, mask: str | os.PathLike, **kwargs: Any) -> InputCheck:
        """The check of a model whose grid and template brain mask are the NIfTI file ``mask`` (e.g. an exported
        bundle's ``models/brain_mask.nii.gz``); ``kwargs`` as in the constructor."""
        volume, grid = ras_volume(mask)
        return cls(grid, volume > 0.5, **kwargs)

    @cached_property
    def allowed(self) -> np.ndarray | None:
        """The dilated brain mask (computed once)."""
        if self.brain_mask is None:
            return None
        return dilated_mask(self.brain_mask, self.grid.spacing, self.dilation_mm)

    def hint(self, path: str | os.PathLike | None = None) -> str:
        """``"preprocess first: <command>"`` for ``path``: the command that preprocesses it and predicts."""
        model = self.model or "RUN_DIR"
        scan = "SCAN.nii.gz" if path is None else str(path)
        return f"{PREPROCESS_FIRST}: axial-monai predict {scan} --model {model}"

    def grid_problem(self, grid: Grid, path: str | os.PathLike | None = None) -> str | None:
        """The problem of a scan on ``grid``, or ``None`` if it is the model's grid."""
        problem = self.grid.mismatch(grid)
        return None if problem is None else f"{problem}; {self.hint(path)}"

    def brain_problem(self, volume: np.ndarray, path: str | os.PathLike | None = None) -> str | None:
        """The problem of a RAS ``volume`` on the model's grid that is not brain-extracted, or ``None``."""
        if self.allowed is None:
            return None
        try:
            share = outside_brain_share(volume, self.allowed)
        except InputError as err:
            return str(err)
        if share <= self.max_outside:
            return None
        return (
            f"is not brain-extracted: {share:.0%} of its non-zero voxels lie more than {self.dilation_mm:g} mm "
            f"outside the template brain (at most {self.max_outside:.0%} expected; skull or background?); "
            f"{self.hint(path)}"
        )

    def check_volume(self, volume: np.ndarray, affine: Any, path: str | os.PathLike | None = None) -> str | None:
        """The problem of a loaded RAS ``volume`` (``(X, Y, Z)``) with ``affine``, or ``None``."""
        volume = np.asarray(volume)
        grid_problem = affine_problem(affine) or self.grid_problem(Grid.from_affine(volume.shape, affine), path)
        return grid_problem or volume_problem(volume) or self.brain_problem(volume, path)

    def __call__(self, path: str | os.PathLike) -> str | None:
        """The problem of the NIfTI file ``path``, or ``None``: the header first, the voxels only if that passes."""
        try:
            problem = self.grid_problem(read_grid(path), path)
            if problem is None and self.allowed is not None:
                volume, _ = ras_volume(path)  # reading the voxels also finds damaged data behind a fine header
                problem = volume_problem(volume) or self.brain_problem(volume, path)
        except InputError as err:
            return str(err).removeprefix(f"{path}: ").rstrip(".")
        return problem

    def require(self, path: str | os.PathLike) -> None:
        """Raise :class:`InputError` ``"<path> <problem>."`` if ``path`` is not usable."""
        problem = self(path)
        if problem:
            raise InputError(f"{path} {problem}.")
