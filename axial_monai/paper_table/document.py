"""The table's report: ``paper_table.md`` and ``paper_table.png``."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..metrics import METRIC_LABELS, METRICS
from .models import MODELS, REFERENCE

__all__ = ["command_line", "figure", "machine", "markdown", "markdown_table"]


def _cell(row: Any) -> str:
    return f"{row.estimate:.3f} [{row.low:.3f}, {row.high:.3f}]"


def _wide(results: pd.DataFrame, value) -> pd.DataFrame:
    return results.assign(value=[value(r) for r in results.itertuples(index=False)]).pivot(
        index="label", columns="metric", values="value"
    )[list(METRICS)]


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a GitHub markdown table (its columns as the header, every value as ``str``)."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _ordered(results: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(results["label"]))


def markdown(
    results: pd.DataFrame,
    comparisons: pd.DataFrame,
    costs: pd.DataFrame,
    transfer: dict[str, Any] | None,
    stability: pd.DataFrame | None,
    about: Mapping[str, Any],
) -> str:
    headers = [METRIC_LABELS[m] for m in METRICS]
    n = results.iloc[0]
    pooled = _wide(results, _cell).loc[_ordered(results)]
    cost = costs.set_index("model").loc[list(dict.fromkeys(results["model"]))]
    main = pd.DataFrame(
        {
            "model": pooled.index,
            **{h: pooled[m].to_numpy() for h, m in zip(headers, METRICS, strict=True)},
            "parameters": [f"{v / 1e6:.2f} M" for v in cost["parameters"]],
            "training s/epoch": [f"{v:.1f}" for v in cost["train_seconds_per_epoch"]],
            "inference s/scan": [f"{v:.3f}" for v in cost["inference_seconds_per_scan"]],
        }
    )
    per_fold = _wide(results, lambda r: f"{r.fold_mean:.3f} ± {r.fold_sd:.3f}").loc[_ordered(results)]
    folds = pd.DataFrame({"model": per_fold.index, **{h: per_fold[m].to_numpy() for h, m in zip(headers, METRICS)}})
    text = [
        f"# Models compared: {about['task']}, {about['k']}-fold subject-wise cross-validation",
        "",
        f"{int(n.n_subjects)} subjects ({int(n.n_scans)} scans at the subject level: the earliest scan of each), the "
        f"same {about['k']} folds for every model (seed {about['seed']}). Pooled out-of-fold estimates with 95 % "
        "bootstrap intervals over subjects (stratified by class); parameters and seconds on the machine below.",
        "",
        markdown_table(main),
        "",
        "Per fold (mean ± sd over the folds):",
        "",
        markdown_table(folds),
        "",
        f"## Paired tests against {MODELS[REFERENCE].label}",
        "",
        "On the same test subjects: DeLong's test for AUC, McNemar's exact test for accuracy; Holm's correction over "
        "the baselines, per metric (`axial_monai/crossval/compare.py` says why these tests).",
        "",
    ]
    if comparisons.empty:
        text.append("(one model only: nothing to compare)")
    else:
        pairs = comparisons[["acc_reference", "acc_model", "only_reference", "only_model"]].to_numpy()
        shown = comparisons.assign(
            model=[MODELS[m].label for m in comparisons["model"]],
            **{"ΔAUC (reference - model)": comparisons["auc_difference"].map("{:+.3f}".format)},
            **{c: comparisons[c].map("{:.3g}".format) for c in ("auc_p", "auc_p_holm", "acc_p", "acc_p_holm")},
            **{"ACC reference / model": [f"{a:.3f} / {b:.3f}" for a, b, _, _ in pairs]},
            **{"right only (reference / model)": [f"{int(a)} / {int(b)}" for _, _, a, b in pairs]},
        )
        columns = ["model", "n_subjects", "ΔAUC (reference - model)", "auc_p", "auc_p_holm"]
        columns += ["ACC reference / model", "right only (reference / model)", "acc_p", "acc_p_holm"]
        text.append(markdown_table(shown[columns]))
    if transfer is not None:
        table = _wide(transfer["table"], _cell).loc[_ordered(transfer["table"])]
        frame = pd.DataFrame({"start": table.index, **{h: table[m].to_numpy() for h, m in zip(headers, METRICS)}})
        test = transfer["test"].iloc[0]
        text += [
            "",
            f"## Double transfer on the conversion task ({MODELS[REFERENCE].label})",
            "",
            "Fold-matched: each fold starts from the same fold of the main task, whose model never saw the fold's "
            "test subjects (checked).",
            "",
            markdown_table(frame),
            "",
            f"Double transfer against ImageNet only, on {test.n_subjects} subjects: ΔAUC {test.auc_difference:+.3f} "
            f"(DeLong p {test.auc_p:.3g}), accuracy {test.acc_reference:.3f} against {test.acc_model:.3f} "
            f"(McNemar p {test.acc_p:.3g}).",
        ]
    if stability is not None and not stability.empty:
        text += [
            "",
            "## Explanations across folds",
            "",
            "Spearman correlation of the atlas regions' relevance between the folds' models, each on its own test "
            "scans, over every pair of folds (`explain_stability.csv` has each pair):",
            "",
            markdown_table(_consistency(stability)),
        ]
    text += ["", "## How it was made", "", f"    {about['command']}", "", f"Machine: {about['machine']}.", ""]
    return "\n".join(text)


def _consistency(stability: pd.DataFrame) -> pd.DataFrame:
    """Per map: the number of fold pairs and the mean, smallest and largest Spearman correlation."""
    pairs = stability[stability["fold_a"].astype(str) != "mean"]  # the file ends with a mean row per map
    grouped = pairs.groupby("map", sort=False)["spearman"]
    return pd.DataFrame(
        {
            "map": list(grouped.groups),
            "fold pairs": grouped.size().to_numpy(),
            "mean Spearman": grouped.mean().map("{:.3f}".format).to_numpy(),
            "lowest": grouped.min().map("{:.3f}".format).to_numpy(),
            "highest": grouped.max().map("{:.3f}".format).to_numpy(),
        }
    )


def figure(results: pd.DataFrame, predictions: Mapping[str, pd.DataFrame], positive: int) -> Any:
    from matplotlib.figure import Figure
    from sklearn.metrics import RocCurveDisplay

    from ..scores import baseline_scans

    drawing = Figure(figsize=(11, 4.4))
    roc, bars = drawing.add_subplot(1, 2, 1), drawing.add_subplot(1, 2, 2)
    for name, frame in predictions.items():
        first = baseline_scans(frame)
        probs = [c for c in first.columns if c.startswith("prob_")]
        RocCurveDisplay.from_predictions(
            first["label"] == positive, first[probs[positive]], name=MODELS[name].label, ax=roc
        )
    roc.plot([0, 1], [0, 1], linestyle=":", color="grey")
    roc.set_title("ROC, one scan per subject")
    labels = _ordered(results)
    for offset, label in enumerate(labels):
        part = results[results["label"] == label].set_index("metric").loc[list(METRICS)]
        x = np.arange(len(METRICS)) + (offset - (len(labels) - 1) / 2) * 0.8 / len(labels)
        error = np.abs(part[["low", "high"]].to_numpy().T - part["estimate"].to_numpy())
        bars.errorbar(x, part["estimate"], yerr=error, fmt="o", capsize=3, label=label)
    bars.set_xticks(np.arange(len(METRICS)), [METRIC_LABELS[m] for m in METRICS], rotation=30)
    bars.set_title("pooled estimates, 95 % bootstrap intervals")
    bars.legend(fontsize=7)
    return drawing


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
