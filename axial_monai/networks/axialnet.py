"""AxialNet: the AXIAL model (2D backbone per slice + learned slice attention) for one plane."""

from __future__ import annotations

import torch
from torch import nn

from .encoder import EncodedSliceNet

__all__ = ["AxialNet", "AttentionPool"]


class AttentionPool(nn.Module):
    """AXIAL slice attention: ``s_i = w^T f_i + b``, ``alpha = softmax_i(s)``, ``z = sum_i alpha_i f_i``.

    Input ``(B, N, d)``; returns ``z`` ``(B, d)`` and ``alpha`` ``(B, N)`` (sums to 1 over slices).
    """

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.score = nn.Linear(in_features, 1)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = torch.softmax(self.score(feats).squeeze(-1), dim=1)
        return torch.bmm(alpha.unsqueeze(1), feats).squeeze(1), alpha


class AxialNet(EncodedSliceNet):
    """AXIAL classifier of a 3D volume from its N central slices along one plane.

    The network slices the volume itself, so the bundle input stays a plain volume and slicing and resizing
    run on the same device as the backbone.

    Args:
        num_classes: number of output classes.
        backbone: torchvision backbone name ("vgg16_bn" in the paper; see ``BACKBONES``).
        plane: 0/"sagittal", 1/"coronal", 2/"axial" (array axis of the RAS volume).
        num_slices: number of central slices N (80 in the paper).
        image_size: side of the square backbone input in pixels (224 in the paper).
        pretrained: "none", "imagenet" or a path to a local state dict.
        freeze: fraction of backbone layers frozen (0.5 in the paper).
        dropout: dropout probability before the head (0.3 in the paper).
        normalize: "imagenet" (volume intensities in [0, 1]) or "none".
        spatial_shape: the only volume shape ``(X, Y, Z)`` accepted (the input grid of a trained network); None
            accepts any. Not a training setting: the run settings add it when they build a trained network.

    ``forward`` maps ``(B, 1, X, Y, Z)`` to logits ``(B, num_classes)``. ``forward_attention`` also returns
    the slice attention ``(B, N)``; ``slice_indices`` gives the slice positions it refers to.
    """

    def build_pooling(self, in_features: int) -> None:
        self.attention = AttentionPool(in_features)

    def slice_indices(self, spatial_shape: tuple[int, int, int]) -> dict[int, range]:
        """Slice positions ``{plane: range}`` used for a volume of spatial shape ``(X, Y, Z)``."""
        return {self.encoder.slicer.plane: self.encoder.slicer.indices(spatial_shape)}

    def forward_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, num_classes)`` and slice attention ``(B, N)`` for volumes ``(B, 1, X, Y, Z)``."""
        z, alpha = self.attention(self.encoder(x))
        return self.classify(z), alpha

    def plane_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Logits and ``{plane: attention (B, N)}``, the interface shared with ``TriPlanarAxialNet``."""
        logits, alpha = self.forward_attention(x)
        return logits, {self.encoder.slicer.plane: alpha}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_attention(x)[0]
