"""Bringing checkpoints of older versions up to date: run settings and the mean control scan added afterwards."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.data import Dataset

from ..data.datalist import load_split
from ..errors import InputError
from ..io import save_checkpoint
from ..transforms.pipeline import load_volume
from .checkpoint import MODEL_KEY, RUN_KEY, check_weights, load_weights, read_checkpoint
from .settings import RunSettings

__all__ = ["attach_run_settings", "attach_control_mean"]


def _loading_dataset(items: Sequence[Mapping], intensity: str) -> Dataset:
    """Datalist items loaded as the bundle loads them (no cache): what :meth:`RunSettings.average_controls` reads
    for a checkpoint made without it."""
    return Dataset(list(items), load_volume("image", intensity))


def attach_run_settings(
    ckpt_path: str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    config_files: str | Sequence[str] | None = None,
    **overrides: Any,
) -> Path:
    """Give a weights-only checkpoint (made before run settings existed) the settings it was trained with.

    The training config(s) are parsed with ``overrides`` exactly as training parses them, their ``run_settings``
    is built (grid from the datalist's training images, template, network recipe), the weights must fit the network
    it describes, and ``{"model": weights, "run": settings}`` is written atomically.

    Args:
        ckpt_path: the old checkpoint (``models/model.pt``).
        out_path: where to write (default: over ``ckpt_path``).
        config_files: the training configs in merge order (default: the shipped ``train.json``).
        overrides: the training overrides it was made with, e.g. ``dataset_dir="/data/adni", num_slices=80``.

    Returns:
        the written path.
    """
    from monai.bundle import ConfigParser

    from ..configs import config_path

    files = [str(config_path("train"))] if config_files is None else config_files
    parser = ConfigParser()
    parser.read_config([files] if isinstance(files, str | os.PathLike) else [str(f) for f in files])
    parser.update(overrides)
    settings = parser.get_parsed_content("run_settings")
    settings.source = str(ckpt_path)
    weights = load_weights(ckpt_path)
    check_weights(settings, weights)
    training = load_split(str(settings.dataset_dir), "training", settings.datalist)
    settings.average_controls(_loading_dataset(training, settings.intensity))  # as training stores it since 0.2.5
    target = Path(out_path or ckpt_path)
    save_checkpoint(target, {MODEL_KEY: weights, RUN_KEY: settings.state_dict()})
    return target


def attach_control_mean(
    ckpt_path: str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    dataset_dir: str | None = None,
    datalist: str | None = None,
) -> Path:
    """Give a checkpoint made before axial-monai 0.2.5 the mean control scan that training now stores.

    The controls are the training split's scans of the classes other than ``positive_class``, of the run's own
    datalist unless ``dataset_dir``/``datalist`` point elsewhere (:func:`mean_control`); they must be on the run's
    grid. The weights and the other settings are kept; the checkpoint is written atomically.

    Args:
        ckpt_path: the run folder or its ``models/model.pt``.
        out_path: where to write (default: over the checkpoint).
        dataset_dir, datalist: where the training scans are now (default: the run's).

    Returns:
        the written path.

    Raises:
        InputError: if the checkpoint has no run settings or the training split has no usable control scan.
        FileNotFoundError: if the datalist is gone.
    """
    settings = RunSettings.load(ckpt_path)
    folder = dataset_dir or settings.dataset_dir
    datalist = datalist or settings.datalist_for(folder)
    items = load_split(str(folder), "training", datalist)
    if settings.average_controls(_loading_dataset(items, settings.intensity)).control_mean is None:
        raise InputError(
            f"No usable control scan (label other than {settings.positive_class}) on the run's grid in the training "
            f"split of {datalist}; nothing was written to {settings.source}."
        )
    checkpoint = read_checkpoint(settings.source)
    target = Path(out_path or settings.source)
    save_checkpoint(target, {**checkpoint, RUN_KEY: settings.state_dict()})
    return target
