"""Quality-control records of the preprocessing: one JSON file per scan, gathered into one TSV table.

Each attempt at a scan writes (atomically) ``<pipeline dir>/qc/<output name>.json``; only the worker that
processes that scan writes it, so shards running at the same time never write the same file. The table
``<pipeline dir>/qc.tsv`` is rebuilt from all records at the end of every run (and by :func:`collect_qc`), so
concurrent shards each leave a complete, consistent table. A scan counts as done when its output image exists
and its record says ``status == "ok"`` with the same settings as the current run (changing e.g. the transform
redoes the scans; moving the folders does not).

Columns of the table (:data:`QC_COLUMNS`):

* ``subject``, ``session``, ``input_path``, ``output_path``;
* ``status``: ``"ok"`` or ``"failed"``; ``error``: one-line message naming the file and the problem;
* ``similarity_cc``: squared normalised cross-correlation of the registered image with the template inside the
  template brain mask (ANTs ``Correlation`` metric, sign flipped; 0 to 1, higher is better);
* ``similarity_mi``: Mattes mutual information with the template inside the brain mask (ANTs
  ``MattesMutualInformation``, sign flipped; higher is better);
* ``warning``: set when ``similarity_cc`` is below the run's ``min_similarity_cc`` (a likely failed registration);
* ``runtime_s``: wall time of the attempt; ``finished``: ISO time stamp;
* ``space``, ``transform``: template label and ANTs transform type.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["QC_COLUMNS", "record_path", "write_record", "read_record", "collect_qc"]

QC_COLUMNS = (
    "subject",
    "session",
    "input_path",
    "output_path",
    "status",
    "error",
    "similarity_cc",
    "similarity_mi",
    "warning",
    "runtime_s",
    "finished",
    "space",
    "transform",
)


def record_path(deriv_dir: str | os.PathLike, output_path: str | os.PathLike) -> Path:
    """Path of the QC record of the scan whose preprocessed image is ``output_path``."""
    name = Path(output_path).name.removesuffix(".nii.gz")
    return Path(deriv_dir) / "qc" / f"{name}.json"


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Write one QC record as JSON, atomically (temporary file in the same folder, then ``os.replace``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _replace_atomic(target, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2, default=str) + "\n"))


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The QC record at ``path``, or ``None`` if it is missing or unreadable (then the scan is not done)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def collect_qc(deriv_dir: str | os.PathLike, write: bool = True) -> pd.DataFrame:
    """Gather all QC records of a pipeline folder into one table, one row per scan.

    Args:
        deriv_dir: the pipeline's derivatives folder (``OUT_DIR/derivatives/axial-monai``).
        write: also write it (atomically) to ``deriv_dir/qc.tsv``.

    Returns:
        the table with columns :data:`QC_COLUMNS`, sorted by subject, session and input path.
    """
    rows = []
    for path in sorted((Path(deriv_dir) / "qc").glob("*.json")):
        record = read_record(path)
        if record is not None:
            rows.append({column: record.get(column) for column in QC_COLUMNS})
    table = pd.DataFrame(rows, columns=list(QC_COLUMNS))
    table = table.sort_values(["subject", "session", "input_path"], kind="stable").reset_index(drop=True)
    if write:
        target = Path(deriv_dir) / "qc.tsv"
        target.parent.mkdir(parents=True, exist_ok=True)
        _replace_atomic(target, lambda tmp: table.to_csv(tmp, sep="\t", index=False, na_rep="n/a"))
    return table


def _replace_atomic(target: Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp)`` on a uniquely named hidden file beside ``target``, then ``os.replace`` it onto ``target``."""
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
