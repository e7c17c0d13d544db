"""Ignite handlers the bundle attaches to its engines.

* :mod:`.checkpoint`: ``AtomicCheckpointSaver``, the best checkpoint written atomically;
* :mod:`.resume`: the training state saved every epoch and ``--resume true`` (``GradScalerState`` included);
* :mod:`.metrics_json`, :mod:`.prediction_writer`: ``metrics.json`` and ``predictions.csv`` of an evaluation (the
  names of :class:`~axial_monai.layout.RunLayout`);
* :mod:`.progress`: the loss progress bar;
* :mod:`.interpretability`: ``InterpretabilityHandler``, the explanations of every evaluated scan
  (:class:`~axial_monai.explain.ExplainSettings`).
"""

from .checkpoint import AtomicCheckpointSaver
from .interpretability import InterpretabilityHandler
from .metrics_json import MetricsJSONWriter
from .prediction_writer import PredictionWriter
from .progress import LossProgressBar
from .resume import EarlyStopState, GradScalerState, RandomStates, TrainingStateLoader

__all__ = [
    "AtomicCheckpointSaver",
    "EarlyStopState",
    "GradScalerState",
    "InterpretabilityHandler",
    "LossProgressBar",
    "MetricsJSONWriter",
    "PredictionWriter",
    "RandomStates",
    "TrainingStateLoader",
]
