"""Find and read what a run left on disk: evaluations, cross-validation folds, TensorBoard logs, explanations.

A run folder may hold several of them (a bundle ``output_dir`` with ``eval-test/`` and ``explain/``). Nothing is
assumed about which explanation maps exist: the files present are read.

Layouts read::

    <run>/eval-<split>/metrics.json, predictions.csv        bundle evaluation (train.json, evaluate.json)
    <run>/events.out.tfevents.*                             TensorBoard logs of training (TensorBoardStatsHandler)
    <run>/crossval.json, summary.json, predictions.csv      cross-validation (axial_monai.crossval)
    <run>/fold-<i>/eval-test/..., fold-<i>/events...        its folds
    <run>/explain/ (or <run> itself)                        explain.json: <scan>/attention.csv, <scan>/*.png,
                                                            <scan>/regions_*.csv, cohort/*.nii.gz, cohort/*.csv
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..layout import CrossvalLayout, RunLayout
from ..scores import join_predictions, prediction_frame

__all__ = ["Evaluation", "CrossValidation", "Explanations", "RunContents", "read_scalars", "find_run_contents"]


@dataclass
class Evaluation:
    """One ``eval-<split>`` folder: ``metrics.json`` and the labelled predictions (subject, session filled in)."""

    name: str
    folder: Path
    metrics: dict
    predictions: pd.DataFrame | None


@dataclass
class CrossValidation:
    """A cross-validation run: settings, ``summary.json``, pooled predictions and one evaluation per fold."""

    folder: Path
    settings: dict
    summary: dict
    pooled: pd.DataFrame
    folds: dict[int, Evaluation]


@dataclass
class Explanations:
    """An explain folder: per-scan folders (with ``attention.csv``) and the cohort folder."""

    folder: Path
    scans: list[Path]
    cohort: Path | None

    def scan_id(self, scan: Path) -> str:
        """The id of a per-scan folder: its path below the explain folder (``sub-01/ses-M000``, ``a/T1``, ...)."""
        return scan.relative_to(self.folder).as_posix()


@dataclass
class RunContents:
    """Everything found under a run folder."""

    folder: Path
    evaluations: list[Evaluation] = field(default_factory=list)
    crossval: CrossValidation | None = None
    logs: dict[str, Path] = field(default_factory=dict)
    explanations: Explanations | None = None

    @property
    def kinds(self) -> list[str]:
        kinds = []
        if self.evaluations or (self.logs and self.crossval is None):
            kinds.append("training / evaluation")
        if self.crossval is not None:
            kinds.append("cross-validation")
        if self.explanations is not None:
            kinds.append("explanations")
        return kinds


def _read_json(path: Path, missing_ok: bool = False) -> dict:
    """The JSON object in ``path`` (``{}`` for a missing file with ``missing_ok``), or an InputError naming it."""
    if missing_ok and not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise InputError(f"{path} is not valid JSON ({err}).") from None


def read_evaluation(folder: Path) -> Evaluation:
    """An ``eval-<split>`` folder; predictions are None when they carry no labels (inference)."""
    metrics = _read_json(folder / RunLayout.METRICS, missing_ok=True)
    predictions = None
    if (folder / RunLayout.PREDICTIONS).is_file():
        table = pd.read_csv(folder / RunLayout.PREDICTIONS)
        if "label" in table.columns:
            predictions = prediction_frame(table)
    return Evaluation(folder.name, folder, metrics, predictions)


def read_scalars(folder: Path) -> dict[str, pd.DataFrame]:
    """Scalars of the TensorBoard event files directly in ``folder``: tag -> table ``step``, ``epoch``, ``value``.

    MONAI's ``TensorBoardStatsHandler`` logs epoch-level values (validation metrics) at step = epoch and the
    training loss at step = iteration; iteration steps are turned into fractional epochs with the number of
    iterations per epoch (last iteration / number of epochs).
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    tables = {}
    for tag in accumulator.Tags().get("scalars", []):
        events = accumulator.Scalars(tag)
        tables[tag] = pd.DataFrame({"step": [e.step for e in events], "value": [e.value for e in events]})
    epoch_counts = [len(t) for tag, t in tables.items() if "loss" not in tag]
    n_epochs = max(epoch_counts, default=0)
    for table in tables.values():
        last = table["step"].max() if len(table) else 0
        per_epoch = last / n_epochs if n_epochs and len(table) > n_epochs else 1.0
        table["epoch"] = table["step"] / per_epoch
    return tables


def _logs(folder: Path) -> bool:
    return any(folder.glob("events.out.tfevents.*"))


def _fold_number(path: Path) -> int | None:
    match = re.fullmatch(r"fold-(\d+)", path.name)
    return int(match.group(1)) if match else None


def read_crossval(folder: Path) -> CrossValidation:
    """A cross-validation output folder (see :mod:`axial_monai.crossval.runner`)."""
    folds = {}
    for path in sorted(folder.glob(CrossvalLayout.fold_name("*"))):
        number = _fold_number(path)
        if number is not None and RunLayout(path).evaluation().is_dir():
            folds[number] = read_evaluation(RunLayout(path).evaluation())
    if (folder / CrossvalLayout.PREDICTIONS).is_file():
        pooled = prediction_frame(folder / CrossvalLayout.PREDICTIONS)
    else:  # runs from before pooled predictions were written: join each fold's test predictions to its datalist
        frames = []
        for number in sorted(folds):
            datalist = _read_json(CrossvalLayout(folder).fold_file(number, RunLayout.DATALIST))
            joined = join_predictions(CrossvalLayout(folder).fold(number).predictions(), datalist["test"])
            frames.append(joined.assign(fold=number))
        if not frames:
            raise InputError(f"{folder} has no predictions.csv and no finished fold (fold-<i>/eval-test).")
        pooled = prediction_frame(pd.concat(frames, ignore_index=True))
    settings = _read_json(folder / CrossvalLayout.SETTINGS) if (folder / CrossvalLayout.SETTINGS).is_file() else {}
    summary = (
        _read_json(folder / CrossvalLayout.SUMMARY_JSON) if (folder / CrossvalLayout.SUMMARY_JSON).is_file() else {}
    )
    return CrossValidation(folder, settings, summary, pooled, folds)


def _explain_folder(folder: Path) -> Explanations | None:
    for candidate in (folder / "explain", folder):
        # scan ids may hold "/" (subject/session, a/T1): per-scan folders are found at any depth
        found = candidate.rglob("attention.csv") if candidate.is_dir() else []
        scans = sorted(p.parent for p in found if p.relative_to(candidate).parts[0] != "cohort")
        cohort = candidate / "cohort"
        if scans or cohort.is_dir():
            return Explanations(candidate, scans, cohort if cohort.is_dir() else None)
    return None


def find_run_contents(run_dir: str | Path) -> RunContents:
    """Everything a report can show from ``run_dir``.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a folder.
        ValueError: if it holds none of the layouts of the module docstring.
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"The run folder {folder} does not exist.")
    contents = RunContents(folder=folder)
    if (folder / CrossvalLayout.SETTINGS).is_file() or any(
        _fold_number(p) is not None for p in folder.glob(CrossvalLayout.fold_name("*"))
    ):
        contents.crossval = read_crossval(folder)
        for number in sorted(contents.crossval.folds):
            fold = CrossvalLayout(folder).fold(number).root
            if _logs(fold):
                contents.logs[f"fold {number}"] = fold
    contents.evaluations = [
        read_evaluation(p) for p in sorted(folder.glob(RunLayout.evaluation_name("*"))) if p.is_dir()
    ]
    if _logs(folder):
        contents.logs[folder.name] = folder
    contents.explanations = _explain_folder(folder)
    if not contents.kinds:
        raise InputError(
            f"{folder} has no evaluation (eval-*/metrics.json), training logs, cross-validation (crossval.json, "
            "fold-*) or explanations (explain/): is it the output_dir of a run?"
        )
    return contents
