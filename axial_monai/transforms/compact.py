"""Compact volumes: crop a normalised volume to its foreground box and store it in a small dtype, and the inverse.

After ``RobustNormalizeIntensity`` the background of a brain-extracted scan is exactly 0, so cropping to the
box of non-zero voxels loses nothing: zero-padding the box back to the full grid gives the same volume (up to
the rounding of the storage dtype). The networks then see the same slice positions (they depend on the axis
length) and the same native slice sizes before resizing.

Example:
    >>> compact, start, scale = compact_volume(volume, "uint8")  # volume (1, 193, 229, 193) in [0, 1]
    >>> restored = restore_volume(torch.as_tensor(compact)[None], start, volume.shape[1:], scale)  # (1, 1, X, Y, Z)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms.utils import generate_spatial_bounding_box

__all__ = ["COMPACT_DTYPES", "compact_volume", "restore_volume", "foreground_box"]

#: storage dtypes: uint8 (non-negative intensities, step max/255), float16 (any sign), float32 (lossless).
COMPACT_DTYPES = {"uint8": np.uint8, "float16": np.float16, "float32": np.float32}
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def foreground_box(volume: np.ndarray | torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Start (inclusive) and stop (exclusive) voxel indices of the non-zero voxels of ``(C, X, Y, Z)``.

    An all-zero volume gives an empty box at the origin.
    """
    start, stop = generate_spatial_bounding_box(volume, select_fn=lambda x: x != 0)
    return tuple(int(s) for s in start), tuple(int(s) for s in stop)


def compact_volume(
    volume: np.ndarray | torch.Tensor, dtype: str = "uint8", name: str = "<array>"
) -> tuple[np.ndarray, tuple[int, ...], float]:
    """Crop a channel-first volume ``(1, X, Y, Z)`` to its non-zero box and convert it to a compact dtype.

    Args:
        volume: normalised volume (background exactly 0).
        dtype: "uint8" (values ``round(v / scale)`` with ``scale = max / 255``; needs ``v >= 0``), "float16"
            or "float32" (lossless).
        name: file name used in error messages.

    Returns:
        ``(compact, start, scale)``: the cropped array ``(1, cx, cy, cz)`` in ``dtype``, the voxel index of its
        first corner in the full grid, and the factor that maps stored values back to intensities.

    Raises:
        ValueError: for an unknown dtype, negative intensities with "uint8", or values float16 cannot hold.
    """
    if dtype not in COMPACT_DTYPES:
        raise ValueError(f"cache_dtype must be one of {sorted(COMPACT_DTYPES)}, not {dtype!r}.")
    array = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    if array.ndim != 4:
        raise ValueError(f"{name}: expected a channel-first volume (C, X, Y, Z), got shape {array.shape}.")
    start, stop = foreground_box(array)
    crop = array[(slice(None), *(slice(a, b) for a, b in zip(start, stop)))].astype(np.float32, copy=False)
    peak = float(np.abs(crop).max()) if crop.size else 0.0
    if dtype == "uint8":
        if crop.size and float(crop.min()) < 0:
            raise ValueError(
                f"{name}: cache_dtype 'uint8' stores non-negative intensities only (intensity 'percentile'), "
                f"but the normalised volume has values down to {float(crop.min()):.3g}; use cache_dtype 'float16'."
            )
        scale = peak / 255.0 if peak > 0 else 1.0
        return np.rint(crop / scale).clip(0, 255).astype(np.uint8), start, scale
    if dtype == "float16" and peak > _FLOAT16_MAX:
        raise ValueError(f"{name}: intensities up to {peak:.3g} do not fit cache_dtype 'float16'; use 'float32'.")
    return crop.astype(COMPACT_DTYPES[dtype]), start, 1.0


def restore_volume(
    compact: torch.Tensor,
    start: Sequence[int] | torch.Tensor,
    spatial_shape: Sequence[int] | torch.Tensor,
    scale: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Inverse of :func:`compact_volume` for a batch, on the batch's device: cast, rescale, zero-pad.

    Args:
        compact: ``(B, C, cx, cy, cz)`` in any dtype; all items share the same box.
        start: first voxel ``(x0, y0, z0)`` of the box in the full grid.
        spatial_shape: full grid ``(X, Y, Z)``.
        scale: one factor, or one per item ``(B,)``.

    Returns:
        float32 ``(B, C, X, Y, Z)``, zero outside the box.

    Raises:
        ValueError: if the box does not fit in the grid.
    """
    start = [int(s) for s in torch.as_tensor(start).view(-1).tolist()]
    shape = [int(s) for s in torch.as_tensor(spatial_shape).view(-1).tolist()]
    size = list(compact.shape[2:])
    if len(start) != 3 or len(shape) != 3 or any(s < 0 or s + c > n for s, c, n in zip(start, size, shape)):
        raise ValueError(f"A box of size {size} at {start} does not fit in the grid {shape}.")
    # one pass: zeros outside the box, the rescaled crop inside (cheaper than casting then F.pad)
    out = torch.zeros((*compact.shape[:2], *shape), dtype=torch.float32, device=compact.device)
    inside = out[(slice(None), slice(None), *(slice(s, s + c) for s, c in zip(start, size)))]
    if isinstance(scale, torch.Tensor) and scale.numel() > 1:
        factor = scale.to(device=out.device, dtype=out.dtype).view(-1, *([1] * (out.ndim - 1)))
        torch.mul(compact, factor, out=inside)
    elif float(scale) != 1.0:
        torch.mul(compact, float(scale), out=inside)
    else:
        inside.copy_(compact)
    return out
