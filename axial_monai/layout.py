"""Every file name of a run folder, a cross-validation folder and an exported bundle, in one place.

A run folder (a bundle run's ``output_dir``)::

    models/model.pt              the checkpoint: weights and run settings (:mod:`axial_monai.run.checkpoint`)
    eval-<split>/                metrics.json|csv, predictions.csv of an evaluation (``eval-test``: after training)
    inference/                   predictions.csv and skipped.csv of ``run inferring``
    explain/<scan>/, explain/cohort/explanations.csv   what ``run explaining`` wrote

A cross-validation folder (:mod:`axial_monai.crossval.runner` says what each file holds)::

    crossval.json, fold_assignment.csv, folds.csv, predictions.csv, summary.csv, summary.json
    fold-<i>/                    a run folder, with datalist.json and done.json

The cache (:func:`default_cache_root`) holds what is kept by content: ``volumes/`` (the bundle's volume cache),
``predict/`` (preprocessed scans of ``axial-monai predict``), ``brain_masks/`` (deepbet's masks, of the
preprocessing), demo cohorts; any of them can be deleted at any time.

Any other file name a module writes is its own business; one that another module reads lives here.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SETTINGS_FILES", "BundleLayout", "CrossvalLayout", "RunLayout", "default_cache_root"]

#: the volumes of the run settings, as the files beside ``run_settings.json``.
SETTINGS_FILES = {"template": "template.nii.gz", "mask": "brain_mask.nii.gz", "controls": "control_mean.nii.gz"}


def default_cache_root() -> Path:
    """``$AXIAL_MONAI_CACHE`` if set, else ``~/.cache/axial_monai``: the root of every cache of axial-monai (volumes,
    demo cohorts, preprocessed scans of ``axial-monai predict``, brain masks of the preprocessing)."""
    return Path(os.environ.get("AXIAL_MONAI_CACHE") or "~/.cache/axial_monai").expanduser()


class FolderLayout:
    """Paths below one folder, ``root``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)


class RunLayout(FolderLayout):
    """The files of one run folder (``output_dir`` of a training, evaluation, inference or explain run).

    Example:
        >>> RunLayout("runs/axial").predictions("test")
        PosixPath('runs/axial/eval-test/predictions.csv')
    """

    MODELS = "models"
    CHECKPOINT = "model.pt"
    MODEL = f"{MODELS}/{CHECKPOINT}"
    METRICS = "metrics.json"
    PREDICTIONS = "predictions.csv"
    SKIPPED = "skipped.csv"
    INFERENCE = "inference"
    EXPLAIN = "explain"
    COHORT = "cohort"
    EXPLANATIONS = "explanations.csv"
    DATALIST = "datalist.json"

    @staticmethod
    def evaluation_name(split: str = "test") -> str:
        """``eval-<split>``: the folder of an evaluation of ``split``."""
        return f"eval-{split}"

    @property
    def model(self) -> Path:
        return self.root / self.MODEL

    def evaluation(self, split: str = "test") -> Path:
        return self.root / self.evaluation_name(split)

    def metrics(self, split: str = "test") -> Path:
        return self.evaluation(split) / self.METRICS

    def predictions(self, split: str = "test") -> Path:
        return self.evaluation(split) / self.PREDICTIONS

    @property
    def explanations(self) -> Path:
        return self.root / self.EXPLAIN / self.COHORT / self.EXPLANATIONS


class CrossvalLayout(FolderLayout):
    """The files of a cross-validation's output folder; each fold is a :class:`RunLayout` (:meth:`fold`)."""

    SETTINGS = "crossval.json"
    ASSIGNMENT = "fold_assignment.csv"
    FOLDS = "folds.csv"
    PREDICTIONS = RunLayout.PREDICTIONS
    SUMMARY = "summary.csv"
    SUMMARY_JSON = "summary.json"
    DONE = "done.json"

    @staticmethod
    def fold_name(fold: int | str) -> str:
        """``fold-<fold>`` (``"*"``: the glob pattern of every fold)."""
        return f"fold-{fold}"

    def fold(self, fold: int) -> RunLayout:
        return RunLayout(self.root / self.fold_name(fold))

    def fold_file(self, fold: int, name: str) -> Path:
        """``<root>/fold-<fold>/<name>`` (e.g. :attr:`DONE`, :attr:`RunLayout.DATALIST`)."""
        return self.root / self.fold_name(fold) / name


class BundleLayout:
    """File names of an exported bundle, relative to its folder.

    The weights are a plain state dict (``models/model.pt``, what the model zoo's ``ckpt_export`` loads as it is);
    the run settings are JSON beside them, and the volumes they refer to (template, brain mask, the mean control
    scan when it is shared) are NIfTI files: a bundle holds data only, nothing that unpickles into code.
    """

    MODELS = RunLayout.MODELS
    MODEL = RunLayout.MODEL
    SETTINGS = f"{MODELS}/run_settings.json"
    TEMPLATE = f"{MODELS}/{SETTINGS_FILES['template']}"
    BRAIN_MASK = f"{MODELS}/{SETTINGS_FILES['mask']}"
    CONTROL_MEAN = f"{MODELS}/{SETTINGS_FILES['controls']}"
    TORCHSCRIPT = f"{MODELS}/model.ts"
    METADATA = "configs/metadata.json"
