"""Shared slice encoder (central slices -> 2D backbone -> global average pooling) and the networks built on it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .backbones import Backbone, build_backbone
from .base import SliceNet
from .slicing import SliceStack

__all__ = ["EncodedSliceNet", "SliceEncoder"]


class SliceEncoder(nn.Module):
    """Encode the N central slices of one plane of a volume into one feature vector per slice.

    Args:
        slicer: cuts and prepares the slices (its ``spatial_shape``, if any, is the only volume shape accepted).
        backbone: the 2D backbone, applied to every slice and pooled over its feature map.

    Input ``(B, 1, X, Y, Z)``; output ``(B, N, d)``.
    """

    def __init__(self, slicer: SliceStack, backbone: Backbone) -> None:
        super().__init__()
        self.slicer = slicer
        self.backbone = backbone

    __jit_unused_properties__ = ["out_features"]

    @property
    def out_features(self) -> int:
        return self.backbone.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.pooled(self.slicer(x))


class EncodedSliceNet(SliceNet):
    """A slice network of one plane: a :class:`SliceEncoder`, whatever a subclass puts between it and the head
    (:meth:`build_pooling`), and the head of :class:`~axial_monai.networks.base.SliceNet`.

    Args: as :class:`~axial_monai.networks.AxialNet` (``backbone``, ``plane``, ``num_slices``, ``image_size``,
    ``pretrained``, ``freeze``, ``normalize``, ``spatial_shape`` go to the encoder; ``num_classes``, ``dropout`` to the
    head).
    """

    def __init__(
        self,
        num_classes: int = 2,
        backbone: str = "vgg16_bn",
        plane: int | str = 1,
        num_slices: int = 80,
        image_size: int = 224,
        pretrained: str = "none",
        freeze: float = 0.5,
        dropout: float = 0.3,
        normalize: str = "imagenet",
        spatial_shape: Sequence[int] | None = None,
    ) -> None:
        encoder = SliceEncoder(
            SliceStack(plane, num_slices, image_size, normalize=normalize, spatial_shape=spatial_shape),
            build_backbone(name=backbone, pretrained=pretrained, freeze=freeze),
        )
        super().__init__(num_classes=num_classes, in_features=encoder.out_features, dropout=dropout)
        self.attach_encoder(encoder)
        self.build_pooling(encoder.out_features)

    def attach_encoder(self, encoder: SliceEncoder) -> None:
        """Keep the encoder as ``self.encoder`` (its weights are ``encoder.backbone.*`` in the state dict)."""
        self.encoder = encoder

    def build_pooling(self, in_features: int) -> None:
        """Add the modules that pool the slice features ``(B, N, in_features)`` (none here)."""
