"""Central-slice extraction: the step that turns a 3D volume into a stack of 2D backbone inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from axial_monai.errors import InputError, SettingsError
from axial_monai.geometry import IMAGENET_MEAN, IMAGENET_STD, central_slice_indices, plane_index

__all__ = ["SliceStack"]


class SliceStack(nn.Module):
    """Cut the central slices of a volume along one plane and prepare them for a 2D backbone.

    Each slice is resized to ``image_size`` x ``image_size`` (aspect ratio not kept, as in AXIAL), repeated to
    3 channels and, with ``normalize="imagenet"``, standardised with the ImageNet mean and std (input
    intensities are then expected in [0, 1]). The module has no parameters.

    Args:
        plane: 0/"sagittal", 1/"coronal" or 2/"axial" (array axis of the RAS volume).
        num_slices: number of central slices N.
        image_size: side of the square 2D backbone input, in pixels.
        normalize: "imagenet" or "none".

    Input ``(B, 1, X, Y, Z)``; output ``(B, N, 3, image_size, image_size)``.
    """

    def __init__(
        self, plane: int | str = 1, num_slices: int = 80, image_size: int = 224, normalize: str = "imagenet"
    ) -> None:
        super().__init__()
        if normalize not in ("imagenet", "none"):
            raise SettingsError(f"normalize must be 'imagenet' or 'none', not {normalize!r}.")
        if image_size < 8:
            raise SettingsError(f"image_size must be at least 8 pixels, not {image_size}.")
        self.plane = plane_index(plane)
        self.num_slices = int(num_slices)
        self.image_size = int(image_size)
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def indices(self, spatial_shape: Sequence[int]) -> range:
        """Slice indices used for a volume of spatial shape ``(X, Y, Z)``."""
        return central_slice_indices(int(spatial_shape[self.plane]), self.num_slices)

    def to_backbone_input(self, slices: torch.Tensor) -> torch.Tensor:
        """Resize, repeat to 3 channels and normalise 2D slices ``(M, 1, h, w)`` -> ``(M, 3, S, S)``."""
        size = (self.image_size, self.image_size)
        if tuple(slices.shape[-2:]) != size:
            slices = F.interpolate(slices, size=size, mode="bilinear", align_corners=False)
        slices = slices.expand(-1, 3, -1, -1)
        if self.normalize == "imagenet":
            slices = (slices - self.mean) / self.std
        return slices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 1:
            raise InputError(f"Expected a volume batch of shape (B, 1, X, Y, Z), got {tuple(x.shape)}.")
        idx = self.indices(x.shape[2:])
        # (B, 1, X, Y, Z) -> (B, N, h, w) with the sliced axis first
        vol = x[:, 0].movedim(self.plane + 1, 1)[:, idx.start : idx.stop]
        b, n, h, w = vol.shape
        out = self.to_backbone_input(vol.reshape(b * n, 1, h, w))
        return out.reshape(b, n, 3, self.image_size, self.image_size)
