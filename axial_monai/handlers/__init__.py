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
