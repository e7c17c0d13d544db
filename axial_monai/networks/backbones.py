"""Factory for torchvision 2D backbones used as per-slice feature extractors."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import torch
import torchvision
from torch import nn

from axial_monai.errors import InputError, SettingsError

__all__ = ["BACKBONES", "Backbone", "build_backbone", "freeze_layers", "layers"]


def _head_in(m: nn.Module) -> int:
    """Input width of the last ``nn.Linear`` of a torchvision classifier head."""
    return [x for x in m.modules() if isinstance(x, nn.Linear)][-1].in_features


# name -> function(model) returning the ordered feature modules; the feature dim is read from the model's head.
_FEATURES = {
    "vgg": lambda m: [m.features],
    "resnet": lambda m: [m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4],
    "densenet": lambda m: [m.features, nn.ReLU()],  # torchvision applies relu after `features` in forward()
    "efficientnet": lambda m: [m.features],
    "convnext": lambda m: [m.features],
    "swin": lambda m: [m.features, m.norm, m.permute],  # NHWC -> NCHW
}
_HEADS = {
    "vgg": lambda m: m.features[-4].out_channels,  # last conv before BN/ReLU/MaxPool
    "resnet": lambda m: m.fc.in_features,
    "densenet": lambda m: m.classifier.in_features,
    "efficientnet": lambda m: _head_in(m.classifier),
    "convnext": lambda m: _head_in(m.classifier),
    "swin": lambda m: m.head.in_features,
}
BACKBONES = (
    [f"vgg{d}_bn" for d in (11, 13, 16, 19)]
    + [f"resnet{d}" for d in (18, 34, 50, 101)]
    + ["densenet121", "densenet161"]
    + [f"efficientnet_b{i}" for i in range(8)]
    + ["efficientnet_v2_s", "efficientnet_v2_m", "convnext_tiny", "convnext_small", "convnext_base", "swin_v2_t"]
)


def _family(name: str) -> str:
    return next(f for f in _FEATURES if name.startswith(f))


class Backbone(nn.Sequential):
    """A 2D feature extractor ``(M, 3, H, W) -> (M, out_features, h, w)``.

    It behaves like ``nn.Sequential``; on ``train()`` any BatchNorm layer whose parameters are all frozen
    is put back in eval mode, so frozen layers keep their running statistics.

    Attributes:
        out_features: number of output channels ``d``.
        name: torchvision model name.
    """

    def __init__(self, modules: list[nn.Module], out_features: int, name: str) -> None:
        super().__init__(*modules)
        self.out_features = out_features
        self.name = name

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self


def layers(module: nn.Module) -> Iterator[nn.Module]:
    """The backbone's *layers*: modules that own parameters directly (conv, norm, linear, ...), in order."""
    for m in module.modules():
        if any(True for _ in m.parameters(recurse=False)):
            yield m


def freeze_layers(module: nn.Module, fraction: float) -> int:
    """Freeze the first ``fraction`` of ``layers(module)``; returns how many layers were frozen.

    ``floor(fraction * L)`` layers are frozen, ``L`` being the number of layers.
    """
    if not 0.0 <= fraction <= 1.0:
        raise SettingsError(f"freeze must be a fraction in [0, 1], not {fraction}.")
    all_layers = list(layers(module))
    n = math.floor(fraction * len(all_layers))
    for m in all_layers[:n]:
        for p in m.parameters(recurse=False):
            p.requires_grad_(False)
    return n


def _disable_inplace(module: nn.Module) -> None:
    # in-place activations break the backward hooks GradCAM registers on feature layers
    for m in module.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False


def _imagenet_model(name: str) -> nn.Module:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return torchvision.models.get_model(name, weights=weights)
    except Exception as err:  # URLError, OSError, hash errors ... all mean "weights not available here"
        cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
        raise RuntimeError(
            f"Cannot load ImageNet weights for backbone '{name}': they are not in the torchvision cache "
            f"({cache}) and could not be downloaded ({type(err).__name__}). Run once with network access, "
            f"copy the file to that path (or set TORCH_HOME), or pass pretrained=<path to a state dict>."
        ) from None


def _load_local(model: nn.Module, backbone: Backbone, path: str) -> None:
    if not os.path.isfile(path):
        raise SettingsError(f"pretrained must be 'none', 'imagenet' or an existing file path, not {path!r}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(f"Cannot read pretrained weights from {path}: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{path} does not hold a state dict (found {type(state).__name__}).")
    # accept the backbone's own state dict, or the whole torchvision model's (its classifier keys are ignored)
    own = bool(set(state) & set(backbone.state_dict()))
    try:
        missing, unexpected = (backbone if own else model).load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch
        raise InputError(f"{path} does not match backbone '{backbone.name}': {err}") from None
    if not own:
        missing = [k for k in missing if k in _backbone_keys(model, backbone)]
    if missing or unexpected:
        raise InputError(
            f"{path} does not match backbone '{backbone.name}': missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]}."
        )


def _backbone_keys(model: nn.Module, backbone: Backbone) -> set[str]:
    ids = {id(t) for t in backbone.state_dict(keep_vars=True).values()}
    return {k for k, t in model.state_dict(keep_vars=True).items() if id(t) in ids}


def build_backbone(name: str = "resnet18", pretrained: str = "none", freeze: float = 0.0) -> Backbone:
    """Build a torchvision 2D backbone as a feature extractor.

    Args:
        name: a torchvision model name from ``BACKBONES`` (e.g. "vgg16_bn", "resnet50", "swin_v2_t").
        pretrained: "none" (random init, no network access), "imagenet" (torchvision weights API: the
            torchvision/TORCH_HOME cache, or a download when online) or a path to a local state dict, either of
            the whole torchvision model or of the returned backbone.
        freeze: fraction of the backbone's layers (modules with own parameters, in order) to freeze.

    Returns:
        ``Backbone`` mapping ``(M, 3, H, W)`` to ``(M, d, h, w)``; ``d`` is ``backbone.out_features``.
    """
    if name not in BACKBONES:
        raise SettingsError(f"Unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}.")
    family = _family(name)
    model = _imagenet_model(name) if pretrained == "imagenet" else torchvision.models.get_model(name, weights=None)
    backbone = Backbone(_FEATURES[family](model), _HEADS[family](model), name)
    if pretrained not in ("none", "imagenet", None, ""):
        _load_local(model, backbone, str(pretrained))
    _disable_inplace(backbone)
    freeze_layers(backbone, freeze)
    return backbone
