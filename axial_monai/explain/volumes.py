"""Per-scan voxel maps: put slice attention and per-slice CAMs back at the slices they came from.

A network of this package cuts the central slices of a RAS volume ``(X, Y, Z)`` along a plane ``p`` (0 sagittal,
1 coronal, 2 axial = array axis ``p``): slice ``s`` of the stack is ``volume.take(indices[s], axis=p)``, of
native in-plane shape ``(Y, Z)``, ``(X, Z)`` or ``(X, Y)`` for ``p = 0, 1, 2``, with
``indices = central_slice_indices(shape[p], N)``. The functions here do the inverse placement, voxel-exactly:
a value computed for slice ``s`` lands in the slab ``indices[s]`` along axis ``p`` and nowhere else; voxels outside
the extracted range get 0.

Shapes: ``spatial_shape`` is ``(X, Y, Z)`` in voxels; every returned volume is a ``float32`` numpy array of that
shape on the input grid (save it with the input's affine). Attention values are unitless weights (a softmax over
the slices of a plane); CAM values are unitless relevance.

Example:
    >>> indices = net.slice_indices(x.shape[2:])                      # {plane: range}
    >>> logits, attention = net.plane_attention(x)                    # {plane: (1, N_p)}
    >>> att = {p: a[0].detach().numpy() for p, a in attention.items()}
    >>> vol = attention_volume(att, indices, x.shape[2:])             # (X, Y, Z)
    >>> raw = GradCAM(nn_module=net, target_layers=net.cam_layer).compute_map(x, class_idx=1, layer_idx=-1)
    >>> cams = split_cams(raw, [len(indices[p]) for p in (0, 1, 2)])  # one (N_p, 1, h, w) per plane
    >>> cam = combine_planes([cam_volume(c, p, indices[p], x.shape[2:]) for p, c in enumerate(cams)])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import plane_index

__all__ = [
    "CAM_NORMALIZATIONS",
    "minmax",
    "place_profile",
    "attention_volume",
    "cam_volume",
    "combine_planes",
    "attention_weighted_cam",
    "split_cams",
]

#: Accepted values of the ``normalization`` argument of :func:`cam_volume`.
CAM_NORMALIZATIONS = ("volume", "slice")

ArrayLike = np.ndarray | torch.Tensor


def _to_numpy(value: ArrayLike | Sequence[float], dtype=np.float32) -> np.ndarray:
    """A numpy copy-free view (where possible) of a numpy array, a torch tensor (any device) or a sequence."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16 (maps of a network run under bf16 autocast)
            value = value.float()
        value = value.numpy()
    return np.asarray(value, dtype=dtype)


def minmax(volume: ArrayLike) -> np.ndarray:
    """Rescale ``volume`` linearly to [0, 1] (min -> 0, max -> 1).

    Args:
        volume: array of any shape (numpy or torch).

    Returns:
        ``float32`` array of the same shape. A constant (or empty) input gives zeros, never NaN. Non-finite values
        are not allowed.

    Raises:
        ValueError: if ``volume`` contains NaN or infinite values.
    """
    v = _to_numpy(volume, np.float64)
    if v.size == 0:
        return v.astype(np.float32)
    if not np.isfinite(v).all():
        raise ValueError(f"minmax needs finite values, but the input (shape {v.shape}) contains NaN or inf.")
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 0:
        return np.zeros(v.shape, np.float32)
    return ((v - lo) / (hi - lo)).astype(np.float32)


def _check_shape(spatial_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in spatial_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"spatial_shape must be three positive sizes (X, Y, Z), not {tuple(spatial_shape)}.")
    return shape  # type: ignore[return-value]


def _check_indices(
    indices: Sequence[int], plane: int, shape: tuple[int, int, int], count: int, what: str
) -> np.ndarray:
    """Slice positions as an int array, checked against the axis length and the number of values."""
    idx = np.asarray(list(indices), dtype=np.int64)
    if idx.ndim != 1 or len(idx) != count:
        raise ValueError(f"{what} has {count} slices but {len(idx)} slice indices were given for plane {plane}.")
    depth = shape[plane]
    if len(idx) and (idx.min() < 0 or idx.max() >= depth):
        raise ValueError(
            f"Slice indices {int(idx.min())}..{int(idx.max())} of plane {plane} do not fit an axis of {depth} "
            f"slices (spatial shape {shape}): they must lie in 0..{depth - 1}."
        )
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"Slice indices of plane {plane} must be distinct, got {idx.tolist()}.")
    return idx


def _axis_profile(profile: ArrayLike, plane: int, indices: Sequence[int], shape: tuple[int, int, int]) -> np.ndarray:
    """Full-length vector along axis ``plane``: ``profile[s]`` at ``indices[s]``, 0 elsewhere."""
    values = _to_numpy(profile)
    if values.ndim > 2 or (values.ndim == 2 and values.shape[0] != 1):
        raise ValueError(f"A slice profile must have shape (N,) or (1, N), not {values.shape} (plane {plane}).")
    values = values.reshape(-1)
    idx = _check_indices(indices, plane, shape, len(values), f"The profile ({len(values)} values)")
    out = np.zeros(shape[plane], np.float32)
    out[idx] = values
    return out


def _broadcast_axis(vector: np.ndarray, plane: int) -> np.ndarray:
    """View a vector along axis ``plane`` as a broadcastable 3D array."""
    view = [1, 1, 1]
    view[plane] = -1
    return vector.reshape(view)


def place_profile(profile: ArrayLike, plane: int, indices: Sequence[int], spatial_shape: Sequence[int]) -> np.ndarray:
    """Write a per-slice profile at the slice positions of ``plane``.

    Args:
        profile: ``(N,)`` one value per slice (e.g. attention weights).
        plane: 0, 1 or 2, the array axis the slices were cut along.
        indices: the ``N`` slice positions along that axis (e.g. ``net.slice_indices(shape)[plane]``).
        spatial_shape: ``(X, Y, Z)``.

    Returns:
        ``(X, Y, Z)`` float32: every voxel of slab ``indices[s]`` holds ``profile[s]``; 0 outside the slabs.

    Raises:
        ValueError: if ``len(profile) != len(indices)``, an index is outside ``0..spatial_shape[plane] - 1`` or
            repeated, or the plane / shape is invalid.
    """
    shape = _check_shape(spatial_shape)
    plane = plane_index(plane)
    vector = _axis_profile(profile, plane, indices, shape)
    return np.ascontiguousarray(np.broadcast_to(_broadcast_axis(vector, plane), shape))


def attention_volume(
    attention: Mapping[int, ArrayLike],
    indices: Mapping[int, Sequence[int]],
    spatial_shape: Sequence[int],
    normalize: bool = False,
) -> np.ndarray:
    """Slice attention of one scan as a voxel map: the product over planes of their placed profiles.

    For one plane this is that plane's slab map (:func:`place_profile`); for three planes it is the voxel-wise
    product ``a_0[i] * a_1[j] * a_2[k]`` inside the extracted box (the outer product of the three profiles) and 0
    outside it.

    Args:
        attention: plane -> ``(N_p,)`` attention weights of that plane (numpy or torch; a ``(1, N_p)`` batch of
            one is accepted too).
        indices: plane -> its ``N_p`` slice positions; must contain every plane of ``attention``.
        spatial_shape: ``(X, Y, Z)``.
        normalize: min-max the result to [0, 1]. Off by default: the raw product keeps the attention's own scale
            (values are small, e.g. about ``1/N`` per plane for a flat attention), so maps of different scans stay
            comparable.

    Returns:
        ``(X, Y, Z)`` float32.

    Raises:
        ValueError: if ``attention`` is empty, a plane has no indices, or a profile does not fit its indices.
    """
    shape = _check_shape(spatial_shape)
    if not attention:
        raise ValueError("attention must hold the profile of at least one plane, not an empty mapping.")
    out = np.ones(shape, np.float32)
    for plane, profile in attention.items():
        plane = plane_index(plane)
        if plane not in indices:
            raise ValueError(f"No slice indices given for plane {plane}; indices has planes {sorted(indices)}.")
        out = out * _broadcast_axis(_axis_profile(profile, plane, indices[plane], shape), plane)
    return minmax(out) if normalize else out.astype(np.float32)


def _as_cam_stack(cams: ArrayLike) -> torch.Tensor:
    """``(N, h, w)`` or ``(N, 1, h, w)`` -> float32 CPU tensor ``(N, 1, h, w)``."""
    t = torch.as_tensor(cams).detach().to("cpu", torch.float32)
    if t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4 or t.shape[1] != 1:
        raise ValueError(f"cams must have shape (N, h, w) or (N, 1, h, w), not {tuple(t.shape)}.")
    return t


def cam_volume(
    cams: ArrayLike,
    plane: int,
    indices: Sequence[int],
    spatial_shape: Sequence[int],
    normalization: Literal["volume", "slice"] = "volume",
) -> np.ndarray:
    """Stack per-slice 2D CAMs of one plane into a voxel map on the input grid.

    Each 2D map is resized (bilinear, ``align_corners=False``, as the slices were resized on the way in) from
    the CAM resolution ``(h, w)`` back to the slice's native in-plane size -- ``(Y, Z)``, ``(X, Z)`` or ``(X, Y)``
    for plane 0, 1, 2 -- and written at slab ``indices[s]`` along axis ``plane``; voxels outside the extracted
    slices are 0.

    Normalisation (applied after resizing, result in [0, 1]; a constant slice or stack gives zeros, never NaN):

    * ``"volume"`` (default): one min-max over all slices of the plane. It keeps the contrast *between* slices:
      a slice whose CAM is weak stays weak, so the maximum of the 3D map lands where the network's evidence is
      strongest.
    * ``"slice"``: min-max of every slice separately (the AXIAL reference). Every slice -- even one the network
      ignores -- then gets a full-range peak of 1, so a 3D map built from it has its maximum in many places and
      which one "wins" after the product of planes is close to arbitrary. Kept for reproducing the paper.

    Args:
        cams: ``(N, h, w)`` or ``(N, 1, h, w)`` raw CAMs of the ``N`` slices of one plane (numpy or torch, e.g.
            ``GradCAM.compute_map(x, class_idx=k, layer_idx=-1)`` of a single-plane network).
        plane: 0, 1 or 2.
        indices: the ``N`` slice positions along ``plane``.
        spatial_shape: ``(X, Y, Z)``.
        normalization: ``"volume"`` or ``"slice"``.

    Returns:
        ``(X, Y, Z)`` float32 in [0, 1].

    Raises:
        ValueError: for a bad ``normalization``, a CAM stack of the wrong rank, or a number of CAMs that differs
            from ``len(indices)``.
    """
    if normalization not in CAM_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {CAM_NORMALIZATIONS}, not {normalization!r}.")
    shape = _check_shape(spatial_shape)
    plane = plane_index(plane)
    stack = _as_cam_stack(cams)
    idx = _check_indices(indices, plane, shape, stack.shape[0], f"The CAM stack {tuple(stack.shape)}")
    native = tuple(s for axis, s in enumerate(shape) if axis != plane)
    if not torch.isfinite(stack).all():
        raise ValueError("cams contain NaN or infinite values.")
    if tuple(stack.shape[-2:]) != native:
        stack = F.interpolate(stack, size=native, mode="bilinear", align_corners=False)
    maps = stack[:, 0].numpy().astype(np.float64)  # (N, a, b)
    if normalization == "slice":
        lo = maps.min(axis=(1, 2), keepdims=True)
        span = maps.max(axis=(1, 2), keepdims=True) - lo
        maps = np.divide(maps - lo, span, out=np.zeros_like(maps), where=span > 0)
    else:
        maps = minmax(maps)
    out = np.zeros(shape, np.float32)
    np.moveaxis(out, plane, 0)[idx] = maps  # moveaxis gives a view: this writes into ``out``
    return out


def combine_planes(volumes: Sequence[ArrayLike]) -> np.ndarray:
    """Voxel-wise product of per-plane maps, min-max to [0, 1] (the AXIAL three-plane GradCAM).

    Args:
        volumes: one or more ``(X, Y, Z)`` maps on the same grid (e.g. :func:`cam_volume` of each plane).

    Returns:
        ``(X, Y, Z)`` float32 in [0, 1] (zeros if the product is constant).

    Raises:
        ValueError: if ``volumes`` is empty or the shapes differ.
    """
    if len(volumes) == 0:
        raise ValueError("combine_planes needs at least one volume.")
    arrays = [_to_numpy(v) for v in volumes]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"All volumes must have the same shape, got {sorted(shapes)}.")
    out = arrays[0].astype(np.float64)
    for a in arrays[1:]:
        out = out * a
    return minmax(out)


def attention_weighted_cam(
    cams: ArrayLike,
    attention: ArrayLike,
    plane: int,
    indices: Sequence[int],
    spatial_shape: Sequence[int],
    normalization: Literal["volume", "slice"] = "volume",
) -> np.ndarray:
    """Per-subject voxel map of one plane: each slice's CAM scaled by that slice's attention weight.

    Unlike the population-wide, rank-1 attention map, this map is voxel-precise within each slice and specific
    to the scan: the slice attention says *which slices* matter, the CAM *where in the slice*.

    Args:
        cams: ``(N, h, w)`` or ``(N, 1, h, w)`` raw CAMs of the plane (see :func:`cam_volume`).
        attention: ``(N,)`` attention weights of the same slices.
        plane: 0, 1 or 2.
        indices: the ``N`` slice positions.
        spatial_shape: ``(X, Y, Z)``.
        normalization: how the CAMs are normalised before weighting (see :func:`cam_volume`).

    Returns:
        ``(X, Y, Z)`` float32, ``cam_volume(...) * attention[s]`` in slab ``indices[s]``; not rescaled, so values
        lie in ``[0, max(attention)]``. Combine planes with :func:`combine_planes` (which rescales to [0, 1]).

    Raises:
        ValueError: as :func:`cam_volume` and :func:`place_profile`.
    """
    cam = cam_volume(cams, plane, indices, spatial_shape, normalization)
    return cam * place_profile(attention, plane, indices, spatial_shape)


def split_cams(cams: ArrayLike, num_slices: Sequence[int]) -> list[ArrayLike]:
    """Split a concatenated tri-planar CAM batch into one stack per plane.

    Args:
        cams: ``(sum(num_slices), ...)``, e.g. the ``(N_0 + N_1 + N_2, 1, h, w)`` output of
            ``GradCAM.compute_map`` on a ``TriPlanarAxialNet`` (slices of plane 0, then 1, then 2).
        num_slices: the slice counts, in the order the planes were concatenated.

    Returns:
        ``len(num_slices)`` arrays (of the input's type: tensor or numpy) of shapes ``(num_slices[i], ...)``.

    Raises:
        ValueError: if the counts do not add up to ``cams.shape[0]`` or one is negative.
    """
    counts = [int(n) for n in num_slices]
    if any(n < 0 for n in counts) or sum(counts) != cams.shape[0]:
        raise ValueError(
            f"num_slices {counts} (sum {sum(counts)}) must be non-negative and add up to the number of CAMs "
            f"{cams.shape[0]} (cams shape {tuple(cams.shape)})."
        )
    bounds = np.cumsum([0, *counts])
    return [cams[int(a) : int(b)] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
