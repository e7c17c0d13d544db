"""TriPlanarAxialNet: one shared backbone over the sagittal, coronal and axial slices of a volume."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import SettingsError
from .axialnet import AttentionPool
from .backbones import build_backbone
from .base import SliceNet
from .slicing import SliceStack

__all__ = ["TriPlanarAxialNet"]


class TriPlanarAxialNet(SliceNet):
    """AXIAL over the three planes with a single shared 2D backbone.

    Slices of all planes go through the backbone in one batch (so GradCAM hooks fire once), each plane has
    its own slice attention, and the three attention-pooled plane embeddings are concatenated before the head.
    Concatenation keeps which plane contributed what, costs only ``3 d`` head weights, and lets one model
    give a per-subject 3D attention map (product of the three plane profiles).

    Args:
        num_classes: number of output classes.
        backbone: torchvision backbone name (see ``BACKBONES``).
        num_slices: central slices per plane: one int or (sagittal, coronal, axial).
        image_size: side of the square backbone input, in pixels.
        pretrained: "none", "imagenet" or a path to a local state dict.
        freeze: fraction of backbone layers frozen.
        dropout: dropout probability before the head.
        normalize: "imagenet" (volume intensities in [0, 1]) or "none".
        spatial_shape: the only volume shape ``(X, Y, Z)`` accepted (see ``AxialNet``); None accepts any.

    ``forward`` maps ``(B, 1, X, Y, Z)`` to logits ``(B, num_classes)``; ``plane_attention`` also returns
    ``{plane: attention (B, N_plane)}``.
    """

    def __init__(
        self,
        num_classes: int = 2,
        backbone: str = "resnet18",
        num_slices: int | Sequence[int] = 80,
        image_size: int = 224,
        pretrained: str = "none",
        freeze: float = 0.5,
        dropout: float = 0.3,
        normalize: str = "imagenet",
        spatial_shape: Sequence[int] | None = None,
    ) -> None:
        n = [int(num_slices)] * 3 if isinstance(num_slices, int) else [int(v) for v in num_slices]
        if len(n) != 3:
            raise SettingsError(f"num_slices must be an int or 3 ints (sagittal, coronal, axial), not {num_slices}.")
        features = build_backbone(name=backbone, pretrained=pretrained, freeze=freeze)
        d = features.out_features
        super().__init__(num_classes=num_classes, in_features=3 * d, dropout=dropout)
        self.slicers = nn.ModuleList(
            SliceStack(
                plane=p, num_slices=n[p], image_size=image_size, normalize=normalize, spatial_shape=spatial_shape
            )
            for p in range(3)
        )
        self.backbone = features
        self.attention = nn.ModuleList(AttentionPool(d) for _ in range(3))

    __jit_unused_properties__ = [*SliceNet.__jit_unused_properties__, "num_slices"]

    @property
    def num_slices(self) -> tuple[int, int, int]:
        return tuple(s.num_slices for s in self.slicers)

    def slice_indices(self, spatial_shape: tuple[int, int, int]) -> dict[int, range]:
        """Slice positions ``{plane: range}`` used for a volume of spatial shape ``(X, Y, Z)``."""
        return {p: s.indices(spatial_shape) for p, s in enumerate(self.slicers)}

    def plane_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Logits ``(B, num_classes)`` and ``{plane: attention (B, N_plane)}`` for volumes ``(B, 1, X, Y, Z)``."""
        logits, alphas = self._attend(x)
        return logits, dict(enumerate(alphas))

    def _attend(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # loops over the ModuleLists, as TorchScript compiles them
        stacks: list[torch.Tensor] = []
        sizes: list[int] = []
        for slicer in self.slicers:
            stacks.append(slicer(x))
            sizes.append(slicer.num_slices)
        per_plane = self.backbone.pooled(torch.cat(stacks, dim=1)).split(sizes, dim=1)  # (B, N_p, d) each
        pooled: list[torch.Tensor] = []
        alphas: list[torch.Tensor] = []
        for p, attention in enumerate(self.attention):
            z, alpha = attention(per_plane[p])
            pooled.append(z)
            alphas.append(alpha)
        return self.classify(torch.cat(pooled, dim=1)), alphas

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._attend(x)[0]
