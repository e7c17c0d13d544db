"""Stability of explanations across cross-validation folds: explain each fold's test scans, compare the rankings.

Each fold's model explains its own held-out (test) scans through the bundle's ``inference.json`` + ``explain.json``
(outputs in ``fold-<i>/explain/``, see :mod:`axial_monai.explain.writer`). Folds see different subjects, so their
scans differ; what should agree, if the explanations describe the disease rather than the fold, is *which atlas
regions* carry the relevance. ``explain_stability.csv`` holds, for every pair of folds and every cohort map, the
Spearman correlation of the regions' relevance mass (``cohort/relevance_<map>_all.csv``) over the regions that
have relevance in either fold (regions outside what the networks read are 0 in both and would only inflate it).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import spearmanr

from ..configs import CONFIG_DIR
from ..io import write_csv
from ..layout import CrossvalLayout, RunLayout

__all__ = ["STABILITY_FILE", "explain_config_files", "explain_fold", "fold_relevance", "explanation_stability"]

logger = logging.getLogger(__name__)

#: name of the table written into the cross-validation output directory.
STABILITY_FILE = "explain_stability.csv"


def explain_config_files(train_config_files: Sequence[str]) -> list[str]:
    """The explanation configs matching a fold's training configs.

    ``inference.json`` (next to the first training config, the bundle's ``train.json``), then the training's
    override files after the first (e.g. ``paper.json``, ``triplanar.json``: they set the network), then
    ``explain.json``.
    """
    first = Path(train_config_files[0])
    folder = first.parent if (first.parent / "inference.json").is_file() else CONFIG_DIR
    return [str(folder / "inference.json"), *map(str, train_config_files[1:]), str(folder / "explain.json")]


def explain_fold(
    fold_dir: str | os.PathLike,
    train_config_files: Sequence[str],
    overrides: Mapping[str, Any],
    explain: Mapping[str, Any] | None = None,
    meta_file: str | None = None,
    logging_file: str | None = None,
) -> Path:
    """Explain the test scans of one finished fold with its own checkpoint (skipped if already done).

    Args:
        fold_dir: ``<output_dir>/fold-<i>`` with ``datalist.json`` and ``models/model.pt``.
        train_config_files: the fold's training configs (see :func:`explain_config_files`).
        overrides: the fold's bundle settings (network settings such as ``num_slices`` must match the training).
        explain: extra settings of ``explain.json`` (``methods``, ``atlas``, ...).
        meta_file, logging_file: passed to ``ConfigWorkflow``.

    Returns:
        the fold's ``explain`` folder.
    """
    from monai.bundle import ConfigWorkflow

    fold_dir = Path(fold_dir)
    out = fold_dir / "explain"
    if (out / "cohort" / "explanations.csv").is_file():
        return out
    settings = {**dict(overrides), **dict(explain or {})}
    settings.update(
        output_dir=str(fold_dir),
        input=str(fold_dir / RunLayout.DATALIST),
        datalist_key="test",
        ckpt_path=str(RunLayout(fold_dir).model),
        # the fold's own test scans, checked as its training checked them (grid; brain extraction is the
        # cross-validation's input contract, not re-tested here)
        input_check="$@run_settings.input_check(brain_extracted=False)",
    )
    configs = explain_config_files(train_config_files)
    workflow = ConfigWorkflow(
        config_file=configs, meta_file=meta_file, logging_file=logging_file, workflow_type="infer", **settings
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return out


def fold_relevance(explain_dir: str | os.PathLike) -> dict[str, pd.Series]:
    """map name -> relevance mass per region (``cohort/relevance_<map>_all.csv``) of one fold."""
    tables = {}
    for path in sorted((Path(explain_dir) / "cohort").glob("relevance_*_all.csv")):
        name = path.name.removeprefix("relevance_").removesuffix("_all.csv")
        table = pd.read_csv(path)
        tables[name] = table.groupby("name")["mass"].sum()
    return tables


def explanation_stability(output_dir: str | os.PathLike, folds: Sequence[int]) -> pd.DataFrame:
    """Spearman correlation of the region rankings between every pair of folds; writes ``explain_stability.csv``.

    Args:
        output_dir: the cross-validation output directory (``fold-<i>/explain/cohort/relevance_*_all.csv``).
        folds: the folds to compare.

    Returns:
        one row per pair and map: ``map``, ``fold_a``, ``fold_b``, ``spearman``, ``n_regions`` (regions with
        relevance in either fold), followed by one ``mean`` row per map (``fold_a`` = ``fold_b`` = ``"mean"``).
    """
    output_dir = Path(output_dir)
    relevance = {fold: fold_relevance(CrossvalLayout(output_dir).fold_file(fold, RunLayout.EXPLAIN)) for fold in folds}
    maps = sorted(set.intersection(*(set(r) for r in relevance.values()))) if relevance else []
    rows = []
    for name in maps:
        pairs = []
        for a, b in itertools.combinations(folds, 2):
            joint = pd.concat([relevance[a][name], relevance[b][name]], axis=1).fillna(0.0)
            joint = joint[(joint > 0).any(axis=1)]
            rho = float(spearmanr(joint.iloc[:, 0], joint.iloc[:, 1]).statistic) if len(joint) > 2 else float("nan")
            pairs.append({"map": name, "fold_a": a, "fold_b": b, "spearman": rho, "n_regions": len(joint)})
        rows += pairs
        if pairs:
            values = pd.Series([p["spearman"] for p in pairs])
            rows.append({"map": name, "fold_a": "mean", "fold_b": "mean", "spearman": values.mean(), "n_regions": None})
    table = pd.DataFrame(rows, columns=["map", "fold_a", "fold_b", "spearman", "n_regions"])
    write_csv(output_dir / STABILITY_FILE, table)
    for row in table[table["fold_a"] == "mean"].itertuples(index=False):
        logger.info(f"explanation stability of {row.map}: mean Spearman {row.spearman:.3f} over fold pairs")
    return table
