from .checkpoint import AtomicCheckpointSaver
from .interpretability import InterpretabilityHandler
from .metrics_json import MetricsJSONWriter
from .prediction_writer import PredictionWriter
from .progress import LossProgressBar

__all__ = [
    "AtomicCheckpointSaver",
    "InterpretabilityHandler",
    "LossProgressBar",
    "MetricsJSONWriter",
    "PredictionWriter",
]
