"""Cohort maps: the AXIAL population attention map, the "explainable MRI" and a streaming mean of voxel maps.

All volumes are ``(X, Y, Z)`` numpy arrays on one grid (the template / input grid); outputs are ``float32``.

Subsets (per class, correctly classified scans only, ...) are chosen by the caller: pass only the profiles or
maps of the scans of that subset, e.g. ``mean_map(m for m, ok in zip(maps, correct) if ok)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch

from ..geometry import plane_index
from .volumes import _check_indices, _check_shape, _to_numpy, minmax

__all__ = ["cohort_attention_map", "explainable_mri", "mean_map"]


def cohort_attention_map(
    profiles: Mapping[int, np.ndarray | torch.Tensor | Sequence[np.ndarray]],
    indices: Mapping[int, Sequence[int]],
    spatial_shape: Sequence[int],
) -> np.ndarray:
    """The AXIAL cohort attention map: mean attention per plane, outer product, min-max, placed in the volume.

    ``M(i, j, k) = a_0[i] * a_1[j] * a_2[k]`` with ``a_p`` the mean attention of plane ``p`` over the scans,
    min-max normalised over the extracted box and written at exactly the slice positions used for extraction:
    the value of slice ``s`` of plane ``p`` lands at ``indices[p][s]`` along axis ``p`` (no one-voxel shift).
    Outside the box the map is 0.

    A plane that is not in ``profiles`` is taken as constant along its axis (over the whole axis), so one plane
    gives slabs and two planes give bars.

    Args:
        profiles: plane -> ``(S, N_p)`` attention vectors of ``S`` scans (or a sequence of ``S`` vectors of length
            ``N_p``; a single ``(N_p,)`` vector counts as one scan).
        indices: plane -> its ``N_p`` slice positions (e.g. ``net.slice_indices(shape)``).
        spatial_shape: ``(X, Y, Z)``.

    Returns:
        ``(X, Y, Z)`` float32 in [0, 1].

    Raises:
        ValueError: if ``profiles`` is empty, a plane has no scans, no indices, or a profile length that differs
            from its number of indices.
    """
    shape = _check_shape(spatial_shape)
    if not profiles:
        raise ValueError("profiles must hold the attention of at least one plane, not an empty mapping.")
    profiles = {plane_index(plane): profile for plane, profile in profiles.items()}
    vectors: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    for axis in range(3):
        if axis not in profiles:
            vectors.append(np.ones(shape[axis], np.float64))
            positions.append(np.arange(shape[axis]))
            continue
        raw = profiles[axis]
        if isinstance(raw, list | tuple):
            stack = np.stack([_to_numpy(p, np.float64).reshape(-1) for p in raw]) if raw else np.zeros((0, 0))
        else:
            stack = _to_numpy(raw, np.float64)
        if stack.ndim == 1:
            stack = stack[None]
        if stack.ndim != 2 or stack.shape[0] == 0:
            raise ValueError(f"profiles[{axis}] must have shape (S, N) with at least one scan, not {stack.shape}.")
        if axis not in indices:
            raise ValueError(f"No slice indices given for plane {axis}; indices has planes {sorted(indices)}.")
        idx = _check_indices(indices[axis], axis, shape, stack.shape[1], f"The profiles of plane {axis} {stack.shape}")
        vectors.append(stack.mean(axis=0))
        positions.append(idx)
    box = vectors[0][:, None, None] * vectors[1][None, :, None] * vectors[2][None, None, :]
    out = np.zeros(shape, np.float32)
    out[np.ix_(*positions)] = minmax(box)
    return out


def explainable_mri(
    template: np.ndarray | torch.Tensor, cohort_map: np.ndarray | torch.Tensor, scale: float = 10.0
) -> np.ndarray:
    """The AXIAL "explainable MRI": the template rescaled to [0, 1] plus ``scale`` times the map.

    Args:
        template: ``(X, Y, Z)`` anatomy (any intensity range).
        cohort_map: ``(X, Y, Z)`` map on the same grid, normally in [0, 1] (e.g. :func:`cohort_attention_map`).
        scale: weight of the map (10 in the paper, so the map dominates the anatomy where it is high).

    Returns:
        ``(X, Y, Z)`` float32 ``minmax(template) + scale * cohort_map``.

    Raises:
        ValueError: if the shapes differ.
    """
    anatomy = _to_numpy(template)
    relevance = _to_numpy(cohort_map)
    if anatomy.shape != relevance.shape:
        raise ValueError(f"template {anatomy.shape} and cohort_map {relevance.shape} must have the same shape.")
    return (minmax(anatomy) + np.float32(scale) * relevance).astype(np.float32)


def _load_map(item) -> np.ndarray:
    if isinstance(item, str | os.PathLike):
        item = nib.load(os.fspath(item))
    if isinstance(item, nib.spatialimages.SpatialImage):
        return np.asarray(item.dataobj, dtype=np.float64)
    return _to_numpy(item, np.float64)


def mean_map(
    maps: Iterable[np.ndarray | torch.Tensor | nib.spatialimages.SpatialImage | str | os.PathLike],
) -> np.ndarray:
    """Voxel-wise mean of maps, streamed: only a running sum and one map are held in memory.

    Use it for cohort CAM maps; choose the subset (a class, correctly classified scans) by what you pass in,
    e.g. a generator that loads each scan's map from disk.

    Args:
        maps: ``(X, Y, Z)`` maps of one shape: arrays, tensors, NIfTI images or NIfTI file paths.

    Returns:
        ``(X, Y, Z)`` float32 mean (accumulated in float64).

    Raises:
        ValueError: if ``maps`` is empty or the shapes differ.
    """
    total: np.ndarray | None = None
    count = 0
    for item in maps:
        volume = _load_map(item)
        if total is None:
            total = np.array(volume, dtype=np.float64, copy=True)
        elif volume.shape != total.shape:
            raise ValueError(f"Map {count} has shape {volume.shape}, but the first map has shape {total.shape}.")
        else:
            total += volume
        count += 1
    if total is None:
        raise ValueError("mean_map needs at least one map.")
    return (total / count).astype(np.float32)
