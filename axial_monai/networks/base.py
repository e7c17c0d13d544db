"""What the slice networks share: a base class, and the interface that the explanation code relies on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from .backbones import Backbone

__all__ = ["SliceNet", "ExplainableNetwork"]


@runtime_checkable
class ExplainableNetwork(Protocol):
    """A network that :class:`~axial_monai.handlers.InterpretabilityHandler` can explain.

    ``AxialNet`` and ``TriPlanarAxialNet`` are; ``MeanPoolNet``, ``SliceTransformerNet`` and ``SliceClassifier2D``
    have no per-plane slice attention, so they are not.
    """

    @property
    def cam_layer(self) -> str:
        """Name of the module whose activations GradCAM uses (``named_modules`` notation)."""
        ...

    def plane_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Logits ``(B, num_classes)`` and ``{plane: attention (B, N_plane)}`` of volumes ``(B, 1, X, Y, Z)``."""
        ...

    def slice_indices(self, spatial_shape: Sequence[int]) -> dict[int, range]:
        """``{plane: slice positions}`` the attention refers to, for a volume of spatial shape ``(X, Y, Z)``."""
        ...


class SliceNet(nn.Module):
    """Base class of the networks that classify a volume from its 2D slices with one 2D backbone.

    It owns the classification head (dropout, then a linear layer) and finds the backbone for GradCAM. A subclass
    builds its slicing and its :class:`~axial_monai.networks.Backbone` (directly or inside a ``SliceEncoder``),
    then calls ``super().__init__`` with the width of what it feeds to the head, and assigns its modules.

    Every slice network takes ``spatial_shape`` (passed to its :class:`~axial_monai.networks.SliceStack`): a trained
    network built with its input grid refuses volumes of any other shape, and so does its TorchScript compilation
    (``torch.jit.script``: the networks of this package script).

    Args:
        num_classes: number of output classes.
        in_features: width of the features given to :meth:`classify`.
        dropout: dropout probability before the linear head.
    """

    #: eager-only helpers that TorchScript must not compile
    __jit_unused_properties__ = ["backbone_module", "cam_layer"]

    def __init__(self, *, num_classes: int, in_features: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(in_features, num_classes)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(..., num_classes)`` of features ``(..., in_features)``: dropout, then the linear head."""
        return self.head(self.dropout(features))

    @property
    def backbone_module(self) -> Backbone:
        """The network's 2D backbone."""
        return self.get_submodule(self._backbone_name())

    @property
    def cam_layer(self) -> str:
        """Name of the backbone's last feature layer, the GradCAM target."""
        name = self._backbone_name()
        return f"{name}.{len(self.get_submodule(name)) - 1}"

    def _backbone_name(self) -> str:
        names = [name for name, module in self.named_modules() if isinstance(module, Backbone)]
        if len(names) != 1:
            raise RuntimeError(f"{type(self).__name__} must hold exactly one Backbone, found {names}.")
        return names[0]
