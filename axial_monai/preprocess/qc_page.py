"""The QC page of one preprocessing run: every scan with its status, QC figures and QC picture, failures first.

``axial-monai preprocess`` writes it as ``<out>/qc.html`` from its table (``preprocess.csv``: one row per scan,
``status``, ``problem``, the QC figures and ``qc_figure``, the picture of
:func:`~axial_monai.preprocess.qc_figure.plot_preprocessing_qc`). One self-contained HTML file: the pictures are
embedded.
"""

from __future__ import annotations

import base64
import math
import os
from pathlib import Path

import pandas as pd

from ..html_page import cell as _cell
from ..html_page import render_page
from ..io import atomic_path

__all__ = ["FIGURES", "write_qc_page"]

#: the QC figures shown per scan, with their labels.
FIGURES = {
    "template_correlation": "correlation with the template",
    "mask_dice": "brain mask Dice",
    "jacobian_min": "Jacobian min",
    "jacobian_max": "Jacobian max",
    "similarity_cc": "similarity (cc)",
    "brain_volume_ml": "brain volume (ml)",
    "seconds": "seconds",
}


def _number(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.3f}"


def write_qc_page(table: pd.DataFrame, out: str | os.PathLike, title: str = "axial-monai preprocessing QC") -> Path:
    """Write the QC page of ``table`` (the rows of ``preprocess.csv``) to ``out``, atomically; returns its path."""
    table = table.assign(_failed=table["status"] != "ok").sort_values(["_failed", "scan"], ascending=[False, True])
    shown = [key for key in FIGURES if key in table.columns]
    rows = []
    for _, row in table.iterrows():
        cells = [_cell(str(row["scan"])), _cell(str(row["status"]), **{"class": f"status-{row['status']}"})]
        cells += [_cell(_number(row[key])) for key in shown]
        rows.append([*cells, _cell("" if pd.isna(row.get("problem")) else str(row["problem"]))])
    failed = int(table["_failed"].sum())
    summary = f"{len(table)} scans: {len(table) - failed} ok, {failed} failed (failures first)."
    blocks: list[dict] = [
        {"kind": "text", "text": summary},
        {
            "kind": "table",
            "caption": "QC figures per scan",
            "columns": ["scan", "status", *(FIGURES[key] for key in shown), "problem"],
            "rows": rows,
        },
    ]
    for _, row in table.iterrows():
        picture = row.get("qc_figure")
        items = []
        if isinstance(picture, str) and Path(picture).is_file():
            png = base64.b64encode(Path(picture).read_bytes()).decode("ascii")
            items.append({"png": png, "caption": Path(picture).name})
        problem = "" if pd.isna(row.get("problem")) else str(row["problem"])
        table_rows = [[_cell(row["status"]), _cell(problem or "passed the QC gate")]]
        blocks.append(
            {
                "kind": "scan",
                "title": f"{Path(str(row['scan'])).name} ({row['status']})",
                "items": items,
                "table": {"columns": ["status", "QC"], "rows": table_rows},
            }
        )
    sections = [{"id": "preprocessing", "title": "Preprocessing QC", "blocks": blocks}]
    out = Path(out)
    with atomic_path(out, suffix=".html") as tmp:
        Path(tmp).write_text(render_page(title, out.parent, "preprocessing", sections))
    return out
