"""Preprocessing of loose scans: NIfTI files and DICOM series given on the command line, outside a BIDS tree.

``axial-monai preprocess SCAN... --out DIR`` (:func:`preprocess_scans`) takes the inputs of ``axial-monai predict``
(:mod:`axial_monai.data.inputs`: NIfTI files, folders of them, folders of DICOM series) and writes per volume, in
``DIR``:

* ``<id>_space-<template>[_res-<mm>mm]_desc-preproc_T1w.nii.gz``: the preprocessed brain on the template grid
  (:func:`~axial_monai.preprocess.pipeline.preprocess_scan` with the chosen profile);
* ``<id>_qc.json``: its source, profile and metrics (similarity to the template, brain Dice, Jacobian range, ...);
* ``<id>_qc.png``: its QC picture (:mod:`~axial_monai.preprocess.qc_figure`), also for a scan the QC gate refused;

and ``DIR/preprocess.csv``, one row per volume (``status`` ok or failed, ``problem``, the output, the metrics), and
``DIR/qc.html``, the QC page of all of them, failures first (:mod:`axial_monai.preprocess.qc_page`). A volume that
fails (the QC gate included: :mod:`~axial_monai.preprocess.gate`), or a DICOM series that is not a 3D T1, is a row
with its problem; the others go on. Outputs already there with the same settings are reused.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from . import __version__
from .data.inputs import gather_scans
from .derivatives import resolution_label, space_label
from .errors import InputError
from .io import atomic_path, file_digest, write_csv, write_json
from .preprocess.gate import DEFAULT_GATE
from .preprocess.pipeline import DEFAULT_PROFILE, ants_environment, check_profile, preprocess_scan
from .preprocess.qc_figure import qc_title, write_qc_figure
from .preprocess.templates import DEFAULT_TEMPLATE, load_template

__all__ = ["COLUMNS", "preprocess_scans"]

#: columns of ``preprocess.csv`` before the metrics.
COLUMNS = ("scan", "series", "output", "status", "problem", "seconds")


def _output(out: Path, scan_id: str, space: str, resolution: float | None) -> Path:
    res = resolution_label(resolution)
    return out / f"{scan_id}_space-{space_label(space)}{f'_res-{res}' if res else ''}_desc-preproc_T1w.nii.gz"


def preprocess_scans(
    scans: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    template: str = DEFAULT_TEMPLATE,
    resolution: float | None = None,
    profile: str = DEFAULT_PROFILE,
    transform: str = "SyNQuick",
    cache_dir: str | os.PathLike | None = None,
    seed: int = 42,
    echo: Callable[[str], object] = print,
) -> pd.DataFrame:
    """Preprocess NIfTI files and DICOM series onto a template grid (module docstring).

    Args:
        scans: NIfTI files, folders of them, folders holding DICOM series.
        out: output folder.
        template: a shipped template name or a NIfTI path (see :func:`~.templates.load_template`).
        resolution: resample the template to this isotropic voxel size in mm; ``None``: its own grid.
        profile: ``"fast"`` or ``"paper"`` (:data:`~.pipeline.PROFILES`).
        transform: the paper profile's ANTs registration.
        cache_dir: where DICOM series converted to NIfTI are kept (default ``$AXIAL_MONAI_CACHE``).
        seed: ``ANTS_RANDOM_SEED``.
        echo: where one line per volume goes.

    Returns:
        the table written to ``out/preprocess.csv``.
    """
    from .layout import default_cache_root

    profile = check_profile(profile)
    out = Path(out).resolve()
    cache = Path(cache_dir).resolve() if cache_dir else default_cache_root()
    loaded = load_template(template, resolution=resolution)
    settings = {"template": template, "resolution": resolution, "profile": profile, "version": __version__}
    settings.update({"transform": transform} if profile == "paper" else {})
    rows = []
    for item in gather_scans(scans, cache, echo):
        row: dict[str, Any] = {"scan": item.scan, "series": item.series, "output": None, "seconds": None}
        row["problem"] = item.problem
        if item.problem is None:
            row.update(_one(item.file, _output(out, item.scan_id, loaded.space, resolution), loaded, settings, seed))
            status = "failed" if row["problem"] else f"-> {row['output']} ({row['seconds']} s)"
            echo(f"{item.scan}: {status}" + (f": {row['problem']}" if row["problem"] else ""))
        row["status"] = "failed" if row["problem"] else "ok"
        rows.append(row)
    table = pd.DataFrame(rows)
    table = table[[*COLUMNS, *(c for c in table.columns if c not in COLUMNS)]]
    write_csv(out / "preprocess.csv", table)
    from .preprocess.qc_page import write_qc_page

    echo(f"QC page: {write_qc_page(table, out / 'qc.html')}")
    return table


def _one(source: str, target: Path, template: Any, settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """Preprocess one file into ``target`` (or reuse it): ``output``, ``seconds``, ``problem`` and the metrics."""
    import ants

    record_path = target.with_name(target.name.replace("_desc-preproc_T1w.nii.gz", "_qc.json"))
    wanted = {**settings, "source_sha256": file_digest(source)}
    if target.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("settings") == wanted:
            picture = record_path.with_suffix(".png")
            shown = {"qc_figure": str(picture)} if picture.is_file() else {}
            return {"output": str(target), "seconds": 0.0, "problem": None, **shown, **record["metrics"]}
    start = time.perf_counter()
    try:
        with ants_environment(None, seed):
            paper = {"transform": settings["transform"]} if "transform" in settings else {}
            done = preprocess_scan(source, template, settings["profile"], **paper)
    except (InputError, RuntimeError, ValueError) as err:  # one volume's failure; the others go on
        return {"seconds": round(time.perf_counter() - start, 1), "problem": str(err).removeprefix(f"{source}: ")}
    seconds = round(time.perf_counter() - start, 1)
    picture = record_path.with_suffix(".png")
    write_qc_figure(picture, done, template, source, qc_title(Path(source).name, done.metrics))
    refusal = DEFAULT_GATE.refusal(done.metrics)
    if refusal:  # no output: a failed registration must not be used
        target.unlink(missing_ok=True)
        return {"seconds": seconds, "problem": refusal, "qc_figure": str(picture), **done.metrics}
    with atomic_path(target, suffix=".nii.gz") as tmp:
        ants.image_write(done.brain, str(tmp))
    write_json(record_path, {"source": source, "settings": wanted, "metrics": done.metrics})
    return {"output": str(target), "seconds": seconds, "problem": None, "qc_figure": str(picture), **done.metrics}
