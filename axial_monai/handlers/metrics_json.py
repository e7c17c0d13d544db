"""Write an evaluator's final metrics to a JSON file."""

from __future__ import annotations

import logging
import os

from ignite.engine import Engine, Events

from axial_monai.io import write_json

__all__ = ["MetricsJSONWriter"]

logger = logging.getLogger(__name__)


class MetricsJSONWriter:
    """At the end of a run, write ``engine.state.metrics`` (and the number of scans) to ``<save_dir>/<filename>``.

    MONAI's ``MetricsSaver`` writes the CSV twin; this adds the machine-readable JSON. Only rank 0 writes.
    NaN values (e.g. AUC with one class present) are written as ``null``.
    """

    def __init__(self, save_dir: str, filename: str = "metrics.json") -> None:
        self.save_dir, self.filename = save_dir, filename

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        import ignite.distributed as idist

        if idist.get_rank() != 0:
            return
        metrics = {k: float(v) if hasattr(v, "__float__") else v for k, v in engine.state.metrics.items()}
        path = os.path.join(self.save_dir, self.filename)
        write_json(path, {"metrics": metrics, "num_scans": len(engine.state.dataloader.dataset)})
        logger.info(f"metrics written to {path}")
