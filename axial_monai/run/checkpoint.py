"""The checkpoint of a run: ``{"model": <state dict>, "run": <run settings>}``, read safely.

Training saves one checkpoint ``models/model.pt`` that holds two entries (MONAI's ``CheckpointSaver`` with
``save_dict={"model": network, "run": run_settings}``, written atomically by ignite's ``DiskSaver``), the model
zoo's ``key_in_ckpt`` convention. Both load with ``torch.load(path, weights_only=True)``
(:func:`axial_monai.networks.checkpoints.load_checkpoint`), so a ``model.pt`` copied on its own still says what it
is and nothing in it runs. A plain state dict (a checkpoint made before the run settings existed) reads as
``{"model": <state dict>}``.

Why the settings are inside the checkpoint rather than in a JSON sidecar: one file cannot lose its half, be paired
with another run's weights, or be overwritten separately; ignite/MONAI checkpoint handlers already save and load
dicts of several entries; and ``weights_only=True`` still applies (no pickled objects). A checkpoint that has no
settings (made before they existed) is refused with what to do (:func:`axial_monai.run.migrate.attach_run_settings`
or retraining).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..layout import RunLayout
from ..networks.checkpoints import load_checkpoint

if TYPE_CHECKING:
    from .settings import RunSettings

__all__ = [
    "MODEL_KEY",
    "RUN_KEY",
    "checkpoint_path",
    "read_checkpoint",
    "load_weights",
    "weights_mismatch",
    "check_weights",
    "pack_mask",
    "unpack_mask",
]

#: checkpoint entries: the network's state dict and the run settings.
MODEL_KEY, RUN_KEY = "model", "run"


def checkpoint_path(ckpt_path: str | os.PathLike) -> Path:
    """The checkpoint file of a run folder (``<run>/models/model.pt``), a bundle folder or a checkpoint path.

    Raises:
        FileNotFoundError: if there is none.
    """
    path = Path(ckpt_path)
    if path.is_dir():
        path = path / RunLayout.MODEL if (path / RunLayout.MODEL).is_file() else path / RunLayout.CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"No checkpoint at {ckpt_path}: give the run folder (the output_dir of training) or its models/model.pt."
        )
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint as saved by training: ``{"model": state dict, "run": settings}`` or a plain state dict
    (returned as ``{"model": state dict}``); read with ``weights_only=True``.

    Raises:
        InputError: if the file carries a pickled object (refused, never run), cannot be read or holds no state
            dict (:func:`axial_monai.networks.checkpoints.load_checkpoint`).
    """
    state = load_checkpoint(path)
    if not isinstance(state, Mapping):
        raise InputError(f"The checkpoint {path} holds a {type(state).__name__}, not a dict of weights.")
    if not isinstance(state.get(MODEL_KEY), Mapping):
        state = {MODEL_KEY: state}
    return dict(state)


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The network weights (state dict) of a checkpoint in either format (see :func:`read_checkpoint`)."""
    return dict(read_checkpoint(checkpoint_path(path))[MODEL_KEY])


def weights_mismatch(network: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[int, str] | None:
    """``(number of differing tensors, first one)`` between a network and a state dict, or ``None`` if they fit."""
    own = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    theirs = {k.removeprefix("module."): tuple(v.shape) for k, v in state.items()}
    differing = [k for k in own if own[k] != theirs.get(k)] + [k for k in theirs if k not in own]
    return (len(differing), differing[0]) if differing else None


def check_weights(settings: RunSettings, state: Mapping[str, torch.Tensor]) -> None:
    """Check that ``state`` fits the network of ``settings``, built on the ``meta`` device (no memory, no time).

    Raises:
        InputError: one line naming the network and its backbone, never a list of state-dict keys.
    """
    with torch.device("meta"):
        network = settings.saved_network()
    mismatch = weights_mismatch(network, state)
    if mismatch is not None:
        kwargs = settings.network_kwargs
        described = ", ".join(f"{k}={kwargs[k]!r}" for k in ("backbone", "num_classes") if k in kwargs)
        raise InputError(
            f"The weights in {settings.source} do not fit the run's network "
            f"{settings.network.rpartition('.')[2]}({described}): {mismatch[0]} tensors differ (first: "
            f"{mismatch[1]}); they were trained with another backbone or network than its settings say."
        )


def pack_mask(mask: np.ndarray) -> torch.Tensor:
    """A boolean mask as the checkpoint stores it: its voxels' bits, packed (uint8, 1-D)."""
    return torch.from_numpy(np.packbits(np.asarray(mask, dtype=bool).ravel()))


def unpack_mask(packed: torch.Tensor, shape: Sequence[int]) -> np.ndarray:
    """The boolean mask of ``shape`` that :func:`pack_mask` packed."""
    count = int(np.prod(shape))
    return np.unpackbits(packed.numpy())[:count].reshape(tuple(shape)).astype(bool)
