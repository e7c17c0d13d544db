"""The deterministic loading chain shared by the training, evaluation and inference configs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.transforms import Compose, LoadImaged, Orientationd

from ..input_check import InputCheck
from .intensity import RobustNormalizeIntensityd
from .validation import CheckVolumed

__all__ = ["VolumeLoader", "load_volume"]

_AXCODES = "RAS"  # array axis 0 sagittal, 1 coronal, 2 axial: what the networks' ``plane`` means


class VolumeLoader(Compose):
    """Load a NIfTI volume as a RAS, channel-first MetaTensor ``(1, X, Y, Z)``, check it and normalise it; and say
    what a cache of its outputs is keyed by (:meth:`cache_key`). The configs call it :data:`load_volume`.

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

    def __init__(
        self,
        keys: str | Sequence[str] = "image",
        intensity: str = "percentile",
        spatial_shape: Sequence[int] | None = None,
        pixdim: Sequence[float] | None = None,
        check: InputCheck | None = None,
    ) -> None:
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        super().__init__(
            [
                LoadImaged(self.keys, ensure_channel_first=True, image_only=True),
                Orientationd(self.keys, axcodes=_AXCODES),
                CheckVolumed(self.keys, spatial_shape=spatial_shape, pixdim=pixdim, check=check),
                RobustNormalizeIntensityd(self.keys, mode=intensity),
            ]
        )

    def cache_key(self) -> dict[str, Any]:
        """Every setting of the chain that changes its output: the keys and orientation (which fix the loading and
        reorientation steps), then the check's and the normalisation's own :meth:`cache_key`."""
        check, normalize = self.transforms[2], self.transforms[3]
        return {"keys": self.keys, "axcodes": _AXCODES, "check": check.cache_key(), "normalize": normalize.cache_key()}


#: the name the configs and the rest of the package use for the loading chain.
load_volume = VolumeLoader
