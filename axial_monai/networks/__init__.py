from .axialnet import AttentionPool, AxialNet
from .backbones import BACKBONES, Backbone, build_backbone, configure_backbones, freeze_layers, layers
from .base import ExplainableNetwork, SliceNet
from .baselines import MeanPoolNet, SliceClassifier2D, SliceTransformerNet, sinusoidal_positions
from .encoder import SliceEncoder
from .slicing import SliceStack
from .transfer import init_from_checkpoint
from .triplanar import TriPlanarAxialNet

__all__ = [
    "AttentionPool",
    "AxialNet",
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
