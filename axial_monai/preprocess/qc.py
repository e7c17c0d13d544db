"""Quality-control records of the preprocessing: one JSON file per scan, gathered into one TSV table.

Each attempt at a scan writes (atomically) ``<pipeline dir>/qc/<output name>.json``; only the worker that
processes that scan writes it, so shards running at the same time never write the same file. The table
``<pipeline dir>/qc.tsv`` is rebuilt from all records at the end of every run (and by :func:`collect_qc`), so
concurrent shards each leave a complete, consistent table. A scan counts as done when its output image exists
and its record says ``status == "ok"`` with the same settings as the current run (changing e.g. the transform
redoes the scans; moving the folders does not).

The record's fields and the table's columns are :class:`axial_monai.derivatives.QCRecord` (:data:`QC_COLUMNS`);
the paths are those of :class:`axial_monai.derivatives.DerivativesLayout`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..derivatives import QC_COLUMNS, DerivativesLayout
from ..io import write_csv

__all__ = ["read_record", "collect_qc"]


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
    layout = DerivativesLayout(Path(deriv_dir))
    rows = []
    for path in sorted(layout.qc_dir.glob("*.json")):
        record = read_record(path)
        if record is not None:
            rows.append({column: record.get(column) for column in QC_COLUMNS})
    table = pd.DataFrame(rows, columns=list(QC_COLUMNS))
    table = table.sort_values(["subject", "session", "input_path"], kind="stable").reset_index(drop=True)
    if write:
        write_csv(layout.qc_table, table, sep="\t", na_rep="n/a")
    return table
