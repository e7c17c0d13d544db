"""One DICOM study through this package's own steps, before and after the compiled model answers.

:func:`prepare_study` selects the 3D T1 series with the rules of :mod:`axial_monai.data.dicom` (every other series is
refused with its reason), preprocesses it for the bundle (registration and brain extraction when the series is not on
the model's grid, then the QC gate: a failed registration is a refusal, not a number) and answers with the bundle's
eager network and its default explanation (:func:`axial_monai.predict.predict_scans`). :func:`finish_study` then takes
the compiled model's probabilities (``model.ts`` through MONAI Deploy's ``MonaiBundleInferenceOperator``), refuses
them if they are not the eager network's, and writes the results (:mod:`.results`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.dicom import find_series
from ..errors import InputError
from ..export.compiled import TOLERANCE
from ..run.layout import BundleLayout
from .results import StudyResult, probabilities_gap, read_source, write_results

__all__ = ["PreparedStudy", "prepare_study", "finish_study"]


@dataclass
class PreparedStudy:
    """A study after selection, preprocessing and the eager answer.

    Attributes:
        result: the result so far (refused, or with the eager probabilities).
        image: the preprocessed T1 volume (NIfTI on the model's grid) the compiled model must answer for, or None.
        source: the files of the selected T1 series (the evidence of the DICOM results).
        started: ``time.perf_counter()`` when the study was taken.
    """

    result: StudyResult
    image: str | None = None
    source: list[str] = field(default_factory=list)
    started: float = 0.0


def _model_info(bundle: Path) -> dict[str, str]:
    meta = json.loads((bundle / BundleLayout.METADATA).read_text())
    return {"name": str(meta.get("name", bundle.name)), "version": str(meta.get("version", ""))}


def prepare_study(
    study: str | os.PathLike, bundle: str | os.PathLike, workdir: str | os.PathLike, echo: Callable = print
) -> PreparedStudy:
    """Select, preprocess and answer (eager network) the T1 series of the DICOM folder ``study``.

    Args:
        study: a folder of DICOM files (one study; any names, any depth).
        bundle: the exported bundle folder (with ``models/model.ts``).
        workdir: where the intermediate files go (converted series, preprocessing cache, maps).
        echo: where the one-line messages go.
    """
    from ..predict import predict_scans

    started = time.perf_counter()
    study, bundle, workdir = Path(study).resolve(), Path(bundle).resolve(), Path(workdir).resolve()
    result = StudyResult(study=str(study), model=_model_info(bundle))
    try:
        series = {s.uid: s for s in find_series(study)}
    except InputError as err:  # no DICOM file: refused, with the results that say so
        result.refused[str(study)] = str(err).removeprefix(f"{study} ")
        return PreparedStudy(result, started=started)
    predictions = predict_scans(
        [study], bundle, workdir / "predict", explain=True, cache_dir=workdir / "cache", echo=echo
    )
    answered = [p for p in predictions if p.predicted is not None]
    for prediction in predictions:
        uid = prediction.scan.rsplit(":", 1)[-1]
        name = str(series[uid]) if uid in series else prediction.scan
        if prediction.problem:
            result.refused[name] = prediction.problem.removeprefix(f"{name} ")
        elif prediction is not answered[0]:
            result.refused[name] = "not answered: the study's first T1 series is"
    if not answered:
        result.picture = next((p.qc_picture for p in predictions if p.qc_picture), None)
        return PreparedStudy(result, started=started)
    chosen = answered[0]
    uid = chosen.scan.rsplit(":", 1)[-1]
    result.series_uid, result.series = uid, chosen.series
    result.eager_probabilities = dict(chosen.probabilities)
    result.quality = {k: float(v) for k, v in chosen.metrics.items() if isinstance(v, (int, float))}
    result.picture = str(workdir / "predict" / chosen.scan_id / "overview.png")
    return PreparedStudy(result, chosen.image, list(series[uid].files), started)


def finish_study(
    prepared: PreparedStudy, compiled: Mapping[str, float] | None, out: str | os.PathLike
) -> dict[str, Path]:
    """Write the results of ``prepared`` into ``out``, answered with the compiled model's probabilities
    ``{class: probability}`` if they equal the eager network's (within :data:`~axial_monai.export.TOLERANCE`),
    refused otherwise. Returns ``{kind: path}`` of what was written (:func:`~.results.write_results`)."""
    result = prepared.result
    if prepared.image is not None:
        gap = probabilities_gap(compiled or {}, result.eager_probabilities)
        if gap <= TOLERANCE:
            result.probabilities = dict(compiled)
            result.predicted = max(result.probabilities, key=result.probabilities.get)
        else:
            result.refused[str(result.series)] = (
                f"the compiled model (model.ts) answers {dict(compiled or {})}, not the eager network's "
                f"{result.eager_probabilities} (difference {gap:.2e} > {TOLERANCE}): the bundle is not consistent"
            )
    result.seconds = round(time.perf_counter() - prepared.started, 1)
    source = read_source(prepared.source) if prepared.source else _any_source(Path(result.study))
    return write_results(out, result, source)


def _any_source(study: Path) -> list[Any]:
    """The headers of the study's first series: a refusal still references the study it is about."""
    try:
        series = find_series(study)
    except InputError:
        return []
    return read_source(series[0].files) if series else []
