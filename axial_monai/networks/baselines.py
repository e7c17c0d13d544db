"""Baselines from the AXIAL paper: 2D majority voting, mean pooling of slice logits, slice transformer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import SettingsError
from .encoder import EncodedSliceNet, SliceEncoder

__all__ = ["SliceClassifier2D", "MeanPoolNet", "SliceTransformerNet", "sinusoidal_positions"]


class SliceClassifier2D(EncodedSliceNet):
    """2D majority-voting baseline: a slice classifier, and a volume label by majority vote of its slices.

    * input ``(B, 1, H, W)`` (single slices, e.g. from ``RandSliceSampled``): logits ``(B, num_classes)``;
    * input ``(B, 1, X, Y, Z)`` (volumes): the N central slices of ``plane`` are classified and the output
      ``(B, num_classes)`` is the share of slice votes per class. Ties go to the tied class with the highest
      mean slice probability (then the lowest class index), so ``argmax`` of the output is the volume label.

    Args: as ``AxialNet`` (``spatial_shape`` applies to volume inputs).
    """

    def attach_encoder(self, encoder: SliceEncoder) -> None:
        # the slicer and the backbone sit at the top, as this network has always saved them (``backbone.*``)
        self.slicer, self.backbone = encoder.slicer, encoder.backbone

    def classify_slices(self, slices: torch.Tensor) -> torch.Tensor:
        """Logits ``(M, num_classes)`` of prepared slices ``(M, 3, S, S)``."""
        return self.classify(self.backbone(slices).mean(dim=(2, 3)))

    def vote(self, slice_logits: torch.Tensor) -> torch.Tensor:
        """Vote shares ``(B, C)`` from slice logits ``(B, N, C)``, ties broken by mean probability."""
        c = slice_logits.shape[-1]
        shares = nn.functional.one_hot(slice_logits.argmax(-1), c).float().mean(1)
        # mean probability / (N + 1) is below one vote, so it only decides between tied classes
        tie_break = slice_logits.softmax(-1).mean(1) / (slice_logits.shape[1] + 1)
        return shares + tie_break * (shares == shares.max(-1, keepdim=True)[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return self.classify_slices(self.slicer.to_backbone_input(x))
        slices = self.slicer(x)
        b, n = slices.shape[0], slices.shape[1]
        return self.vote(self.classify_slices(slices.flatten(0, 1)).view(b, n, -1))


class MeanPoolNet(EncodedSliceNet):
    """ "MajorityVoting3D": a linear head per slice, volume logits = mean of the slice logits; trained on volumes.

    Args: as ``AxialNet``. Input ``(B, 1, X, Y, Z)``, output logits ``(B, num_classes)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.encoder(x)).mean(1)


def sinusoidal_positions(num: int, dim: int) -> torch.Tensor:
    """Sinusoidal position encodings ``(num, dim)`` (sin on even, cos on odd features)."""
    pos = torch.arange(num, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    enc = torch.zeros(num, dim)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return enc


class SliceTransformerNet(EncodedSliceNet):
    """TransformerConv3D baseline: the centre slice attends over the other slices.

    Slice features (backbone + GAP) get sinusoidal positions; one multi-head attention takes the centre
    slice as query and the other slices as keys and values; then LayerNorm -> Dropout -> Linear.

    Args: as ``AxialNet``, plus ``num_heads`` (must divide the feature dimension). Input ``(B, 1, X, Y, Z)``,
    output logits ``(B, num_classes)``; ``forward_attention`` also returns the attention ``(B, N - 1)``.
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
        num_heads: int = 8,
        spatial_shape: Sequence[int] | None = None,
    ) -> None:
        if num_slices < 2:
            raise SettingsError(f"SliceTransformerNet needs at least 2 slices, not {num_slices}.")
        super().__init__(
            num_classes, backbone, plane, num_slices, image_size, pretrained, freeze, dropout, normalize, spatial_shape
        )
        d = self.encoder.out_features
        if d % num_heads:
            raise SettingsError(f"num_heads ({num_heads}) must divide the feature dimension of {backbone} ({d}).")
        self.register_buffer("positions", sinusoidal_positions(num_slices, d), persistent=False)
        self.attn = nn.MultiheadAttention(d, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(d)

    def forward_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encoder(x) + self.positions
        c = feats.shape[1] // 2
        others = torch.cat([feats[:, :c], feats[:, c + 1 :]], dim=1)
        out, weights = self.attn(feats[:, c : c + 1], others, others, need_weights=True)
        if weights is None:  # never with need_weights=True; the check narrows the Optional for TorchScript
            raise RuntimeError("MultiheadAttention returned no attention weights.")
        return self.classify(self.norm(out.squeeze(1))), weights.squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_attention(x)[0]
