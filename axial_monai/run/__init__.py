"""A trained run: its settings, its checkpoint and the mean control scan it stores.

* :mod:`.settings`: :class:`RunSettings`, the record of what a trained network is and what it accepts;
* :mod:`.network`: the network's recipe and the classes a checkpoint may name;
* :mod:`.checkpoint`: the ``{"model", "run"}`` checkpoint, read with ``weights_only=True``;
* :mod:`.controls`: the mean control scan (the default baseline of the explanations);
* :mod:`.training` (import it by name): what training discovers about its data, ``train.json``'s run settings;
* :mod:`.migrate` (import it by name): checkpoints of older versions brought up to date.

Inference, explanation and fine-tuning need only the first three, so an exported bundle carries only those.
"""

from .checkpoint import (
    MODEL_KEY,
    RUN_KEY,
    check_weights,
    checkpoint_path,
    load_weights,
    read_checkpoint,
    weights_mismatch,
)
from .controls import MAX_CONTROLS, mean_control
from .network import NETWORK_MODULES
from .settings import FORMAT, RunSettings, load_run_settings

__all__ = [
    "FORMAT",
    "MAX_CONTROLS",
    "MODEL_KEY",
    "NETWORK_MODULES",
    "RUN_KEY",
    "RunSettings",
    "check_weights",
    "checkpoint_path",
    "load_run_settings",
    "load_weights",
    "mean_control",
    "read_checkpoint",
    "weights_mismatch",
]
