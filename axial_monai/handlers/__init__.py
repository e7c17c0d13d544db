from .metrics_json import MetricsJSONWriter
from .progress import LossProgressBar
from .prediction_writer import PredictionWriter

__all__ = ["LossProgressBar", "MetricsJSONWriter", "PredictionWriter"]
