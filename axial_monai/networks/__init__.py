"""The networks: a 2D backbone over a volume's slices, pooled over the slices, and a head.

* :mod:`.backbones`: torchvision backbones (``build_backbone``, layer freezing, offline weights);
* :mod:`.slicing`: ``SliceStack``, the central slices of a plane resized for the backbone, locked to a grid;
* :mod:`.base`: ``SliceNet`` (head, dropout, CAM layer) and the ``ExplainableNetwork`` protocol;
* :mod:`.encoder`: ``SliceEncoder`` and ``EncodedSliceNet``, the one-plane networks built on it;
* :mod:`.axialnet`: ``AxialNet``, the AXIAL slice attention; :mod:`.triplanar`: ``TriPlanarAxialNet``;
* :mod:`.baselines`: the paper's baselines (2D majority vote, mean pooling, slice transformer);
* :mod:`.transfer`: ``init_from_checkpoint`` (double transfer learning).
"""

from .axialnet import AttentionPool, AxialNet
from .backbones import BACKBONES, Backbone, build_backbone, configure_backbones, freeze_layers, layers
from .base import ExplainableNetwork, SliceNet
from .baselines import MeanPoolNet, SliceClassifier2D, SliceTransformerNet, sinusoidal_positions
from .encoder import EncodedSliceNet, SliceEncoder
from .slicing import SliceStack
from .transfer import init_from_checkpoint
from .triplanar import TriPlanarAxialNet

__all__ = [
    "AttentionPool",
    "AxialNet",
    "EncodedSliceNet",
    "ExplainableNetwork",
    "SliceNet",
    "BACKBONES",
    "Backbone",
    "build_backbone",
    "configure_backbones",
    "freeze_layers",
    "layers",
    "MeanPoolNet",
    "SliceClassifier2D",
    "SliceTransformerNet",
    "sinusoidal_positions",
    "SliceEncoder",
    "SliceStack",
    "TriPlanarAxialNet",
    "init_from_checkpoint",
]
