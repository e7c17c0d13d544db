"""Command line of the cross-validation.

Usage (``axial-monai-crossval`` is the same command; ``-h``/``--help`` lists the options)::

    python -m axial_monai.crossval BIDS_DIR OUT_DIR [--task ADvsCN|pMCIvsSMCI] [--derivatives_dir DIR] [--k 5]
        [--seed 0] [--horizon 36] [--init_from OUT_ADCN] [--overrides '{"epochs": 100}']
        [--config_files "['bundle/configs/train.json','bundle/configs/paper.json']"] [--retrain_changed]

The labelled scans come from the Clinica tables of BIDS_DIR (:func:`axial_monai.data.clinica.clinica_task_table`,
images from ``--derivatives_dir``, the preprocessing output). Folds are assigned on the union of the subjects of
both tasks (``--nojoint`` to use this task's subjects only), so that the AD-vs-CN and the sMCI-vs-pMCI runs share
folds; ``class_names`` defaults to the task's (``["CN", "AD"]`` or ``["sMCI", "pMCI"]``). A rerun in the same
OUT_DIR with other settings is refused, naming what changed; ``--retrain_changed`` trains the changed folds again.

Double transfer learning (the paper's sMCI vs pMCI)::

    python -m axial_monai.crossval /data/bids runs/cv-adcn --derivatives_dir /data/out \\
        --config_files "['bundle/configs/train.json','bundle/configs/paper.json']"
    python -m axial_monai.crossval /data/bids runs/cv-mci --task pMCIvsSMCI --derivatives_dir /data/out \\
        --config_files "['bundle/configs/train.json','bundle/configs/paper.json']" --init_from runs/cv-adcn

Prints the mean +- sd over folds per metric and level; the tables are in OUT_DIR (see
:mod:`axial_monai.crossval.runner`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from ..commandline import run_fire
from ..data.clinica import TASKS, splittable_scans
from ..errors import SettingsError
from ..log import setup_cli_logging
from .runner import TRAIN_CONFIG, run_cross_validation

__all__ = ["CLASS_NAMES", "crossval_command", "main"]

#: default class names (label order) per task.
CLASS_NAMES = {"ADvsCN": ["CN", "AD"], "pMCIvsSMCI": ["sMCI", "pMCI"]}


def _parse_overrides(overrides: dict | str | None) -> dict[str, Any]:
    if overrides is None or overrides == "":
        return {}
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except ValueError as err:
            raise SettingsError(
                f"--overrides must be a JSON object such as '{{\"epochs\": 100}}', not {overrides!r} ({err})."
            ) from None
    if not isinstance(overrides, dict):
        raise SettingsError(f"--overrides must be a JSON object such as '{{\"epochs\": 100}}', not {overrides!r}.")
    return dict(overrides)


def crossval_command(
    bids_dir: str,
    output_dir: str,
    task: str = "ADvsCN",
    derivatives_dir: str | None = None,
    k: int = 5,
    seed: int = 0,
    horizon: int = 36,
    space: str | None = None,
    init_from: str | None = None,
    overrides: dict | str | None = None,
    config_files: str | Sequence[str] | None = None,
    val_fraction: float = 0.2,
    missing_image: str = "raise",
    joint: bool = True,
    progress: bool = True,
    diagnosis_map: dict | str | None = None,
    raw_images: bool = False,
    retrain_changed: bool = False,
    explain: dict | str | bool | None = None,
    include_qc_failed: bool = False,
) -> dict[str, Any]:
    """Cross-validate the bundle on the Clinica BIDS tree BIDS_DIR for TASK; outputs go to OUTPUT_DIR.

    Args:
        bids_dir: Clinica BIDS root (participants.tsv, sub-X/sub-X_sessions.tsv).
        output_dir: output directory (a rerun skips finished folds).
        task: ADvsCN or pMCIvsSMCI.
        derivatives_dir: preprocessing output with the *_desc-preproc_T1w.nii.gz images (required unless
            --raw_images).
        k: number of folds.
        seed: seed of the fold assignment and validation splits.
        horizon: months of follow-up for pMCIvsSMCI.
        space: template label of the preprocessed images, if there are several.
        init_from: output directory of the AD-vs-CN cross-validation to transfer from (same folds).
        overrides: bundle settings as a JSON object, e.g. '{"epochs": 100, "freeze": 0.5}'.
        config_files: bundle config or list of configs merged in order (default bundle/configs/train.json).
        val_fraction: share of each fold's training subjects used for validation.
        missing_image: "raise" or "drop" for labelled sessions without image.
        joint: assign folds on the union of the subjects of both tasks (--nojoint: this task's subjects only).
        progress: show a progress bar.
        diagnosis_map: other diagnosis spellings, as JSON '{"Dementia": "AD"}' or adnimerge.
        raw_images: train on the *_T1w images of BIDS_DIR itself (only if they are preprocessed already: one
            template grid, brain-extracted).
        retrain_changed: train again the finished folds of OUTPUT_DIR whose settings differ (default: refuse).
        explain: explain each fold's test scans and write explain_stability.csv: ``--explain`` for the defaults
            of explain.json, or a JSON object of its settings, e.g. '{"methods": ["attention", "smoothgrad"]}'.
        include_qc_failed: keep the scans that the preprocessing's QC gate failed (default: left out, and counted).

    Returns:
        ``{"output_dir", "summary", level: {metric: "mean ± sd"}}``.
    """
    if task not in TASKS:
        raise SettingsError(f"task must be one of {list(TASKS)}, not {task!r}.")
    if derivatives_dir is None and not raw_images:
        raise SettingsError(
            f"No --derivatives_dir: the cross-validation would train on the raw T1w scans of {bids_dir} (each on its "
            f"own grid, with skull); preprocess first: python -m axial_monai.preprocess {bids_dir} OUT, then pass "
            "--derivatives_dir OUT/derivatives/axial-monai (--raw_images only if the BIDS images are preprocessed)."
        )
    settings = _parse_overrides(overrides)
    settings.setdefault("class_names", CLASS_NAMES[task])
    table, assign_with, told = splittable_scans(
        bids_dir, task, derivatives_dir, horizon, space, missing_image, diagnosis_map, include_qc_failed, joint
    )
    print(told, end="")
    summary = run_cross_validation(
        table,
        output_dir,
        k=k,
        seed=seed,
        config_files=(TRAIN_CONFIG,) if config_files is None else config_files,
        overrides=settings,
        init_from=init_from,
        assign_with=assign_with,
        val_fraction=val_fraction,
        progress=progress,
        retrain_changed=retrain_changed,
        explain=None if explain in (None, False) else ({} if explain is True else _parse_overrides(explain)),
    )
    result: dict[str, Any] = {"output_dir": str(output_dir), "summary": f"{output_dir}/summary.csv"}
    for row in summary.itertuples(index=False):
        result.setdefault(row.level, {})[row.metric] = f"{row.mean:.3f} ± {row.sd:.3f}"
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    setup_cli_logging()
    # run_fire answers -h/--help itself: fire alone would read -h as --horizon
    run_fire(crossval_command, sys.argv[1:] if argv is None else argv, "axial-monai-crossval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
