from .axialnet import AttentionPool, AxialNet
from .backbones import BACKBONES, Backbone, build_backbone, configure_backbones, freeze_layers, layers
from .baselines import MeanPoolNet, SliceClassifier2D, SliceTransformerNet, sinusoidal_positions
from .encoder import SliceEncoder
from .slicing import PLANES, SliceStack, central_slice_indices, plane_index
from .transfer import init_from_checkpoint
from .triplanar import TriPlanarAxialNet

__all__ = [
    "AttentionPool",
    "AxialNet",
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
    "PLANES",
    "SliceStack",
    "central_slice_indices",
    "plane_index",
    "TriPlanarAxialNet",
    "init_from_checkpoint",
]
