"""Robust per-volume intensity normalisation inside the brain (foreground)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

from axial_monai.errors import InputError, SettingsError

__all__ = ["RobustNormalizeIntensity", "RobustNormalizeIntensityd", "source_name"]


def source_name(img: torch.Tensor) -> str:
    """The file an image was loaded from (``meta["filename_or_obj"]``), or "<array>" for plain tensors."""
    name = img.meta.get("filename_or_obj") if isinstance(img, MetaTensor) else None
    return str(name) if name else "<array>"


class RobustNormalizeIntensity(Transform):
    """Normalise a volume using statistics of its foreground (the brain) only.

    * ``mode="percentile"`` (default): map the ``lower``/``upper`` percentiles of the foreground to 0/1 and
      clip to [0, 1]; pairs with ImageNet normalisation in the networks (``normalize="imagenet"``).
    * ``mode="zscore"``: subtract the foreground mean and divide by its std; pair with ``normalize="none"``.

    The background (outside the foreground) is set to 0 in both modes, so skull-stripped scans keep a flat
    background whatever their raw scale.

    Args:
        mode: "percentile" or "zscore".
        lower: lower percentile (0-100) for ``percentile`` mode.
        upper: upper percentile (0-100) for ``percentile`` mode.
        threshold: voxels above it are foreground when no mask is given.

    Input ``(C, X, Y, Z)`` (any spatial dims); optional boolean ``mask`` of the same spatial shape.
    """

    def __init__(self, mode: str = "percentile", lower: float = 0.5, upper: float = 99.5, threshold: float = 0.0):
        if mode not in ("percentile", "zscore"):
            raise SettingsError(f"mode must be 'percentile' or 'zscore', not {mode!r}.")
        if not 0.0 <= lower < upper <= 100.0:
            raise SettingsError(
                f"Percentiles must satisfy 0 <= lower < upper <= 100, not lower={lower}, upper={upper}."
            )
        self.mode, self.lower, self.upper, self.threshold = mode, lower, upper, threshold

    def __call__(self, img: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        img = convert_to_tensor(img, track_meta=True, dtype=torch.float32)
        fg = (img > self.threshold) if mask is None else convert_to_tensor(mask, track_meta=False).bool()
        fg = fg.expand_as(img)
        values = img.as_tensor()[fg] if isinstance(img, MetaTensor) else img[fg]
        if not torch.isfinite(img).all():
            raise InputError(f"{source_name(img)}: the image contains NaN or infinite values.")
        if values.numel() < 2:
            raise InputError(f"{source_name(img)}: no foreground voxels above {self.threshold}; is the image empty?")
        if self.mode == "percentile":
            q = torch.quantile(
                values[:: max(1, values.numel() // 1_000_000)], torch.tensor([self.lower, self.upper]) / 100
            )
            lo, hi = q[0], q[1]
            out = ((img - lo) / torch.clamp(hi - lo, min=1e-8)).clamp(0.0, 1.0)
        else:
            out = (img - values.mean()) / torch.clamp(values.std(), min=1e-8)
        return out * fg


class RobustNormalizeIntensityd(MapTransform):
    """Dictionary version of ``RobustNormalizeIntensity``; ``mask_key`` names an optional brain mask."""

    backend = RobustNormalizeIntensity.backend

    def __init__(
        self,
        keys: KeysCollection,
        mode: str = "percentile",
        lower: float = 0.5,
        upper: float = 99.5,
        threshold: float = 0.0,
        mask_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = RobustNormalizeIntensity(mode=mode, lower=lower, upper=upper, threshold=threshold)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        mask = d[self.mask_key] if self.mask_key else None
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key], mask=mask)
        return d
