"""Factory for torchvision 2D backbones used as per-slice feature extractors."""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterator

import torch
import torch.utils.checkpoint
import torchvision
from torch import nn

from ..errors import InputError, SettingsError
from .checkpoints import load_checkpoint

__all__ = ["BACKBONES", "Backbone", "build_backbone", "configure_backbones", "freeze_layers", "layers"]


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

    Execution options (set them with :func:`configure_backbones`; all off by default). Both memory options give
    the same outputs, gradients and BatchNorm statistics as the plain forward pass:

    * ``slice_chunk`` (int, 0 = off): run the M slices through the backbone ``slice_chunk`` at a time, wherever
      that does not change the result: every layer in eval mode, and in training mode the layers before the first
      BatchNorm that computes batch statistics (or dropout): a frozen prefix, e.g. the first half of VGG16-bn in
      the paper's setting, which holds most of its activations at 224 x 224. Later layers see the whole batch.
    * ``checkpoint`` (bool): activation checkpointing while gradients are needed: each chunk of the chunked part
      and ``ceil(sqrt(L))`` segments of the rest store only their inputs and are recomputed in the backward pass;
      BatchNorm running statistics are not updated a second time by the recomputation.
    * ``channels_last`` (bool): feed the convolutions NHWC tensors (faster tensor-core convolutions on GPUs).

    With forward or backward hooks on any of its modules (GradCAM), the backbone runs plainly, so hooks see
    every layer once with the whole batch.

    Attributes:
        out_features: number of output channels ``d``.
        name: torchvision model name.
    """

    def __init__(self, modules: list[nn.Module], out_features: int, name: str) -> None:
        super().__init__(*modules)
        self.out_features = out_features
        self.name = name
        self.slice_chunk = 0
        self.checkpoint = False
        self.channels_last = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if torch.jit.is_scripting() or not (self.slice_chunk > 0 or self.checkpoint):
            # a compiled backbone runs plainly: the memory options are for training, and are exact anyway
            for module in self:
                x = module(x)
            return x
        return self._forward_with_memory_options(x)

    def pooled(self, slices: torch.Tensor) -> torch.Tensor:
        """Features of prepared slices ``(B, N, 3, S, S)``, globally average-pooled: ``(B, N, out_features)``."""
        b, n = slices.shape[0], slices.shape[1]
        return self(slices.flatten(0, 1)).mean(dim=(2, 3)).view(b, n, -1)

    @torch.jit.unused
    def _forward_with_memory_options(self, x: torch.Tensor) -> torch.Tensor:
        if _has_hooks(self):
            return _sequential(list(self))(x)
        leaves = list(_execution_order(self))
        split = next((i for i, m in enumerate(leaves) if _batch_dependent(m)), len(leaves))
        x = self._run_chunked(leaves[:split], x)
        return self._run_segments(leaves[split:], x)

    def _run_chunked(self, modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
        # no module here mixes slices, so any split of the batch gives the same result
        if not modules:
            return x
        chunk = self.slice_chunk if 0 < self.slice_chunk < x.shape[0] else x.shape[0]
        outs = [self._run(modules, part) for part in x.split(chunk)]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _run_segments(self, modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
        if not modules or not (self.checkpoint and _needs_grad(modules, x)):
            return _sequential(modules)(x)
        size = math.ceil(len(modules) / math.ceil(math.sqrt(len(modules))))
        for i in range(0, len(modules), size):
            x = self._run(modules[i : i + size], x)
        return x

    def _run(self, modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and _needs_grad(modules, x):
            guard = functools.partial(_recompute_context, modules)
            return torch.utils.checkpoint.checkpoint(_sequential(modules), x, use_reentrant=False, context_fn=guard)
        return _sequential(modules)(x)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self


def _sequential(modules: list[nn.Module]):
    def run(x: torch.Tensor) -> torch.Tensor:
        for m in modules:
            x = m(x)
        return x

    return run


def _execution_order(module: nn.Module) -> Iterator[nn.Module]:
    """The modules an ``nn.Sequential`` runs, with nested ``nn.Sequential`` containers expanded, in order."""
    for child in module.children():
        if type(child) in (nn.Sequential, Backbone):
            yield from _execution_order(child)
        else:
            yield child


def _batch_dependent(module: nn.Module) -> bool:
    """Whether splitting the batch would change a module's result: BatchNorm using batch statistics, or random
    layers (dropout, stochastic depth) in training, whose draws depend on how the batch is split."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats):
            return True
        if m.training and isinstance(m, (nn.modules.dropout._DropoutNd, torchvision.ops.StochasticDepth)):
            return True
    return False


def _needs_grad(modules: list[nn.Module], x: torch.Tensor) -> bool:
    if not torch.is_grad_enabled():
        return False
    return x.requires_grad or any(p.requires_grad for m in modules for p in m.parameters())


def _has_hooks(module: nn.Module) -> bool:
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return any(getattr(m, n, None) for m in module.modules() for n in names)


@contextlib.contextmanager
def _keep_running_stats(modules: list[nn.Module]) -> Iterator[None]:
    # a recomputed forward pass would update BatchNorm running statistics a second time: restore them after it
    norms = [m for mod in modules for m in mod.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: b.clone() for k, b in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved):
                for k, b in m.named_buffers(recurse=False):
                    b.copy_(buffers[k])


def _recompute_context(modules: list[nn.Module]):
    return contextlib.nullcontext(), _keep_running_stats(modules)


def configure_backbones(
    network: nn.Module,
    slice_chunk: int = 0,
    checkpoint: bool = False,
    channels_last: bool = False,
    device: torch.device | str | None = None,
) -> nn.Module:
    """Set the execution options of every ``Backbone`` in ``network`` (see :class:`Backbone`) and move it to
    ``device``; returns ``network``.

    Args:
        network: any module holding one or more ``Backbone`` (``AxialNet``, ``TriPlanarAxialNet``, baselines).
        slice_chunk: slices per backbone call where that is exact (0: all at once).
        checkpoint: activation checkpointing in training.
        channels_last: NHWC memory format for the backbone's weights and inputs.
        device: where the network goes (None: where it is).

    Raises:
        ValueError: for a negative ``slice_chunk``, or options set on a network without a ``Backbone``.
    """
    if int(slice_chunk) < 0:
        raise ValueError(f"slice_chunk must be 0 (off) or a positive number of slices, not {slice_chunk}.")
    backbones = [m for m in network.modules() if isinstance(m, Backbone)]
    if not backbones and (slice_chunk or checkpoint or channels_last):
        raise ValueError(
            f"slice_chunk/checkpoint/channels_last apply to axial_monai backbones, and {type(network).__name__} "
            "has none; set them to 0/false."
        )
    for backbone in backbones:
        backbone.slice_chunk, backbone.checkpoint = int(slice_chunk), bool(checkpoint)
        backbone.channels_last = bool(channels_last)
        if channels_last:
            backbone.to(memory_format=torch.channels_last)
    return network if device is None else network.to(device)


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
    state = load_checkpoint(path, what="pretrained weights")
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
