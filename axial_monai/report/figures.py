"""Figures of the HTML report, drawn off-screen and returned as base64 PNG text for ``<img src="data:...">``.

Curves and matrices come from scikit-learn's displays (``RocCurveDisplay``, ``ConfusionMatrixDisplay``), brain
overlays from nilearn's ``plot_stat_map``; everything is drawn on bare matplotlib ``Figure`` objects with an Agg
canvas, so the pyplot state and backend are never touched.
"""

from __future__ import annotations

import base64
import inspect
import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

__all__ = ["png_base64", "roc_figure", "confusion_figure", "curves_figure", "attention_figure", "overlay_figure"]

#: plane index -> name, as in the attention tables.
PLANES = {0: "sagittal", 1: "coronal", 2: "axial"}


def png_base64(figure: Figure, dpi: int = 90) -> str:
    """The figure as base64-encoded PNG text."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def roc_figure(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str) -> str:
    """ROC curves on one axes (e.g. pooled and one per fold).

    Args:
        curves: ``(name, labels (N,) 0/1, positive-class scores (N,))``; the first is drawn thick (pooled).
        title: axes title.
    """
    figure = Figure(figsize=(4.6, 4.2))
    ax = figure.add_subplot()
    for number, (name, labels, scores) in enumerate(curves):
        if len(np.unique(labels)) < 2:
            continue  # no ROC curve with one class
        style = {"linewidth": 2.5, "color": "black"} if number == 0 and len(curves) > 1 else {"linewidth": 1.2}
        RocCurveDisplay.from_predictions(labels, scores, pos_label=1, name=name, ax=ax, **_curve_style(style))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7)
    return png_base64(figure)


def _curve_style(style: dict) -> dict:
    """Line style for ``RocCurveDisplay``: ``curve_kwargs`` from scikit-learn 1.7, plain keywords before."""
    if "curve_kwargs" in inspect.signature(RocCurveDisplay.from_predictions).parameters:
        return {"curve_kwargs": style}
    return style


def confusion_figure(labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str], title: str) -> str:
    """Confusion matrix (counts; rows = true class, columns = predicted class)."""
    figure = Figure(figsize=(3.4, 3.0))
    ax = figure.add_subplot()
    ConfusionMatrixDisplay.from_predictions(
        labels,
        predictions,
        labels=list(range(len(class_names))),
        display_labels=list(class_names),
        ax=ax,
        colorbar=False,
        cmap="Blues",
    )
    ax.set_title(title)
    return png_base64(figure)


def curves_figure(runs: Mapping[str, Mapping[str, pd.DataFrame]], title: str) -> str | None:
    """Training loss and validation metrics against epochs, one line per run (e.g. per fold).

    Args:
        runs: run name -> tag -> table with ``epoch`` and ``value`` (from :func:`axial_monai.report.runs.read_scalars`).
        title: figure title.

    Returns:
        the PNG, or None when there is nothing to draw.
    """
    tags = sorted({tag for scalars in runs.values() for tag in scalars})
    loss_tags = [t for t in tags if "loss" in t]
    metric_tags = [t for t in tags if t not in loss_tags]
    panels = [("loss", loss_tags), ("validation and training metrics", metric_tags)]
    panels = [(name, group) for name, group in panels if group]
    if not panels:
        return None
    figure = Figure(figsize=(5.2 * len(panels), 3.6))
    for position, (name, group) in enumerate(panels, start=1):
        ax = figure.add_subplot(1, len(panels), position)
        for run, scalars in runs.items():
            for tag in group:
                if tag not in scalars:
                    continue
                table = scalars[tag]
                label = tag if len(runs) == 1 else f"{run}: {tag}"
                if "loss" in tag and len(table) > table["epoch"].round().nunique():  # per iteration: epoch mean
                    ax.plot(table["epoch"], table["value"], alpha=0.25, linewidth=0.8)
                    per_epoch = table.groupby(np.ceil(table["epoch"]).clip(lower=1))["value"].mean()
                    ax.plot(per_epoch.index, per_epoch.to_numpy(), marker="o", markersize=3, label=f"{label} (mean)")
                else:
                    ax.plot(table["epoch"], table["value"], marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend(fontsize=6)
    figure.suptitle(title)
    return png_base64(figure)


def attention_figure(attention: pd.DataFrame, title: str) -> str:
    """Slice attention per plane: mean over scans with a +- 1 sd band, one line per group.

    Args:
        attention: rows ``plane``, ``slice``, ``attention``, ``scan`` and ``group`` (e.g. predicted class).
        title: figure title.
    """
    planes = sorted(attention["plane"].unique())
    figure = Figure(figsize=(4.2 * len(planes), 3.2))
    for position, plane in enumerate(planes, start=1):
        ax = figure.add_subplot(1, len(planes), position)
        part = attention[attention["plane"] == plane]
        for group, rows in part.groupby("group", sort=True):
            stats = rows.groupby("slice")["attention"].agg(["mean", "std", "count"]).fillna(0.0)
            line = ax.plot(stats.index, stats["mean"], label=f"{group} ({rows['scan'].nunique()} scans)")[0]
            ax.fill_between(
                stats.index,
                stats["mean"] - stats["std"],
                stats["mean"] + stats["std"],
                alpha=0.2,
                color=line.get_color(),
            )
        ax.set_xlabel(f"{PLANES.get(int(plane), plane)} slice index")
        ax.set_ylabel("attention")
        ax.legend(fontsize=7)
    figure.suptitle(title)
    return png_base64(figure)


def overlay_figure(stat_map, anatomy, title: str, threshold: float = 0.2) -> str:
    """A 3D map over the anatomy (three orthogonal cuts through its largest high-value cluster), nilearn
    ``plot_stat_map``.

    Args:
        stat_map: NIfTI image or path of the map (values in [0, 1]).
        anatomy: NIfTI image or path of the background; nilearn resamples it to the map in world coordinates.
        title: title drawn on the figure.
        threshold: map values below it are not drawn (the anatomy shows through).
    """
    import nibabel as nib
    from nilearn import plotting

    image = nib.load(stat_map) if isinstance(stat_map, str) else stat_map
    figure = Figure(figsize=(7.0, 2.6))
    display = plotting.plot_stat_map(
        image,
        bg_img=anatomy,
        cut_coords=None,  # nilearn centres the cuts on the largest cluster of high values
        display_mode="ortho",
        figure=figure,
        title=title,
        colorbar=True,
        threshold=threshold,
        cmap="hot",
        symmetric_cbar=False,
        vmax=1.0,
    )
    del display  # drawn on our own Figure: nothing registered with pyplot to close
    return png_base64(figure)
