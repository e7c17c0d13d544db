"""The AXIAL paper's comparison table on any cohort: every model cross-validated on the same folds, with confidence
intervals, paired tests, double transfer learning and the cost of each model.

:func:`run_benchmark` (command line: ``axial-monai benchmark``) runs, for each model of :data:`MODELS`, the
subject-wise cross-validation of :mod:`axial_monai.crossval` into ``OUT/<model>/`` (same table, seed and ``k``:
the same folds, which is checked), then, with a conversion table, the conversion task twice, from ImageNet and from
the reference model's fold of the first task (double transfer, fold-matched and leakage-checked by the runner).
Each run resumes per fold. It writes into ``OUT``:

* ``paper_table.md``: the table (pooled out-of-fold estimates at the subject level with 95 % bootstrap intervals
  over subjects, the per-fold mean and sd, parameters and seconds), the paired tests against the reference model,
  double transfer against ImageNet, the explanation consistency between folds, the command and the machine;
* ``paper_table.csv`` (one row per model and metric), ``comparisons.csv`` (the paired tests), ``cost.csv``;
* ``paper_table.png``: the ROC curve of each model and each metric's interval per model.

The statistics are those of :mod:`axial_monai.crossval.compare` (DeLong for AUC, McNemar's exact test for accuracy,
Holm over the baselines).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .configs import config_path
from .crossval.compare import paired_comparisons
from .crossval.runner import TRAIN_CONFIG, bundle_config, fold_dir, fold_outputs, fold_settings, run_cross_validation
from .crossval.stability import STABILITY_FILE
from .errors import InputError, SettingsError
from .io import write_csv, write_json, write_png, write_text
from .metrics import METRIC_LABELS, METRICS

__all__ = [
    "Model",
    "MODELS",
    "REFERENCE",
    "model_overrides",
    "run_benchmark",
    "model_cost",
    "datalist_table",
    "markdown_table",
]


@dataclass(frozen=True)
class Model:
    """One model of the table: how the bundle's training config becomes it.

    Attributes:
        label: its name in the table.
        configs: shipped configs merged after ``train.json`` (e.g. ``("triplanar",)``).
        overrides: bundle settings that select the network.
        slice_training: train on single slices (the 2D majority-vote baseline): a slice sampler is appended to
            ``train#augmentation``.
    """

    label: str
    configs: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)
    slice_training: bool = False


#: the models of the AXIAL paper's tables, by the name used for their folders.
MODELS: dict[str, Model] = {
    "axial": Model("AXIAL (slice attention)"),
    "majority_vote_2d": Model(
        "2D slices, majority vote",
        overrides={"network_spec#_target_": "axial_monai.networks.SliceClassifier2D"},
        slice_training=True,
    ),
    "mean_pool": Model(
        "mean pooling of slices", overrides={"network_spec#_target_": "axial_monai.networks.MeanPoolNet"}
    ),
    "slice_transformer": Model(
        "slice transformer", overrides={"network_spec#_target_": "axial_monai.networks.SliceTransformerNet"}
    ),
    "densenet3d": Model(
        "3D DenseNet121",
        overrides={
            "network_spec": {
                "_target_": "DenseNet121",
                "_mode_": "callable",
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": "$len(@class_names)",
            }
        },
    ),
    "triplanar": Model("tri-planar AXIAL", configs=("triplanar",)),
}
#: the model every other one is compared with.
REFERENCE = "axial"
_SLICE_SAMPLER = {
    "_target_": "axial_monai.transforms.RandSliceSampled",
    "keys": "image",
    "plane": "@plane",
    "num_slices": "@num_slices",
}
_STARTS = {
    "imagenet": "ImageNet only (the backbone's `pretrained` setting)",
    "double_transfer": "double transfer (from the main task's same fold)",
}
_LEVEL = "subject"  # one scan per subject: the pairs of the tests are independent


def datalist_table(path: str | os.PathLike) -> pd.DataFrame:
    """One row per item of every split of a datalist JSON (``subject``, ``session``, ``image``, ``label``): a
    cohort given as a datalist is cross-validated as a whole. Items without ``subject`` are their own subject;
    without ``session``, one session each."""
    from .data.datalist import load_split

    listed = json.loads(Path(path).read_text())
    splits = [name for name, items in listed.items() if isinstance(items, list) and items]
    if not splits:
        raise InputError(f"{path} lists no items (a datalist has e.g. 'training', 'validation', 'test' lists).")
    items = [item for name in splits for item in load_split(None, name, str(path), keys=("image", "label"))]
    table = pd.DataFrame(items)
    table["subject"] = table["subject"].astype(str) if "subject" in table else table["image"]
    table["session"] = table["session"].astype(str) if "session" in table else "ses-1"
    return table


def model_overrides(model: Model, config_files: Sequence[str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle settings of ``model``: ``overrides``, then the model's own; for slice training, the config's
    ``train#augmentation`` (after both) with the slice sampler appended."""
    settings = {**overrides, **model.overrides}
    if model.slice_training:
        augmentation = bundle_config(config_files, settings)["train"]["augmentation"]
        settings["train#augmentation"] = [*augmentation, _SLICE_SAMPLER]
    return settings


def _config_files(model: Model) -> list[str]:
    return [TRAIN_CONFIG, *(config_path(name) for name in model.configs)]


def _finished(run_dir: Path, k: int) -> int:
    return sum((fold_dir(run_dir, fold) / "done.json").is_file() for fold in range(k))


def _cross_validate(
    table: pd.DataFrame, run_dir: Path, config_files: Sequence[str], settings: Mapping[str, Any], **kwargs: Any
) -> None:
    """One cross-validation, with the wall time of the folds it trains added to ``run_dir/training_time.json``."""
    k = kwargs["k"]
    before, start = _finished(run_dir, k), time.perf_counter()
    run_cross_validation(table, run_dir, config_files=config_files, overrides=settings, **kwargs)
    trained = _finished(run_dir, k) - before
    record = run_dir / "training_time.json"
    earlier = json.loads(record.read_text()) if record.is_file() else {"seconds": 0.0, "folds": 0}
    if trained:
        seconds = time.perf_counter() - start
        write_json(record, {"seconds": earlier["seconds"] + seconds, "folds": earlier["folds"] + trained})


def model_cost(run_dir: Path, config_files: Sequence[str], settings: Mapping[str, Any]) -> dict[str, float]:
    """Parameters, training seconds per epoch and inference seconds per scan of the model cross-validated in
    ``run_dir``.

    Training: the wall time of the folds trained (``training_time.json``: training, validation and the test
    evaluation) divided by the configured epochs of those folds, so it is an upper bound per epoch when early
    stopping ends a fold sooner. Inference: the median of three forward passes (after one warm-up) of fold 0's
    network on its template brain ``(1, 1, X, Y, Z)``, on this machine's CPU, one scan at a time.
    """
    from monai.bundle import ConfigParser

    from .run import RunSettings

    datalist = fold_dir(run_dir, 0) / "datalist.json"
    ckpt, _ = fold_outputs(config_files, fold_settings(settings, fold_dir(run_dir, 0), datalist))
    run = RunSettings.load(ckpt)
    network = run.build_network().eval()
    volume = torch.from_numpy(run.template_input())[None, None]
    seconds = []
    with torch.inference_mode():
        for _ in range(4):
            start = time.perf_counter()
            network(volume)
            seconds.append(time.perf_counter() - start)
    parser = ConfigParser(bundle_config(config_files, settings))
    epochs = int(parser.get_parsed_content("epochs"))
    timing_file = run_dir / "training_time.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else None
    per_epoch = timing["seconds"] / (timing["folds"] * epochs) if timing and timing["folds"] else float("nan")
    return {
        "parameters": int(sum(p.numel() for p in network.parameters())),
        "train_seconds_per_epoch": float(per_epoch),
        "inference_seconds_per_scan": float(np.median(seconds[1:])),
    }


def _pooled(run_dir: Path) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """A cross-validation's pooled predictions, its ``summary.json`` and its per-fold summary."""
    return (
        pd.read_csv(run_dir / "predictions.csv"),
        json.loads((run_dir / "summary.json").read_text()),
        pd.read_csv(run_dir / "summary.csv"),
    )


def _same_folds(run_dirs: Mapping[str, Path]) -> None:
    """Refuse models cross-validated on different folds (their paired tests would pair nothing)."""
    tables = {name: pd.read_csv(path / "fold_assignment.csv") for name, path in run_dirs.items()}
    first, reference = next(iter(tables.items()))
    for name, table in tables.items():
        if not table.equals(reference):
            raise InputError(
                f"{run_dirs[name]} and {run_dirs[first]} were cross-validated on different folds: compare runs "
                "of the same table, k and seed."
            )


def _metric_rows(name: str, label: str, summary: dict, folds: pd.DataFrame) -> list[dict]:
    pooled = summary["pooled"][_LEVEL]
    per_fold = folds[folds["level"] == _LEVEL].set_index("metric")
    return [
        {
            "model": name,
            "label": label,
            "metric": metric,
            "estimate": pooled[metric]["estimate"],
            "low": pooled[metric]["low"],
            "high": pooled[metric]["high"],
            "fold_mean": per_fold.loc[metric, "mean"],
            "fold_sd": per_fold.loc[metric, "sd"],
            "n_subjects": pooled["n_subjects"],
            "n_scans": pooled["n_scans"],
        }
        for metric in METRICS
    ]


def run_benchmark(
    table: pd.DataFrame,
    out: str | os.PathLike,
    models: Sequence[str] = tuple(MODELS),
    k: int = 5,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    conversion: pd.DataFrame | None = None,
    conversion_overrides: Mapping[str, Any] | None = None,
    val_fraction: float = 0.2,
    explain: Mapping[str, Any] | None = None,
    task: str = "ADvsCN",
    command: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Cross-validate every model on the same folds and write the comparison table (see the module docstring).

    Args:
        table: one row per scan of the main task (``subject``, ``session``, ``image``, ``label``).
        out: output folder; a rerun resumes each model's cross-validation per fold.
        models: names in :data:`MODELS`; the reference model :data:`REFERENCE` is always run.
        k, seed, val_fraction: of the cross-validations.
        overrides: bundle settings for every model (e.g. ``{"epochs": 100}``).
        conversion: the conversion task's table (e.g. sMCI vs pMCI): cross-validated with the reference model from
            ImageNet and from the same fold of the main task (double transfer).
        conversion_overrides: settings of the conversion task on top of ``overrides`` (e.g. its class names).
        explain: ``explain.json`` settings to explain every fold of the reference model (``{}``: the defaults).
        task: the main task's name, for the table.
        command: the command line, for the table (default: this process's).
        progress: progress bars.

    Returns:
        the table (``paper_table.csv``): one row per model and metric.
    """
    unknown = [name for name in models if name not in MODELS]
    if unknown:
        raise SettingsError(f"Unknown model(s) {unknown}; choose among {list(MODELS)}.")
    models = [REFERENCE, *[name for name in dict.fromkeys(models) if name != REFERENCE]]
    out = Path(out).resolve()
    overrides = dict(overrides or {})
    common = {"k": k, "seed": seed, "val_fraction": val_fraction, "progress": progress}
    assign_with = [] if conversion is None else [conversion]
    runs, settings_of = {}, {}
    for name in models:
        model, run_dir = MODELS[name], out / name
        configs = _config_files(model)
        settings_of[name] = (configs, model_overrides(model, configs, overrides))
        wanted = explain if name == REFERENCE else None
        _cross_validate(table, run_dir, *settings_of[name], assign_with=assign_with, explain=wanted, **common)
        runs[name] = run_dir
    _same_folds(runs)
    rows, predictions, costs = [], {}, []
    for name, run_dir in runs.items():
        pooled, summary, folds = _pooled(run_dir)
        predictions[name] = pooled
        rows += _metric_rows(name, MODELS[name].label, summary, folds)
        costs.append({"model": name, **model_cost(run_dir, *settings_of[name])})
    positive = int(overrides.get("positive_class", 1))
    results = pd.DataFrame(rows)
    comparisons = paired_comparisons(predictions, REFERENCE, positive)
    transfer = None
    if conversion is not None:
        transfer = _double_transfer(conversion, out, settings_of[REFERENCE], conversion_overrides or {}, common)
    write_csv(out / "paper_table.csv", results)
    write_csv(out / "comparisons.csv", comparisons)
    write_csv(out / "cost.csv", pd.DataFrame(costs))
    write_png(out / "paper_table.png", _figure(results, predictions, positive), dpi=110, bbox_inches="tight")
    stability = runs[REFERENCE] / STABILITY_FILE
    document = _markdown(
        results,
        comparisons,
        pd.DataFrame(costs),
        transfer,
        pd.read_csv(stability) if explain is not None and stability.is_file() else None,
        {"task": task, "k": k, "seed": seed, "command": command or _command(), "machine": _machine()},
    )
    write_text(out / "paper_table.md", document)
    return results


def _double_transfer(
    conversion: pd.DataFrame,
    out: Path,
    reference: tuple[Sequence[str], Mapping[str, Any]],
    conversion_overrides: Mapping[str, Any],
    common: Mapping[str, Any],
) -> dict[str, Any]:
    """The conversion task with the reference model from ImageNet and from the main task's same fold."""
    configs, settings = reference
    settings = {**settings, **conversion_overrides}
    runs = {"imagenet": out / "conversion" / "imagenet", "double_transfer": out / "conversion" / "double_transfer"}
    main = out / REFERENCE
    _cross_validate(conversion, runs["imagenet"], configs, settings, folds_from=str(main), **common)
    _cross_validate(conversion, runs["double_transfer"], configs, settings, init_from=str(main), **common)
    _same_folds(runs)
    rows, predictions = [], {}
    for name, run_dir in runs.items():
        pooled, summary, folds = _pooled(run_dir)
        predictions[name] = pooled
        rows += _metric_rows(name, _STARTS[name], summary, folds)
    positive = int(settings.get("positive_class", 1))
    return {"table": pd.DataFrame(rows), "test": paired_comparisons(predictions, "double_transfer", positive)}


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


def _markdown(
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


def _figure(results: pd.DataFrame, predictions: Mapping[str, pd.DataFrame], positive: int) -> Any:
    from matplotlib.figure import Figure
    from sklearn.metrics import RocCurveDisplay

    from .scores import baseline_scans

    figure = Figure(figsize=(11, 4.4))
    roc, bars = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
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
    return figure


def _command() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
