"""k-fold cross-validation of the bundle over subjects, resumable, with optional double transfer learning.

Layout of ``output_dir``::

    crossval.json              settings of the run (k, seed, val_fraction, configs, overrides, init_from, ...)
                               and their hash ``settings_sha256`` (:func:`run_settings`)
    fold_assignment.csv        subject,fold for every subject of the table(s) the folds were built on
    fold-<i>/datalist.json     training / validation / test items (absolute image paths, subject, session, label)
    fold-<i>/models/model.pt   best checkpoint of the fold (the bundle config's ``ckpt_path``)
    fold-<i>/eval-test/        metrics.json|csv, predictions.csv of the fold's test split (``eval_dir``)
    fold-<i>/done.json         written last, atomically: the fold's scores, joined test predictions and settings
                               hash (a fold with it and the same hash is skipped on rerun)
    fold-<i>/explain/          with ``explain``: explanations of the fold's test scans (axial_monai.crossval.stability)
    explain_stability.csv      with ``explain``: Spearman of region rankings between the folds' models
    folds.csv                  one row per fold x level (scan, subject): n_scans, n_subjects, the six metrics
    predictions.csv            pooled out-of-fold predictions: fold, subject, session, image, label, prob_<class>, pred
    summary.csv, summary.json  mean and sd over folds of each metric per level; summary.json also has ``pooled``:
                               the metrics of the pooled predictions with 95 % bootstrap confidence intervals per level
                               (:func:`axial_monai.scores.level_intervals`)

Double transfer learning: with ``init_from`` (the output directory of an AD-vs-CN cross-validation), fold ``i``
starts from the checkpoint of fold ``i`` of that run (its ``ckpt_path``; bundle setting ``init_ckpt``: every weight
but the head is copied, the head is re-initialised, ``freeze`` is applied to the backbone), the fold assignment of
``<init_from>/fold_assignment.csv`` is reused, and the fold is refused if one of its test subjects is in the
training or validation split of ``<init_from>/fold-<i>/datalist.json``.

Where a fold's checkpoint and evaluation outputs are is read from the fold's parsed bundle config
(``ckpt_path``, ``eval_dir``; :func:`fold_outputs`), so a config that moves them still works.

Provenance: a rerun never mixes settings. The hash of a run's full settings (the merged bundle config with the
overrides, the runner's settings and, with ``init_from``, the source run's hash) is written to ``crossval.json``
and to every finished fold's ``done.json``. A rerun with other settings is refused before anything is written,
naming what changed, unless ``retrain_changed=True``: then every fold finished with other settings is trained
again and the old ``crossval.json`` is kept as ``crossval-<old hash>.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from ..configs import CONFIG_DIR
from ..errors import InputError, SettingsError
from ..io import write_csv, write_json
from ..layout import CrossvalLayout, RunLayout
from ..metrics import METRICS
from ..scores import LEVELS, join_predictions, level_intervals, level_scores, pool_predictions, summarize
from .leakage import check_no_leakage, check_transfer_leakage
from .splits import SPLITS, assign_folds, check_table, split_fold
from .stability import explain_fold, explanation_stability

__all__ = [
    "TRAIN_CONFIG",
    "RUNNER_KEYS",
    "fold_dir",
    "fold_settings",
    "fold_outputs",
    "run_settings",
    "bundle_config",
    "table_to_items",
    "run_fold",
    "run_cross_validation",
]

logger = logging.getLogger(__name__)

#: the bundle's shipped training config.
TRAIN_CONFIG = str(CONFIG_DIR / "train.json")
#: bundle settings the runner sets for every fold; they cannot be overridden.
RUNNER_KEYS = ("dataset_dir", "datalist", "output_dir", "init_ckpt", "eval_split")
_ASSIGNMENT, _SETTINGS, _DONE = CrossvalLayout.ASSIGNMENT, CrossvalLayout.SETTINGS, CrossvalLayout.DONE
_DATALIST = RunLayout.DATALIST


def fold_dir(output_dir: str | os.PathLike, fold: int) -> Path:
    """``<output_dir>/fold-<fold>``."""
    return Path(output_dir) / CrossvalLayout.fold_name(fold)


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
        raise InputError(f"Scans without image: {rows[:10]}.")
    paths = table["image"].map(lambda p: os.path.abspath(str(p)))
    duplicated = sorted(set(paths[paths.duplicated()]))
    if duplicated:
        raise InputError(f"Image paths listed more than once: {duplicated[:5]}.")
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise FileNotFoundError(f"{len(absent)} image(s) of the table do not exist: {absent[:5]}.")


def _read_source(run_dir: Path) -> tuple[dict[str, int], dict[str, Any]]:
    """The ``{subject: fold}`` of a previous cross-validation run and its settings (``crossval.json``, with ``k``)."""
    path = run_dir / _ASSIGNMENT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: init_from must be the output directory of a finished cross-validation run."
        )
    frame = pd.read_csv(path, dtype={"subject": str})
    if not {"subject", "fold"} <= set(frame.columns):
        raise InputError(f"{path} needs columns 'subject' and 'fold'; it has {list(frame.columns)}.")
    settings_path = run_dir / _SETTINGS
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    settings.setdefault("k", int(frame["fold"].max()) + 1)
    return dict(zip(frame["subject"], frame["fold"].astype(int))), settings


def fold_settings(
    overrides: Mapping[str, Any], out_dir: str | os.PathLike, datalist: str | os.PathLike, init_ckpt: str | None = None
) -> dict[str, Any]:
    """The bundle settings of one fold: ``overrides`` plus the :data:`RUNNER_KEYS` of the fold.

    ``output_dir`` and ``dataset_dir`` are the fold folder, ``datalist`` its split file (absolute image paths),
    ``init_ckpt`` the checkpoint to start from (or ``None``) and ``eval_split`` is ``"test"``.
    """
    return {
        **overrides,
        "output_dir": str(out_dir),
        "dataset_dir": str(out_dir),
        "datalist": str(datalist),
        "init_ckpt": init_ckpt,
        "eval_split": "test",
    }


def fold_outputs(config_files: Sequence[str], settings: Mapping[str, Any]) -> tuple[Path, Path]:
    """Where a fold's bundle config writes its best checkpoint and its test evaluation.

    Args:
        config_files: the bundle configs, merged in order.
        settings: the fold's settings (:func:`fold_settings`).

    Returns:
        ``(ckpt_path, eval_dir)`` as parsed from the config (``eval_dir`` holds ``predictions.csv``).
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(c) for c in config_files])
    parser.update(dict(settings))
    return Path(parser.get_parsed_content("ckpt_path")), Path(parser.get_parsed_content("eval_dir"))


def bundle_config(config_files: Sequence[str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The merged, unparsed bundle config of the folds: ``config_files`` in order, then ``overrides``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(c) for c in config_files])
    parser.update(dict(overrides))
    return parser.get()


def _sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def run_settings(
    config_files: Sequence[str],
    overrides: Mapping[str, Any],
    k: int,
    seed: int,
    val_fraction: float,
    positive: int,
    init_from: str | None = None,
    source_sha256: str | None = None,
) -> dict[str, Any]:
    """The settings that decide a fold's result, with their hash ``settings_sha256``.

    The hash covers the *content* of the merged bundle config (``config_files`` merged in order, then
    ``overrides``; ``bundle_config_sha256``), so an edited config file counts as a change and an override equal to
    the config's own value does not; the runner's ``k``, ``seed``, ``val_fraction``, ``positive``; and, for double
    transfer learning, the source run and its own hash. The data are not in it: a changed table changes the
    folds' splits, which the runner compares separately.
    """
    settings = {
        "k": int(k),
        "seed": int(seed),
        "val_fraction": float(val_fraction),
        "positive": int(positive),
        "config_files": [str(c) for c in config_files],
        "overrides": json.loads(json.dumps(dict(overrides), default=str)),
        "bundle_config_sha256": _sha256(bundle_config(config_files, overrides)),
        "init_from": init_from,
        "source_settings_sha256": source_sha256,
    }
    hashed = {key: value for key, value in settings.items() if key not in ("config_files", "overrides")}
    return {**settings, "settings_sha256": _sha256(hashed)}


def _refuse_changed(what: str, old: Mapping[str, Any], new: Mapping[str, Any], retrain_changed: bool) -> None:
    """Refuse to reuse ``what`` (a finished fold, the run's settings) made with other settings, unless asked to."""
    if not retrain_changed:
        raise SettingsError(
            f"{what} with other settings than this run ({_changes(old, new)}). A fold is never reused with other "
            "settings: use a new output_dir, or pass retrain_changed=True (command line: --retrain_changed) to train "
            "the changed folds again."
        )


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two :func:`run_settings`, e.g. ``"overrides.epochs: 1 -> 2; seed: 0 -> 1"``."""
    keys = ["k", "seed", "val_fraction", "positive", "init_from", "source_settings_sha256"]
    changed = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in keys if old.get(key) != new.get(key)]
    before, after = old.get("overrides") or {}, new.get("overrides") or {}
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            changed.append(f"overrides.{key}: {before.get(key, '(unset)')!r} -> {after.get(key, '(unset)')!r}")
    if old.get("bundle_config_sha256") != new.get("bundle_config_sha256") and not changed:
        changed.append(f"the content of the bundle config(s) {new.get('config_files')}")
    if "settings_sha256" not in old:
        changed.append("(the earlier run recorded no settings hash)")
    return "; ".join(changed) or "the settings hash"


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

    The fold's settings (:func:`fold_settings`) are set over ``overrides``; the config writes its ``ckpt_path``
    and ``eval_dir/{metrics.json,predictions.csv}`` (:func:`fold_outputs`).
    """
    from monai.bundle import ConfigWorkflow

    settings = fold_settings(overrides, out_dir, datalist, init_ckpt)
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
    retrain_changed: bool = False,
    explain: Mapping[str, Any] | None = None,
    folds_from: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Subject-wise k-fold cross-validation of the bundle on a labelled scan table (see the module docstring).

    Args:
        table: one row per scan with ``subject``, ``session``, ``image``, ``label`` (e.g.
            :func:`axial_monai.data.clinica.clinica_task_table`).
        output_dir: where every fold and the summary tables go; a rerun with the same settings skips the folds
            that have ``done.json``.
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
        retrain_changed: when ``output_dir`` holds a run with other settings (:func:`run_settings`), train its
            finished folds again with the new ones instead of refusing.
        explain: if not None, explain each fold's test scans with its model (``explain.json`` settings such as
            ``{"methods": ["attention", "smoothgrad"]}``) and write ``explain_stability.csv``.
        folds_from: output directory of another cross-validation whose fold assignment is reused, without
            transfer (e.g. the ImageNet-only run beside a double-transfer run, on the same folds).

    Returns:
        the summary: ``level``, ``metric``, ``mean``, ``sd``, ``n_folds``.

    Raises:
        SettingsError: bad arguments; ``output_dir`` holding a run with other settings (unless
            ``retrain_changed``); or (with ``init_from``) a test subject seen by the source model of the same fold.
        InputError: a table without the needed columns, or subject leakage between the splits of a fold.
        FileNotFoundError: missing images, configs, or ``init_from`` files.
        RuntimeError: a finished fold whose datalist differs from the one computed now, or a fold that did not
            write its predictions.
    """
    overrides = dict(overrides or {})
    taken = [key for key in RUNNER_KEYS if key in overrides]
    if taken:
        raise SettingsError(f"overrides may not set {taken}: the runner sets them for every fold.")
    config_files = (
        [str(config_files)] if isinstance(config_files, str | os.PathLike) else [str(c) for c in config_files]
    )
    missing_configs = [c for c in config_files if not os.path.isfile(c)]
    if missing_configs:
        raise FileNotFoundError(f"Config file(s) {missing_configs} do not exist.")
    positive = int(overrides.get("positive_class", 1) if positive is None else positive)
    _check_scans(table)
    out = Path(output_dir).resolve()

    fixed, source, source_configs, source_overrides, source_sha256 = None, None, config_files, overrides, None
    if init_from is not None:
        source = Path(init_from).resolve()
        fixed, source_settings = _read_source(source)
        if int(source_settings["k"]) != k:
            raise SettingsError(f"k={k}, but the run to transfer from ({source}) has {source_settings['k']} folds.")
        if all(os.path.isfile(c) for c in source_settings.get("config_files") or ()):
            source_configs = source_settings["config_files"]
            source_overrides = source_settings.get("overrides") or {}
        source_sha256 = source_settings.get("settings_sha256")
    elif folds_from is not None:
        fixed, other = _read_source(Path(folds_from).resolve())
        if int(other["k"]) != k:
            raise SettingsError(f"k={k}, but the run whose folds are reused ({folds_from}) has {other['k']} folds.")
    settings = run_settings(
        config_files, overrides, k, seed, val_fraction, positive, None if source is None else str(source), source_sha256
    )
    digest = settings["settings_sha256"]
    folds = assign_folds([table, *assign_with], k, seed, fixed=fixed)

    # every fold's split, checked for leakage and against the finished folds, before anything is written
    datalists, retrain = [], []
    for fold in range(k):
        splits = split_fold(table, folds, fold, val_fraction, seed)
        check_no_leakage(splits, fold=fold)
        datalist = {name: table_to_items(splits[name]) for name in SPLITS}
        datalists.append(datalist)
        directory = fold_dir(out, fold)
        datalist_path, done_path = directory / _DATALIST, directory / _DONE
        if not done_path.is_file():
            continue
        done = json.loads(done_path.read_text())
        if done.get("settings_sha256") != digest:
            _refuse_changed(f"Fold {fold} of {out} was trained", done.get("settings") or {}, settings, retrain_changed)
            retrain.append(fold)
        elif not datalist_path.is_file() or json.loads(datalist_path.read_text()) != datalist:
            raise RuntimeError(
                f"{done_path} exists, but {datalist_path} differs from this run's split of fold {fold} (other "
                "table, k, seed or val_fraction?). Use a new output_dir, or delete the fold to retrain it."
            )

    out.mkdir(parents=True, exist_ok=True)
    settings_path = out / _SETTINGS
    if settings_path.is_file():
        previous = json.loads(settings_path.read_text())
        if previous.get("settings_sha256") != digest:
            _refuse_changed(f"{settings_path} holds a run", previous, settings, retrain_changed)
            kept = out / f"crossval-{str(previous.get('settings_sha256'))[:12]}.json"
            settings_path.replace(kept)
            logger.warning(
                f"Settings changed ({_changes(previous, settings)}): folds {retrain} are trained again; "
                f"the earlier settings are kept in {kept}."
            )
    write_csv(out / _ASSIGNMENT, folds.reset_index())
    write_json(settings_path, {**settings, "n_scans": int(len(table)), "n_subjects": int(table["subject"].nunique())})

    rows, tested = [], []
    bar = tqdm(range(k), desc="cross-validation", unit="fold", disable=not progress)
    for fold in bar:
        datalist = datalists[fold]
        directory = fold_dir(out, fold)
        datalist_path, done_path = directory / _DATALIST, directory / _DONE
        if fold in retrain:
            done_path.unlink()  # a fold that is being retrained is not finished
        if done_path.is_file():
            bar.set_postfix_str(f"fold {fold} done, skipped")
            record = json.loads(done_path.read_text())
            rows += _fold_rows(fold, record["scores"])
            if "predictions" in record:
                tested.append((fold, pd.DataFrame(record["predictions"])))
            else:  # a fold finished before done.json kept its predictions
                tested.append((fold, join_predictions(RunLayout(directory).predictions(), datalist["test"])))
            continue
        init_ckpt = None
        if source is not None:
            check_transfer_leakage(
                {item["subject"] for item in datalist["test"]}, fold_dir(source, fold) / _DATALIST, fold
            )
            source_fold = fold_dir(source, fold)
            source_ckpt, _ = fold_outputs(
                source_configs, fold_settings(source_overrides, source_fold, source_fold / _DATALIST)
            )
            init_ckpt = str(source_ckpt)
            if not os.path.isfile(init_ckpt):
                raise FileNotFoundError(f"The checkpoint {init_ckpt} of fold {fold} of {source} does not exist.")
        write_json(datalist_path, datalist, indent=1)
        bar.set_postfix_str(f"fold {fold}: training")
        logger.info(f"Fold {fold}: " + ", ".join(f"{len(datalist[n])} {n} scans" for n in SPLITS))
        run_fold(config_files, directory, datalist_path, overrides, init_ckpt, meta_file, logging_file)
        _, eval_dir = fold_outputs(config_files, fold_settings(overrides, directory, datalist_path, init_ckpt))
        joined = join_predictions(eval_dir / RunLayout.PREDICTIONS, datalist["test"])
        scores = level_scores(joined, positive)
        tested.append((fold, joined))
        record = {
            "fold": fold,
            "init_ckpt": init_ckpt,
            "positive": positive,
            "scores": scores,
            "settings_sha256": digest,
            "settings": settings,
            "predictions": joined.to_dict("records"),  # the fold's share of the pooled predictions.csv
        }
        write_json(done_path, record)
        bar.set_postfix_str(f"fold {fold}: done")
        rows += _fold_rows(fold, scores)

    if explain is not None:
        for fold in range(k):
            explain_fold(fold_dir(out, fold), config_files, overrides, explain, meta_file, logging_file)
        explanation_stability(out, list(range(k)))

    table_folds = pd.DataFrame(rows, columns=["fold", "level", "n_scans", "n_subjects", *METRICS])
    write_csv(out / CrossvalLayout.FOLDS, table_folds)
    summary = summarize(table_folds)
    write_csv(out / CrossvalLayout.SUMMARY, summary)
    nested = {
        level: {r.metric: {"mean": r.mean, "sd": r.sd, "n_folds": r.n_folds} for r in part.itertuples(index=False)}
        for level, part in summary.groupby("level", sort=False)
    }
    pooled = pool_predictions(tested)
    write_csv(out / CrossvalLayout.PREDICTIONS, pooled)
    intervals = level_intervals(pooled, positive, seed=seed)
    write_json(out / CrossvalLayout.SUMMARY_JSON, {"k": k, "levels": nested, "pooled": intervals})
    return summary
