"""The protocol of the table: every model cross-validated on the same folds, double transfer, cost per model."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..configs import config_path
from ..crossval.compare import paired_comparisons
from ..crossval.runner import TRAIN_CONFIG, bundle_config, fold_dir, fold_outputs, fold_settings, run_cross_validation
from ..crossval.stability import STABILITY_FILE
from ..data.clinica import TASKS, splittable_scans
from ..errors import InputError, SettingsError
from ..io import write_csv, write_json, write_png, write_text
from ..layout import CrossvalLayout, RunLayout
from ..metrics import METRICS
from .document import command_line, figure, machine, markdown
from .models import MODELS, REFERENCE, STARTS, Model, model_overrides

__all__ = ["cohort_tables", "datalist_table", "double_transfer", "model_cost", "run_benchmark"]

_LEVEL = "subject"  # one scan per subject: the pairs of the tests are independent


def cohort_tables(
    cohort: str | os.PathLike,
    task: str = "ADvsCN",
    derivatives: str | os.PathLike | None = None,
    transfer: bool = False,
    conversion: str | os.PathLike | None = None,
    **options: Any,
) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """The main task's table and the conversion task's (or None) of a cohort, as :func:`run_benchmark` takes them,
    and what was left out for the command line (empty when nothing was).

    Args:
        cohort: a datalist JSON (with ``conversion``, the conversion task's datalist) or a Clinica BIDS tree (with
            ``transfer``, its pMCIvsSMCI labels are the conversion task).
        task, derivatives: of a BIDS tree (:func:`~axial_monai.data.clinica.splittable_scans`).
        options: ``missing_image``, ``diagnosis_map``, ``include_qc_failed`` of a BIDS tree; the scans that the QC
            gate failed are left out (the third value says which).
    """
    if Path(cohort).is_file():
        return datalist_table(cohort), (None if conversion is None else datalist_table(conversion)), ""
    if task not in TASKS:
        raise SettingsError(f"--task must be one of {list(TASKS)}, not {task!r}.")
    found, told = [], ""
    for name in [task] + (["pMCIvsSMCI"] if transfer and task != "pMCIvsSMCI" else []):
        labelled, _, message = splittable_scans(cohort, name, derivatives, **options)
        found.append(labelled)
        told += message
    return found[0], (found[1] if len(found) > 1 else None), told


def datalist_table(path: str | os.PathLike) -> pd.DataFrame:
    """One row per item of every split of a datalist JSON (``subject``, ``session``, ``image``, ``label``): a
    cohort given as a datalist is cross-validated as a whole. Items without ``subject`` are their own subject;
    without ``session``, one session each."""
    from ..data.datalist import load_split

    listed = json.loads(Path(path).read_text())
    splits = [name for name, items in listed.items() if isinstance(items, list) and items]
    if not splits:
        raise InputError(f"{path} lists no items (a datalist has e.g. 'training', 'validation', 'test' lists).")
    items = [item for name in splits for item in load_split(None, name, str(path), keys=("image", "label"))]
    table = pd.DataFrame(items)
    table["subject"] = table["subject"].astype(str) if "subject" in table else table["image"]
    table["session"] = table["session"].astype(str) if "session" in table else "ses-1"
    return table


def _config_files(model: Model) -> list[str]:
    return [TRAIN_CONFIG, *(config_path(name) for name in model.configs)]


def _finished(run_dir: Path, k: int) -> int:
    return sum(CrossvalLayout(run_dir).fold_file(fold, CrossvalLayout.DONE).is_file() for fold in range(k))


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

    from ..run import RunSettings

    datalist = CrossvalLayout(run_dir).fold_file(0, RunLayout.DATALIST)
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
        pd.read_csv(run_dir / CrossvalLayout.PREDICTIONS),
        json.loads((run_dir / CrossvalLayout.SUMMARY_JSON).read_text()),
        pd.read_csv(run_dir / CrossvalLayout.SUMMARY),
    )


def _same_folds(run_dirs: Mapping[str, Path]) -> None:
    """Refuse models cross-validated on different folds (their paired tests would pair nothing)."""
    tables = {name: pd.read_csv(path / CrossvalLayout.ASSIGNMENT) for name, path in run_dirs.items()}
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
    transfer_overrides: Mapping[str, Any] | None = None,
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
        transfer_overrides: settings of the double transfer run only, on top of those (e.g. keep the main task's
            head and fine-tune gently: ``{"initialised_network#reset": [], "learning_rate": 5e-5}``).
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
        settings = {**overrides, **(conversion_overrides or {})}
        transfer = double_transfer(conversion, out, out / REFERENCE, settings, transfer_overrides, **common)
    write_csv(out / "paper_table.csv", results)
    write_csv(out / "comparisons.csv", comparisons)
    write_csv(out / "cost.csv", pd.DataFrame(costs))
    write_png(out / "paper_table.png", figure(results, predictions, positive), dpi=110, bbox_inches="tight")
    stability = runs[REFERENCE] / STABILITY_FILE
    document = markdown(
        results,
        comparisons,
        pd.DataFrame(costs),
        transfer,
        pd.read_csv(stability) if explain is not None and stability.is_file() else None,
        {"task": task, "k": k, "seed": seed, "command": command or command_line(), "machine": machine()},
    )
    write_text(out / "paper_table.md", document)
    return results


def double_transfer(
    conversion: pd.DataFrame,
    out: str | os.PathLike,
    main_run: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    transfer_overrides: Mapping[str, Any] | None = None,
    **common: Any,
) -> dict[str, Any]:
    """The conversion task with the reference model from ImageNet and from the main task's same fold.

    Args:
        conversion: the conversion task's table (one row per scan).
        out: the runs go to ``out/conversion/{imagenet,double_transfer}``; a rerun resumes them.
        main_run: the reference model's cross-validation of the main task, whose folds both runs reuse.
        overrides: bundle settings of the conversion task.
        transfer_overrides: bundle settings of the double transfer run only (see :func:`run_benchmark`).
        common: ``k``, ``seed``, ``val_fraction``, ``progress`` of the cross-validations.

    Returns:
        ``table`` (one row per start and metric, as ``paper_table.csv``) and ``test`` (the paired tests).
    """
    out, main = Path(out), Path(main_run)
    configs = _config_files(MODELS[REFERENCE])
    settings = model_overrides(MODELS[REFERENCE], configs, overrides or {})
    runs = {"imagenet": out / "conversion" / "imagenet", "double_transfer": out / "conversion" / "double_transfer"}
    _cross_validate(conversion, runs["imagenet"], configs, settings, folds_from=str(main), **common)
    transferred = {**settings, **(transfer_overrides or {})}
    _cross_validate(conversion, runs["double_transfer"], configs, transferred, init_from=str(main), **common)
    _same_folds(runs)
    rows, predictions = [], {}
    for name, run_dir in runs.items():
        pooled, summary, folds = _pooled(run_dir)
        predictions[name] = pooled
        rows += _metric_rows(name, STARTS[name], summary, folds)
    positive = int(settings.get("positive_class", 1))
    return {"table": pd.DataFrame(rows), "test": paired_comparisons(predictions, "double_transfer", positive)}
