"""Slice geometry shared by the networks, the transforms and the explanations.

Volumes are RAS and channel-first after loading (:func:`axial_monai.transforms.load_volume`), so the array axes
``0, 1, 2`` of a spatial shape ``(X, Y, Z)`` are the sagittal, coronal and axial planes: a slice of plane ``p`` is
``volume.take(i, axis=p)``. A network cuts the ``N`` central slices of a plane
(:func:`central_slice_indices`), and an explanation puts its per-slice values back at exactly those indices.

Slices go into ImageNet-style 2D backbones; :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD` are the channel
statistics used to standardise them.
"""

from __future__ import annotations

from .errors import SettingsError

__all__ = [
    "PLANES",
    "PLANE_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "plane_index",
    "central_slice_start",
    "central_slice_indices",
]

#: plane name -> array axis of a RAS volume (without batch/channel dims).
PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}
#: array axis -> label used in figures, e.g. ``"coronal (y)"``.
PLANE_NAMES = {axis: f"{name} ({'xyz'[axis]})" for name, axis in PLANES.items()}
#: per-channel mean and std of ImageNet (RGB, intensities in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def plane_index(plane: int | str) -> int:
    """The array axis (0 sagittal, 1 coronal, 2 axial) of ``plane``, given as a name or an index.

    Raises:
        SettingsError: for another name or index (``True``/``False`` are not accepted as 1/0).
    """
    if isinstance(plane, str):
        if plane.lower() not in PLANES:
            raise SettingsError(f"plane must be one of {sorted(PLANES)} or 0/1/2, not {plane!r}.")
        return PLANES[plane.lower()]
    if isinstance(plane, bool) or plane not in (0, 1, 2):
        raise SettingsError(f"plane must be 0 (sagittal), 1 (coronal) or 2 (axial), not {plane!r}.")
    return int(plane)


def central_slice_start(depth: int, num_slices: int) -> int:
    """The first of the ``num_slices`` central slice indices of an axis of length ``depth``.

    ``int(depth / 2 - num_slices / 2)``, as in AXIAL. TorchScript compiles it (the networks cut their slices with it).

    Raises:
        SettingsError: if ``num_slices`` is not in ``[1, depth]``.
    """
    if num_slices < 1 or num_slices > depth:
        raise SettingsError(
            "Cannot take "
            + str(num_slices)
            + " central slices from an axis with "
            + str(depth)
            + " slices: num_slices must be between 1 and "
            + str(depth)
            + "."
        )
    return int(depth / 2 - num_slices / 2)


def central_slice_indices(depth: int, num_slices: int) -> range:
    """The ``num_slices`` central slice indices of an axis of length ``depth``: ``range(start, start + num_slices)``
    with ``start`` from :func:`central_slice_start`.

    Raises:
        SettingsError: if ``num_slices`` is not in ``[1, depth]``.
    """
    start = central_slice_start(depth, num_slices)
    return range(start, start + num_slices)
