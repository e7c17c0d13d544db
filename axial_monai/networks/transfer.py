"""Transfer learning: start a network from another run's checkpoint, with some modules re-initialised.

AXIAL's *double transfer learning* for sMCI vs pMCI starts from a trained AD-vs-CN model (backbone + slice
attention), re-initialises the classification head and freezes the first half of the backbone before
fine-tuning. :func:`init_from_checkpoint` does that for any network of this package; the bundle calls it on
``network_def`` with its ``init_ckpt`` setting (``null``: the network is returned unchanged).

Example:
    >>> net = AxialNet(backbone="resnet18", freeze=0.5)
    >>> net = init_from_checkpoint(net, "runs/adcn/fold-0/models/model.pt", reset=("head",), freeze=0.5)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import InputError, SettingsError
from .backbones import Backbone, freeze_layers
from .checkpoints import load_checkpoint

__all__ = ["init_from_checkpoint"]


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _read_state(path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The checkpoint {path} to initialise the network from does not exist.")
    state = load_checkpoint(path, what="checkpoint to initialise the network from")
    # a plain state dict (the bundle's CheckpointSaver with one object) or {"model": ...} / {"state_dict": ...}
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"The checkpoint {path} does not hold a state dict of tensors (found {type(state).__name__}).")
    # a DistributedDataParallel-wrapped network saves its keys under "module."
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def init_from_checkpoint(
    network: nn.Module,
    ckpt_path: str | os.PathLike | None,
    reset: Sequence[str] = ("head",),
    freeze: float | None = None,
) -> nn.Module:
    """Copy a checkpoint's weights into ``network``, except the modules under ``reset``, which are re-initialised.

    Args:
        network: the freshly built network (e.g. the bundle's ``network_def``); changed in place.
        ckpt_path: a state dict saved by the bundle (``models/model.pt``); ``None`` or ``""``: return ``network``
            unchanged (no loading, no reset, no freezing).
        reset: module names (``state_dict`` prefixes such as ``"head"`` or ``"attention"``) that are not copied but
            re-initialised with their own ``reset_parameters()``.
        freeze: if given, the fraction of every backbone's layers to freeze
            (:func:`~axial_monai.networks.freeze_layers`: the first ``floor(freeze * L)`` layers; frozen BatchNorm
            stays in eval mode). It is the same rule the network's own ``freeze`` argument applies at
            construction, so passing the same value is idempotent; layers frozen there stay frozen.

    Returns:
        ``network`` (the same object).

    Raises:
        FileNotFoundError: if ``ckpt_path`` does not exist.
        InputError: if the checkpoint cannot be read, or its keys or tensor shapes do not match the network
            (outside ``reset``).
        SettingsError: if a ``reset`` name is not a module of the network or has nothing to re-initialise, or
            ``freeze`` is set but the network has no backbone.
    """
    if ckpt_path is None or str(ckpt_path) == "":
        return network
    path = str(ckpt_path)
    reset = (reset,) if isinstance(reset, str) else tuple(reset)
    modules = []
    for name in reset:
        try:
            module = network.get_submodule(name)
        except AttributeError:
            raise SettingsError(f"reset names {name!r}, which is not a module of {type(network).__name__}.") from None
        resettable = [m for m in module.modules() if callable(getattr(m, "reset_parameters", None))]
        if not resettable:
            raise SettingsError(
                f"reset names {name!r}, but that module has nothing to re-initialise (no reset_parameters)."
            )
        modules.append(resettable)
    state = _read_state(path)
    own = network.state_dict()
    missing = [k for k in own if not _under(k, reset) and k not in state]
    unexpected = [k for k in state if not _under(k, reset) and k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}"
        for k in own
        if k in state and not _under(k, reset) and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise InputError(
            f"The checkpoint {path} does not match {type(network).__name__} (outside reset={list(reset)}): "
            f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}, "
            f"shape mismatches {shapes[:5]}{' ...' if len(shapes) > 5 else ''}. "
            "Were both runs made with the same backbone, num_slices and network?"
        )
    merged = {k: (v if _under(k, reset) else state[k].to(dtype=v.dtype)) for k, v in own.items()}
    network.load_state_dict(merged)
    with torch.no_grad():
        for resettable in modules:
            for m in resettable:
                m.reset_parameters()
    if freeze is not None:
        backbones = [m for m in network.modules() if isinstance(m, Backbone)]
        if not backbones and freeze > 0:
            raise SettingsError(f"freeze={freeze} was given, but {type(network).__name__} has no backbone to freeze.")
        for backbone in backbones:
            freeze_layers(backbone, float(freeze))
    return network
