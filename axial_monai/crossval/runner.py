"""k-fold cross-validation of the bundle over subjects, resumable, with optional double transfer learning.

Layout of ``output_dir``::

    crossval.json              settings of the run (k, seed, val_fraction, configs, overrides, init_from)
    fold_assignment.csv        subject,fold for every subject of the table(s) the folds were built on
    fold-<i>/datalist.json     training / validation / test items (absolute image paths, subject, session, label)
    fold-<i>/models/model.pt   best checkpoint of the fold (the bundle's train config)
    fold-<i>/eval-test/        metrics.json|csv, predictions.csv of the fold's test split
    fold-<i>/done.json         written last, atomically: the fold's scores (a fold with it is skipped on rerun)
    fold-<i>/explain/          with ``explain``: explanations of the fold's test scans (axial_monai.crossval.stability)
    explain_stability.csv      with ``explain``: Spearman of region rankings between the folds' models
    folds.csv                  one row per fold x level (scan, subject): n_scans, n_subjects, the six metrics
    summary.csv, summary.json  mean and sd over folds of each metric per level

Double transfer learning: with ``init_from`` (the output directory of an AD-vs-CN cross-validation), fold ``i``
starts from ``<init_from>/fold-<i>/models/model.pt`` (bundle setting ``init_ckpt``: every weight but the head is
copied, the head is re-initialised, ``freeze`` is applied to the backbone), the fold assignment of
``<init_from>/fold_assignment.csv`` is reused, and the fold is refused if one of its test subjects is in the
training or validation split of ``<init_from>/fold-<i>/datalist.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from axial_monai.crossval.leakage import check_no_leakage, check_transfer_leakage
from axial_monai.crossval.scores import LEVELS, join_predictions, level_scores, summarize
from axial_monai.crossval.splits import SPLITS, assign_folds, check_table, split_fold
from axial_monai.crossval.stability import explain_fold, explanation_stability
from axial_monai.metrics import METRICS
from axial_monai.utils import write_text_atomic

__all__ = ["TRAIN_CONFIG", "RUNNER_KEYS", "fold_dir", "table_to_items", "run_fold", "run_cross_validation"]

logger = logging.getLogger(__name__)

#: the bundle's training config (repository checkout / editable install).
TRAIN_CONFIG = str(Path(__file__).resolve().parents[2] / "bundle" / "configs" / "train.json")
#: bundle settings the runner sets for every fold; they cannot be overridden.
RUNNER_KEYS = ("dataset_dir", "datalist", "output_dir", "init_ckpt", "eval_split")
_ASSIGNMENT, _SETTINGS, _DATALIST, _DONE = "fold_assignment.csv", "crossval.json", "datalist.json", "done.json"


def fold_dir(output_dir: str | os.PathLike, fold: int) -> Path:
    """``<output_dir>/fold-<fold>``."""
    return Path(output_dir) / f"fold-{fold}"


def _json(value: Any) -> str:
    """JSON text with NaN written as null."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), indent=2, default=str) + "\n"


def table_to_items(table: pd.DataFrame) -> list[dict]:
    """Datalist items of labelled scans: ``image`` (absolute), ``label``, ``subject``, ``session``
    (+ ``diagnosis`` where the table has it)."""
    items = []
    for row in table.itertuples(index=False):
        item = {
            "image": os.path.abspath(str(row.image)),
            "label": int(row.label),
            "subject": str(row.subject),
            "session": str(row.session),
        }
        if "diagnosis" in table.columns and pd.notna(row.diagnosis):
            item["diagnosis"] = str(row.diagnosis)
        items.append(item)
    return items


def _check_scans(table: pd.DataFrame) -> None:
    check_table(table, ("subject", "session", "image", "label"))
    if table["image"].isna().any():
        rows = table.loc[table["image"].isna(), ["subject", "session"]].astype(str).agg("/".join, axis=1).tolist()
        raise ValueError(f"Scans without image: {rows[:10]}.")
    paths = table["image"].map(lambda p: os.path.abspath(str(p)))
    duplicated = sorted(set(paths[paths.duplicated()]))
    if duplicated:
        raise ValueError(f"Image paths listed more than once: {duplicated[:5]}.")
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise FileNotFoundError(f"{len(absent)} image(s) of the table do not exist: {absent[:5]}.")


def _read_assignment(run_dir: Path) -> tuple[dict[str, int], int]:
    """The ``{subject: fold}`` of a previous cross-validation run and its k."""
    path = run_dir / _ASSIGNMENT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: init_from must be the output directory of a finished cross-validation run."
        )
    frame = pd.read_csv(path, dtype={"subject": str})
    if not {"subject", "fold"} <= set(frame.columns):
        raise ValueError(f"{path} needs columns 'subject' and 'fold'; it has {list(frame.columns)}.")
    settings = run_dir / _SETTINGS
    k = json.loads(settings.read_text())["k"] if settings.is_file() else int(frame["fold"].max()) + 1
    return dict(zip(frame["subject"], frame["fold"].astype(int))), int(k)


def run_fold(
    config_files: Sequence[str],
    out_dir: Path,
    datalist: Path,
    overrides: Mapping[str, Any],
    init_ckpt: str | None = None,
    meta_file: str | None = None,
    logging_file: str | None = None,
) -> None:
    """Train and test one fold: the bundle's train config through ``ConfigWorkflow`` (initialize, run, finalize).

    The fold's ``output_dir``, ``dataset_dir``, ``datalist``, ``init_ckpt`` and ``eval_split="test"`` are set over
    ``overrides``; the config writes ``models/model.pt`` and ``eval-test/{metrics.json,predictions.csv}``.
    """
    from monai.bundle import ConfigWorkflow

    settings = dict(overrides)
    settings.update(
        output_dir=str(out_dir),
        dataset_dir=str(out_dir),
        datalist=str(datalist),
        init_ckpt=init_ckpt,
        eval_split="test",
    )
    workflow = ConfigWorkflow(
        config_file=list(config_files) if len(config_files) > 1 else config_files[0],
        meta_file=meta_file,
        logging_file=logging_file,
        workflow_type="train",
        **settings,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def _fold_rows(fold: int, scores: Mapping[str, Mapping[str, float]]) -> list[dict]:
    return [{"fold": fold, "level": level, **scores[level]} for level in LEVELS]


def run_cross_validation(
    table: pd.DataFrame,
    output_dir: str | os.PathLike,
    k: int = 5,
    seed: int = 0,
    config_files: str | Sequence[str] = (TRAIN_CONFIG,),
    overrides: Mapping[str, Any] | None = None,
    init_from: str | os.PathLike | None = None,
    assign_with: Sequence[pd.DataFrame] = (),
    val_fraction: float = 0.2,
    positive: int | None = None,
    meta_file: str | None = None,
    logging_file: str | None = None,
    progress: bool = True,
    explain: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Subject-wise k-fold cross-validation of the bundle on a labelled scan table (see the module docstring).

    Args:
        table: one row per scan with ``subject``, ``session``, ``image``, ``label`` (e.g.
            :func:`axial_monai.data.clinica.clinica_task_table`).
        output_dir: where every fold and the summary tables go; a rerun skips the folds that have ``done.json``.
        k: number of folds.
        seed: seed of the fold assignment and of the validation splits (the bundle's own ``seed`` is separate).
        config_files: bundle config(s) merged in order (default ``bundle/configs/train.json``).
        overrides: bundle settings, e.g. ``{"epochs": 100, "class_names": ["sMCI", "pMCI"]}``; not those in
            ``RUNNER_KEYS``.
        init_from: output directory of a previous cross-validation (AD vs CN) to start each fold from the same
            fold's checkpoint (double transfer learning); its fold assignment is reused.
        assign_with: more tables whose subjects take part in the fold assignment (e.g. the sMCI-vs-pMCI table
            when running AD vs CN), so that a subject in both tasks lands in the same fold.
        val_fraction: share of a fold's training subjects used for validation.
        positive: index of the positive class for the scores (default: ``overrides["positive_class"]`` or 1).
        meta_file, logging_file: passed to ``ConfigWorkflow`` (default: next to the first config).
        progress: show a progress bar over folds.
        explain: if not None, explain each fold's test scans with its model (``explain.json`` settings such as
            ``{"methods": ["attention", "smoothgrad"]}``) and write ``explain_stability.csv``.

    Returns:
        the summary: ``level``, ``metric``, ``mean``, ``sd``, ``n_folds``.

    Raises:
        ValueError: bad arguments, a table without the needed columns, subject leakage between the splits of a
            fold, or (with ``init_from``) a test subject seen by the source model of the same fold.
        FileNotFoundError: missing images, configs, or ``init_from`` files.
        RuntimeError: a finished fold whose datalist differs from the one computed now, or a fold that did not
            write its predictions.
    """
    overrides = dict(overrides or {})
    taken = [key for key in RUNNER_KEYS if key in overrides]
    if taken:
        raise ValueError(f"overrides may not set {taken}: the runner sets them for every fold.")
    config_files = (
        [str(config_files)] if isinstance(config_files, str | os.PathLike) else [str(c) for c in config_files]
    )
    missing_configs = [c for c in config_files if not os.path.isfile(c)]
    if missing_configs:
        raise FileNotFoundError(f"Config file(s) {missing_configs} do not exist.")
    positive = int(overrides.get("positive_class", 1) if positive is None else positive)
    _check_scans(table)
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)

    fixed, source = None, None
    if init_from is not None:
        source = Path(init_from).resolve()
        fixed, source_k = _read_assignment(source)
        if source_k != k:
            raise ValueError(f"k={k}, but the run to transfer from ({source}) has {source_k} folds.")
    folds = assign_folds([table, *assign_with], k, seed, fixed=fixed)
    assignment = folds.reset_index()
    write_text_atomic(out / _ASSIGNMENT, assignment.to_csv(index=False))
    settings = {
        "k": k,
        "seed": seed,
        "val_fraction": val_fraction,
        "config_files": config_files,
        "overrides": overrides,
        "init_from": None if source is None else str(source),
        "n_scans": int(len(table)),
        "n_subjects": int(table["subject"].nunique()),
    }
    write_text_atomic(out / _SETTINGS, _json(settings))

    rows = []
    bar = tqdm(range(k), desc="cross-validation", unit="fold", disable=not progress)
    for fold in bar:
        splits = split_fold(table, folds, fold, val_fraction, seed)
        check_no_leakage(splits, fold=fold)
        datalist = {name: table_to_items(splits[name]) for name in SPLITS}
        directory = fold_dir(out, fold)
        datalist_path, done_path = directory / _DATALIST, directory / _DONE
        if done_path.is_file():
            if not datalist_path.is_file() or json.loads(datalist_path.read_text()) != datalist:
                raise RuntimeError(
                    f"{done_path} exists, but {datalist_path} differs from this run's split of fold {fold} (other "
                    "table, k, seed or val_fraction?). Use a new output_dir, or delete the fold to retrain it."
                )
            bar.set_postfix_str(f"fold {fold} done, skipped")
            rows += _fold_rows(fold, json.loads(done_path.read_text())["scores"])
            continue
        init_ckpt = None
        if source is not None:
            check_transfer_leakage(
                {item["subject"] for item in datalist["test"]}, fold_dir(source, fold) / _DATALIST, fold
            )
            init_ckpt = str(fold_dir(source, fold) / "models" / "model.pt")
            if not os.path.isfile(init_ckpt):
                raise FileNotFoundError(f"The checkpoint {init_ckpt} of fold {fold} of {source} does not exist.")
        write_text_atomic(datalist_path, json.dumps(datalist, indent=1) + "\n")
        bar.set_postfix_str(f"fold {fold}: training")
        logger.info(f"Fold {fold}: " + ", ".join(f"{len(datalist[n])} {n} scans" for n in SPLITS))
        run_fold(config_files, directory, datalist_path, overrides, init_ckpt, meta_file, logging_file)
        joined = join_predictions(directory / "eval-test" / "predictions.csv", datalist["test"])
        scores = level_scores(joined, positive)
        record = {"fold": fold, "init_ckpt": init_ckpt, "positive": positive, "scores": scores}
        write_text_atomic(done_path, _json(record))
        bar.set_postfix_str(f"fold {fold}: done")
        rows += _fold_rows(fold, scores)

    if explain is not None:
        for fold in range(k):
            explain_fold(fold_dir(out, fold), config_files, overrides, explain, meta_file, logging_file)
        explanation_stability(out, list(range(k)))

    table_folds = pd.DataFrame(rows, columns=["fold", "level", "n_scans", "n_subjects", *METRICS])
    write_text_atomic(out / "folds.csv", table_folds.to_csv(index=False))
    summary = summarize(table_folds)
    write_text_atomic(out / "summary.csv", summary.to_csv(index=False))
    nested = {
        level: {r.metric: {"mean": r.mean, "sd": r.sd, "n_folds": r.n_folds} for r in part.itertuples(index=False)}
        for level, part in summary.groupby("level", sort=False)
    }
    write_text_atomic(out / "summary.json", _json({"k": k, "levels": nested}))
    return summary
