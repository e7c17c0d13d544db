"""Resuming a killed training run: its full state saved every epoch, and restored with MONAI's ``CheckpointLoader``.

``train.json`` saves ``{output_dir}/models/training_state.pt`` at the end of every epoch, after validation, early
stopping, the best-model checkpoint and the learning-rate step (an :class:`~axial_monai.handlers.AtomicCheckpointSaver`
attached last to the trainer, replaced atomically). It holds, as state dicts that load with ``weights_only=True``:

* ``model``, ``optimizer``, ``lr_scheduler``, ``trainer`` (ignite: epoch, iteration);
* ``early_stop``: the early-stopping counter and best score (:class:`EarlyStopState`);
* ``best_checkpoint``: the best-model saver's record of the best ``val_mcc`` so far (ignite ``Checkpoint``);
* ``random``: the random states of torch (CPU and CUDA), numpy, python and of every random augmentation transform
  (:class:`RandomStates`);
* ``grad_scaler``: the loss scale of float16 training (:class:`GradScalerState`; empty without one).

With ``resume`` true, :class:`TrainingStateLoader` (MONAI's ``CheckpointLoader``) loads it when the trainer
starts, and ignite continues with the next epoch: a killed run resumed this way ends with the same weights and
metrics as a run that was never killed (on CPU; ``tests/test_resume.py``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from monai.handlers import CheckpointLoader, EarlyStopHandler
from monai.transforms import Randomizable

__all__ = ["RandomStates", "EarlyStopState", "GradScalerState", "TrainingStateLoader"]

#: the top-level name of this package (``axial_monai``; another in a bundle's copy of the code)
_PACKAGE = __name__.split(".")[0]


def _randomizables(root: Any) -> list[Randomizable]:
    """Every ``Randomizable`` reachable from ``root`` through attributes, lists and tuples, in a fixed order."""
    found: list[Randomizable] = []
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if id(obj) in seen or depth > 6:
            return
        seen.add(id(obj))
        if isinstance(obj, list | tuple):
            for value in obj:
                visit(value, depth + 1)
            return
        if isinstance(obj, Randomizable):
            found.append(obj)
        if hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in ("monai", _PACKAGE):
            for value in vars(obj).values():
                visit(value, depth + 1)

    visit(root, 0)
    return found


def _numpy_state(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = state
    return {
        "name": name,
        "keys": torch.from_numpy(np.asarray(keys, np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _numpy_tuple(state: Mapping[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["gauss"])


class RandomStates:
    """The random states a training run draws from, as a state dict of tensors and plain numbers.

    Args:
        augmentation: the random augmentation (e.g. ``PrepareVolumeBatch.augmentation``); each of its transforms
            has its own numpy ``RandomState``.
    """

    def __init__(self, augmentation: Any = None) -> None:
        self.transforms = _randomizables(augmentation) if augmentation is not None else []

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state(np.random.get_state()),
            "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
            "transforms": [_numpy_state(t.R.get_state()) for t in self.transforms],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if len(state["transforms"]) != len(self.transforms):
            raise ValueError(
                f"The saved state has {len(state['transforms'])} random transforms, this run {len(self.transforms)}: "
                "resume with the augmentation the run was started with."
            )
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        np.random.set_state(_numpy_tuple(state["numpy"]))
        python = state["python"]
        random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss"]))
        for transform, saved in zip(self.transforms, state["transforms"], strict=True):
            transform.R.set_state(_numpy_tuple(saved))


class EarlyStopState:
    """The state (counter, best score) of MONAI's ``EarlyStopHandler``, whose ignite handler exists only once
    ``set_trainer`` ran (the configs call it in ``initialize``)."""

    def __init__(self, handler: EarlyStopHandler) -> None:
        self.handler = handler

    def _ignite(self) -> Any:
        if self.handler._handler is None:
            raise RuntimeError("The early-stopping handler has no trainer yet: call set_trainer first.")
        return self.handler._handler

    def state_dict(self) -> dict[str, Any]:
        return dict(self._ignite().state_dict())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._ignite().load_state_dict(state)


class GradScalerState:
    """The gradient scaler of a MONAI trainer (``trainer.scaler``: float16 training only) as a state dict.

    A resumed float16 run goes on with the loss scale it had reached instead of the initial one (which the first
    iterations would otherwise spend lowering again, skipping their steps). Without a scaler the state is empty.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def _scaler(self) -> Any:
        scaler = getattr(self.trainer, "scaler", None)
        return scaler if scaler is not None and scaler.is_enabled() else None  # disabled: float16 off or no CUDA

    def state_dict(self) -> dict[str, Any]:
        scaler = self._scaler()
        return dict(scaler.state_dict()) if scaler is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        scaler = self._scaler()
        if bool(state) != (scaler is not None):
            raise ValueError(
                "The saved training state and this run disagree on float16 training (a gradient scaler is "
                f"{'saved' if state else 'not saved'} but {'used' if scaler is not None else 'not used'} now): "
                "resume with the amp setting the run was started with."
            )
        if scaler is not None:
            scaler.load_state_dict(dict(state))


class TrainingStateLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` for ``training_state.pt`` that acts only when ``enabled`` (the ``resume``
    setting), and refuses a missing file at once, naming it, rather than when training starts.

    Args:
        load_path: the saved training state.
        load_dict: the objects to restore (see the module docstring).
        enabled: restore (True) or start afresh (False: nothing is attached).
        map_location: as for ``torch.load``.
    """

    def __init__(
        self, load_path: str, load_dict: dict, enabled: bool = False, map_location: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(load_path=load_path, load_dict=load_dict, map_location=map_location, **kwargs)
        self.enabled = bool(enabled)

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        if not os.path.isfile(self.load_path):
            raise FileNotFoundError(
                f"resume is true but there is no training state {self.load_path}: the run saved no complete epoch "
                "there. Start it without resume (or give the output_dir of the killed run)."
            )
        super().attach(engine)

    def __call__(self, engine: Engine) -> None:
        super().__call__(engine)
        self.logger.info(
            f"Resumed from {self.load_path}: epoch {engine.state.epoch} of {engine.state.max_epochs} done."
        )
