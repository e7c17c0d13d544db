"""Assemble the HTML report of a run: metrics with bootstrap confidence intervals, ROC curves, confusion matrices,
learning curves, attention profiles, map overlays and region tables, in one self-contained file.

The page is made of sections of generic blocks (text, table, figures) rendered by one jinja2 template
(``report.html.j2``); every figure is an embedded base64 PNG, there is no script and no external resource, so the
file can be mailed or archived as it is. Metric cells carry ``data-level``, ``data-metric`` and ``data-value``
attributes with the exact numbers (for scripts and tests); the text shows three decimals.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..html_page import cell, render_page
from ..io import write_text
from ..layout import RunLayout
from ..metrics import METRIC_LABELS, METRICS
from ..scores import baseline_scans, level_intervals
from . import figures
from .runs import Evaluation, Explanations, RunContents, find_run_contents, read_scalars

__all__ = ["METRIC_LABELS", "ReportOptions", "build_report", "write_report"]

_POSITIVE = 1


def _number(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{float(value):.3f}"


_cell = cell


def _class_names(frame: pd.DataFrame) -> list[str]:
    return [c[len("prob_") :] for c in frame.columns if c.startswith("prob_")]


def _scores(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()[:, _POSITIVE]


def _predictions(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy().argmax(1)


def _metrics_table(
    caption: str, intervals: Mapping, source: str, estimates: Mapping | None = None, spread: Mapping | None = None
) -> dict:
    """Metrics x levels: estimate [low, high]; ``estimates`` overrides the scan-level estimates (the evaluator's)."""
    levels = [level for level in ("scan", "subject") if level in intervals]
    columns = ["metric"] + [
        f"{level} level ({intervals[level].get('n_scans', '?')} scans, {intervals[level].get('n_subjects', '?')} "
        "subjects)"
        for level in levels
    ]
    if spread:
        columns += [f"{level}: mean ± sd over folds" for level in levels if level in spread]
    rows = []
    for metric in METRICS:
        row = [_cell(METRIC_LABELS[metric])]
        for level in levels:
            ci = intervals[level].get(metric) or {}
            estimate = ci.get("estimate")
            if level == "scan" and estimates is not None and metric in estimates:
                estimate = estimates[metric]
            text = f"{_number(estimate)} [{_number(ci.get('low'))}, {_number(ci.get('high'))}]"
            row.append(_cell(text, source=source, level=level, metric=metric, value=estimate))
        for level in levels:
            if spread and level in spread and metric in spread[level]:
                values = spread[level][metric]
                row.append(_cell(f"{_number(values.get('mean'))} ± {_number(values.get('sd'))}"))
        rows.append(row)
    return {"kind": "table", "caption": caption, "columns": columns, "rows": rows}


def _intervals(frame: pd.DataFrame, bootstrap: Mapping) -> dict:
    return level_intervals(frame, _POSITIVE, **bootstrap)


def _evaluation_blocks(evaluation: Evaluation, bootstrap: Mapping) -> list[dict]:
    blocks: list[dict] = []
    frame = evaluation.predictions
    if frame is None:
        metrics = evaluation.metrics.get("metrics", {})
        rows = [[_cell(METRIC_LABELS.get(m, m)), _cell(_number(v), metric=m, value=v)] for m, v in metrics.items()]
        blocks.append(
            {
                "kind": "table",
                "caption": "metrics (no labelled predictions)",
                "columns": ["metric", "value"],
                "rows": rows,
            }
        )
        return blocks
    intervals = evaluation.metrics.get("confidence_intervals")
    note = "from metrics.json"
    if not intervals or "scan" not in intervals:
        intervals, note = _intervals(frame, bootstrap), "computed from predictions.csv"
    confidence = intervals.get("confidence", bootstrap["confidence"])
    caption = (
        f"{evaluation.name}: estimate [{100 * confidence:.0f} % bootstrap CI, subjects resampled] ({note}); "
        f"positive class {_class_names(frame)[_POSITIVE]}"
    )
    blocks.append(_metrics_table(caption, intervals, evaluation.name, evaluation.metrics.get("metrics")))
    baseline = baseline_scans(frame)
    roc = figures.roc_figure(
        [
            ("scans", frame["label"].to_numpy(), _scores(frame)),
            ("subjects", baseline["label"].to_numpy(), _scores(baseline)),
        ],
        f"{evaluation.name}: ROC",
    )
    names = _class_names(frame)
    matrices = [
        figures.confusion_figure(rows["label"], _predictions(rows), names, f"{evaluation.name}: {level}")
        for level, rows in (("scan level", frame), ("subject level", baseline))
    ]
    blocks.append(
        {
            "kind": "figures",
            "items": [
                {"png": roc, "caption": "ROC curves, per scan and per subject (baseline scan)"},
                *({"png": png, "caption": "confusion matrix (rows: true class)"} for png in matrices),
            ],
        }
    )
    return blocks


def _crossval_blocks(contents: RunContents, bootstrap: Mapping) -> list[dict]:
    cv = contents.crossval
    pooled = cv.pooled
    intervals = cv.summary.get("pooled") or _intervals(pooled, bootstrap)
    settings = cv.settings
    text = (
        f"{settings.get('k', len(cv.folds))}-fold subject-wise cross-validation (seed {settings.get('seed', '?')}), "
        f"{pooled['subject'].nunique()} subjects, {len(pooled)} test scans pooled out of fold."
    )
    blocks = [{"kind": "text", "text": text}]
    caption = (
        "pooled out-of-fold predictions: estimate [95 % bootstrap CI, subjects resampled], and mean ± sd over folds"
    )
    blocks.append(_metrics_table(caption, intervals, "pooled", spread=cv.summary.get("levels")))
    rows = []
    for fold, evaluation in sorted(cv.folds.items()):
        metrics = evaluation.metrics.get("metrics", {})
        row = [_cell(str(fold)), _cell(str(evaluation.metrics.get("num_scans", "?")))]
        row += [_cell(_number(metrics.get(m)), source=f"fold-{fold}", metric=m, value=metrics.get(m)) for m in METRICS]
        rows.append(row)
    columns = ["fold", "test scans", *(METRIC_LABELS[m] for m in METRICS)]
    blocks.append(
        {
            "kind": "table",
            "caption": "per fold (scan level, each fold's metrics.json)",
            "columns": columns,
            "rows": rows,
        }
    )
    curves = [("pooled", pooled["label"].to_numpy(), _scores(pooled))]
    for fold, part in pooled.groupby("fold", sort=True) if "fold" in pooled.columns else []:
        curves.append((f"fold {fold}", part["label"].to_numpy(), _scores(part)))
    baseline = baseline_scans(pooled)
    names = _class_names(pooled)
    items = [{"png": figures.roc_figure(curves, "ROC: pooled and per fold"), "caption": "ROC, scan level"}]
    for level, rows_ in (("scan level", pooled), ("subject level", baseline)):
        png = figures.confusion_figure(rows_["label"], _predictions(rows_), names, f"pooled: {level}")
        items.append({"png": png, "caption": "confusion matrix (rows: true class)"})
    blocks.append({"kind": "figures", "items": items})
    return blocks


def _curve_blocks(contents: RunContents) -> list[dict]:
    items = []
    for name, folder in contents.logs.items():
        png = figures.curves_figure({name: read_scalars(folder)}, f"{name}: training and validation")
        if png:
            items.append({"png": png, "caption": f"TensorBoard scalars of {folder.name}"})
    if not items:
        return [{"kind": "text", "text": "The TensorBoard logs have no scalars."}]
    return [{"kind": "figures", "items": items}]


def _csv_table(path: Path, rows: int, caption: str) -> dict:
    table = pd.read_csv(path).head(rows)
    cells = [
        [_cell(f"{v:.4g}" if isinstance(v, float) else str(v)) for v in record]
        for record in table.itertuples(index=False)
    ]
    return {"kind": "table", "caption": caption, "columns": list(table.columns), "rows": cells}


def _attention_table(explain: Explanations) -> pd.DataFrame:
    groups = {}
    if explain.cohort is not None and (explain.cohort / RunLayout.EXPLANATIONS).is_file():
        explained = pd.read_csv(explain.cohort / RunLayout.EXPLANATIONS)
        if {"scan", "pred_label"} <= set(explained.columns):
            groups = dict(zip(explained["scan"].astype(str), "predicted " + explained["pred_label"].astype(str)))
    frames = []
    for scan in explain.scans:
        table = pd.read_csv(scan / "attention.csv")
        sid = explain.scan_id(scan)
        if {"plane", "slice", "attention"} <= set(table.columns):  # other layouts are left to their own figures
            frames.append(table.assign(scan=sid, group=groups.get(sid, "all scans")))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _anatomy(anatomy: str | None):
    if anatomy is not None:
        return anatomy
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=2)


def _explain_blocks(contents: RunContents, max_scans: int, anatomy: str | None) -> list[dict]:
    explain = contents.explanations
    blocks: list[dict] = [{"kind": "text", "text": f"{len(explain.scans)} explained scans in {explain.folder}."}]
    table = _attention_table(explain) if explain.scans else pd.DataFrame()
    if len(table):
        png = figures.attention_figure(table, "slice attention per plane (mean ± sd over scans)")
        blocks.append(
            {"kind": "figures", "items": [{"png": png, "caption": "per-plane attention profiles"}], "id": "attention"}
        )
    if explain.cohort is not None:
        maps = sorted(p for p in explain.cohort.glob("*.nii.gz") if not p.name.startswith("explainable_mri"))
        if maps:
            background = _anatomy(anatomy)
            items = []
            for path in maps:
                name = path.name[: -len(".nii.gz")]
                items.append(
                    {"png": figures.overlay_figure(str(path), background, name), "caption": f"cohort map {name}"}
                )
            blocks.append({"kind": "figures", "items": items, "id": "maps"})
        tables = sorted(explain.cohort.glob("re*_all.csv")) or sorted(explain.cohort.glob("re*.csv"))
        for path in tables:
            if path.name.startswith("regions_per_scan"):
                continue
            blocks.append(_csv_table(path, 10, f"cohort/{path.name} (first 10 rows)"))
    for scan in explain.scans[:max_scans]:
        sid = explain.scan_id(scan)
        items = [{"png": _file_png(p), "caption": f"{sid}/{p.name}"} for p in sorted(scan.glob("*.png"))]
        rows = []
        for path in sorted(scan.glob("regions_*.csv")):
            top = pd.read_csv(path).head(5)
            names = ", ".join(top["name"].astype(str)) if "name" in top.columns else ""
            rows.append([_cell(path.stem[len("regions_") :]), _cell(names or "(no region above threshold)")])
        blocks.append(
            {"kind": "scan", "title": sid, "items": items, "table": {"columns": ["map", "top regions"], "rows": rows}}
        )
    return blocks


def _file_png(path: Path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode("ascii")


@dataclass(frozen=True)
class ReportOptions:
    """What a report shows, and the bootstrap of the confidence intervals it computes.

    Args:
        title: page title (default: ``axial-monai report: <run folder name>``).
        n_resamples, confidence, seed: bootstrap of the confidence intervals computed here (those already in
            ``metrics.json`` / ``summary.json`` are shown as they are).
        max_scans: explained scans shown one by one (all are in the cohort figures and tables).
        anatomy: background NIfTI of the cohort maps (default: nilearn's MNI152 template, 2 mm).
    """

    title: str | None = None
    n_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    max_scans: int = 6
    anatomy: str | None = None


def build_report(run_dir: str | os.PathLike, options: ReportOptions = ReportOptions()) -> str:
    """The HTML text of the report of ``run_dir`` (see :func:`write_report`).

    Args:
        run_dir: the run's output folder (see :mod:`axial_monai.report.runs` for what is read).
        options: what to show and how to bootstrap.
    """
    contents = find_run_contents(run_dir)
    bootstrap = {"n_resamples": options.n_resamples, "confidence": options.confidence, "seed": options.seed}
    sections = []
    for evaluation in contents.evaluations:
        sections.append(
            {
                "id": f"metrics-{evaluation.name}",
                "title": f"Evaluation: {evaluation.name}",
                "blocks": _evaluation_blocks(evaluation, bootstrap),
            }
        )
    if contents.crossval is not None:
        sections.append(
            {"id": "crossval", "title": "Cross-validation", "blocks": _crossval_blocks(contents, bootstrap)}
        )
    if contents.logs:
        sections.append({"id": "curves", "title": "Training and validation curves", "blocks": _curve_blocks(contents)})
    if contents.explanations is not None:
        sections.append(
            {
                "id": "explanations",
                "title": "Explanations",
                "blocks": _explain_blocks(contents, options.max_scans, options.anatomy),
            }
        )
    title = options.title or f"axial-monai report: {Path(run_dir).resolve().name}"
    return render_page(title, run_dir, ", ".join(contents.kinds), sections)


def write_report(
    run_dir: str | os.PathLike, out: str | os.PathLike | None = None, options: ReportOptions = ReportOptions()
) -> Path:
    """Write the self-contained HTML report of a training, cross-validation or explain run.

    Args:
        run_dir: the run's output folder (see :mod:`axial_monai.report.runs` for what is read).
        out: HTML path (default ``<run_dir>/report.html``), written atomically.
        options: what to show and how to bootstrap.

    Returns:
        the path written.

    Raises:
        FileNotFoundError: if ``run_dir`` does not exist.
        ValueError: if it holds no run outputs.
    """
    html = build_report(run_dir, options)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    write_text(path, html)
    return path
