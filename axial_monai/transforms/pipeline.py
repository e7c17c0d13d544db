"""The deterministic loading chain shared by the training, evaluation and inference configs."""

from __future__ import annotations

from collections.abc import Sequence

from monai.transforms import Compose, LoadImaged, Orientationd

from ..input_check import InputCheck
from .intensity import RobustNormalizeIntensityd
from .validation import CheckVolumed

__all__ = ["load_volume"]


def load_volume(
    keys: str | Sequence[str] = "image",
    intensity: str = "percentile",
    spatial_shape: Sequence[int] | None = None,
    pixdim: Sequence[float] | None = None,
    check: InputCheck | None = None,
) -> Compose:
    """Load a NIfTI volume as a RAS, channel-first MetaTensor ``(1, X, Y, Z)``, check it and normalise it.

    LoadImaged -> Orientationd("RAS") -> CheckVolumed -> RobustNormalizeIntensityd. RAS order makes array axis
    0 sagittal, 1 coronal and 2 axial, which is what the networks' ``plane`` refers to.

    The bundle caches this chain with ``axial_monai.data.VolumeCacheDataset``. Nested in another ``Compose`` for
    MONAI's ``CacheDataset``, flatten it first (``Compose([...]).flatten()``): ``CacheDataset`` stops caching at
    the first ``Compose`` it meets, as it cannot know that the nested one is deterministic.

    Args:
        keys: image keys.
        intensity: "percentile" (to [0, 1]; networks use ``normalize="imagenet"``) or "zscore" (``"none"``).
        spatial_shape: expected grid ``(X, Y, Z)`` in voxels, or None.
        pixdim: expected voxel size in mm, or None.
        check: a trained run's input check (grid, brain-extracted; ``RunSettings.input_check()``), or None.
    """
    return Compose(
        [
            LoadImaged(keys, ensure_channel_first=True, image_only=True),
            Orientationd(keys, axcodes="RAS"),
            CheckVolumed(keys, spatial_shape=spatial_shape, pixdim=pixdim, check=check),
            RobustNormalizeIntensityd(keys, mode=intensity),
        ]
    )
