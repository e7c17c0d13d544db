"""Central-slice extraction: the step that turns a 3D volume into a stack of 2D backbone inputs.

Annotations here are evaluated (no ``from __future__ import annotations``): TorchScript reads the type of
``SliceStack.spatial_shape`` from the class, and cannot read a postponed one.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, SettingsError
from ..geometry import IMAGENET_MEAN, IMAGENET_STD, central_slice_indices, central_slice_start, plane_index

__all__ = ["SliceStack", "check_volume"]


def check_volume(x: torch.Tensor, spatial_shape: list[int]) -> None:
    """Refuse anything but a volume batch ``(B, 1, X, Y, Z)``, and with a non-empty ``spatial_shape`` any other
    ``(X, Y, Z)`` (TorchScript compiles it: a compiled network refuses other grids as the eager one does).

    Raises:
        InputError: naming the expected and the given shape.
    """
    if x.dim() != 5 or x.shape[1] != 1:
        raise InputError("Expected a volume batch of shape (B, 1, X, Y, Z), got " + str(list(x.shape)) + ".")
    if len(spatial_shape) > 0 and list(x.shape[2:]) != spatial_shape:
        raise InputError(
            "This network takes volumes on the grid it was trained on, of spatial shape "
            + str(spatial_shape)
            + ", not "
            + str(list(x.shape[2:]))
            + ": register the scan to the model's template first (axial-monai predict does)."
        )


class SliceStack(nn.Module):
    """Cut the central slices of a volume along one plane and prepare them for a 2D backbone.

    Each slice is resized to ``image_size`` x ``image_size`` (aspect ratio not kept, as in AXIAL), repeated to
    3 channels and, with ``normalize="imagenet"``, standardised with the ImageNet mean and std (input
    intensities are then expected in [0, 1]). The module has no parameters; TorchScript compiles it.

    Args:
        plane: 0/"sagittal", 1/"coronal" or 2/"axial" (array axis of the RAS volume).
        num_slices: number of central slices N.
        image_size: side of the square 2D backbone input, in pixels.
        normalize: "imagenet" or "none".
        spatial_shape: the only ``(X, Y, Z)`` accepted (a trained network's input grid); None accepts any.

    Input ``(B, 1, X, Y, Z)``; output ``(B, N, 3, image_size, image_size)``.
    """

    spatial_shape: list[int]  # TorchScript cannot infer the type of an empty list

    def __init__(
        self,
        plane: int | str = 1,
        num_slices: int = 80,
        image_size: int = 224,
        normalize: str = "imagenet",
        spatial_shape: Sequence[int] | None = None,
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
        self.spatial_shape = [] if spatial_shape is None else [int(s) for s in spatial_shape]
        if spatial_shape is not None:
            if len(self.spatial_shape) != 3:
                raise SettingsError(f"spatial_shape must be (X, Y, Z), not {spatial_shape}.")
            self.indices(self.spatial_shape)  # refuses a grid too thin for num_slices now, not at the first scan
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def indices(self, spatial_shape: Sequence[int]) -> range:
        """Slice indices used for a volume of spatial shape ``(X, Y, Z)``."""
        return central_slice_indices(int(spatial_shape[self.plane]), self.num_slices)

    def to_backbone_input(self, slices: torch.Tensor) -> torch.Tensor:
        """Resize, repeat to 3 channels and normalise 2D slices ``(M, 1, h, w)`` -> ``(M, 3, S, S)``."""
        if slices.shape[-2] != self.image_size or slices.shape[-1] != self.image_size:
            size = [self.image_size, self.image_size]
            slices = F.interpolate(slices, size=size, mode="bilinear", align_corners=False)
        slices = slices.expand(-1, 3, -1, -1)
        if self.normalize == "imagenet":
            slices = (slices - self.mean) / self.std
        return slices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_volume(x, self.spatial_shape)
        start = central_slice_start(x.shape[self.plane + 2], self.num_slices)
        # (B, 1, X, Y, Z) -> (B, N, h, w) with the sliced axis first
        vol = x[:, 0].movedim(self.plane + 1, 1).narrow(1, start, self.num_slices)
        b, n, h, w = vol.shape[0], vol.shape[1], vol.shape[2], vol.shape[3]
        out = self.to_backbone_input(vol.reshape(b * n, 1, h, w))
        return out.reshape(b, n, 3, self.image_size, self.image_size)
