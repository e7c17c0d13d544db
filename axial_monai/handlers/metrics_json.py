"""Write an evaluator's final metrics to a JSON file."""

from __future__ import annotations

import logging
import os

import ignite.distributed as idist
from ignite.engine import Engine, Events

from ..io import write_json
from ..layout import RunLayout

__all__ = ["MetricsJSONWriter"]

logger = logging.getLogger(__name__)


class MetricsJSONWriter:
    """At the end of a run, write ``engine.state.metrics`` and the number of scored scans to
    ``<save_dir>/<filename>``.

    MONAI's ``MetricsSaver`` writes the CSV twin; this adds the machine-readable JSON. Only rank 0 writes.
    NaN values (e.g. AUC with one class present) are written as ``null``. ``num_scans`` counts the predictions
    the evaluator made in this run, summed over DDP ranks -- the ones its metrics scored -- not the size of the
    dataset, so a run that stopped early or a sampler that skipped or repeated scans shows in the number.

    With ``predictions`` (the ``predictions.csv`` of a :class:`PredictionWriter` attached *before* this handler,
    so that the file is complete when this one runs), the JSON also gets ``confidence_intervals``: per level
    (``scan``, ``subject``) the estimate and the bootstrap interval of each metric
    (:func:`axial_monai.scores.level_intervals`: subjects resampled, stratified by label).

    Args:
        save_dir: output directory.
        filename: JSON file name.
        predictions: labelled predictions CSV to compute confidence intervals from; None: no intervals.
        positive: index of the positive class.
        n_resamples: bootstrap resamples.
        confidence: coverage of the intervals.
        seed: seed of the resampling.
    """

    def __init__(
        self,
        save_dir: str,
        filename: str = RunLayout.METRICS,
        predictions: str | None = None,
        positive: int = 1,
        n_resamples: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
    ) -> None:
        self.save_dir, self.filename = save_dir, filename
        self.predictions, self.positive = predictions, positive
        self.bootstrap = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
        self._count = 0

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self, Events.COMPLETED):
            engine.add_event_handler(Events.STARTED, self._reset)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._add)
            engine.add_event_handler(Events.COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._count = 0

    def _add(self, engine: Engine) -> None:
        output = engine.state.output
        # decollated evaluator output: one dict per scan; otherwise a batch dict whose "pred" is (B, C)
        self._count += len(output["pred"]) if isinstance(output, dict) else len(output)

    def __call__(self, engine: Engine) -> None:
        num_scans = int(idist.all_reduce(self._count)) if idist.get_world_size() > 1 else self._count
        if idist.get_rank() != 0:
            return
        metrics = {k: float(v) if hasattr(v, "__float__") else v for k, v in engine.state.metrics.items()}
        result = {"metrics": metrics, "num_scans": num_scans}
        if self.predictions is not None:
            result["confidence_intervals"] = self._intervals()
        path = os.path.join(self.save_dir, self.filename)
        write_json(path, result)
        logger.info(f"metrics written to {path}")

    def _intervals(self) -> dict:
        from ..scores import level_intervals, prediction_frame

        if not os.path.isfile(self.predictions):
            raise RuntimeError(
                f"{self.predictions} does not exist when the metrics are written: attach the PredictionWriter that "
                "writes it before the MetricsJSONWriter (handler order in the config)."
            )
        intervals = level_intervals(prediction_frame(self.predictions), self.positive, **self.bootstrap)
        return {**self.bootstrap, "method": "percentile, subjects resampled", **intervals}
