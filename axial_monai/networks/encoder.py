"""Shared slice encoder: central slices -> 2D backbone -> global average pooling."""

from __future__ import annotations

import torch
from torch import nn

from .backbones import build_backbone
from .slicing import SliceStack

__all__ = ["SliceEncoder", "slice_features"]


def slice_features(backbone: nn.Module, slices: torch.Tensor) -> torch.Tensor:
    """Backbone + global average pooling of prepared slices ``(B, N, 3, S, S)`` -> ``(B, N, d)``."""
    b, n = slices.shape[:2]
    return backbone(slices.flatten(0, 1)).mean(dim=(2, 3)).view(b, n, -1)


class SliceEncoder(nn.Module):
    """Encode the N central slices of one plane of a volume into one feature vector per slice.

    Args:
        backbone: torchvision model name (see ``BACKBONES``).
        plane: 0/"sagittal", 1/"coronal", 2/"axial".
        num_slices: number of central slices N.
        image_size: side of the square backbone input, in pixels.
        pretrained: "none", "imagenet" or a path to a local state dict.
        freeze: fraction of backbone layers frozen.
        normalize: "imagenet" (input intensities in [0, 1]) or "none".

    Input ``(B, 1, X, Y, Z)``; output ``(B, N, d)``.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        plane: int | str = 1,
        num_slices: int = 80,
        image_size: int = 224,
        pretrained: str = "none",
        freeze: float = 0.5,
        normalize: str = "imagenet",
    ) -> None:
        super().__init__()
        self.slicer = SliceStack(plane=plane, num_slices=num_slices, image_size=image_size, normalize=normalize)
        self.backbone = build_backbone(name=backbone, pretrained=pretrained, freeze=freeze)

    @property
    def out_features(self) -> int:
        return self.backbone.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return slice_features(self.backbone, self.slicer(x))
