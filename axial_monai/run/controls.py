"""The mean control scan: the default baseline of Integrated Gradients, which a run stores in its checkpoint.

It is the voxel-wise mean of up to :data:`MAX_CONTROLS` training scans of the classes other than the positive one,
as the network trains on them (:meth:`axial_monai.run.RunSettings.average_controls` reads them from the training
dataset's volume cache before training), on the input grid. It is derived from subjects' scans: an exported bundle
carries it only when asked (``axial-monai export --with-control-mean``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..input_check import Grid

__all__ = ["MAX_CONTROLS", "mean_control", "is_control"]

logger = logging.getLogger(__name__)

#: at most this many training controls make the stored mean control scan (evenly spaced over the split): enough to
#: average individual anatomy out, and a bound on the loading time of a paper-scale split (thousands of 1 mm scans).
MAX_CONTROLS = 64


def is_control(label: Any, positive_class: int) -> bool:
    """Whether a scan of ``label`` is a control: a class index other than ``positive_class``."""
    try:
        return int(label) != positive_class
    except (TypeError, ValueError):
        return False


def mean_control(
    labels: Sequence[Any],
    load: Callable[[int], Any],
    names: Sequence[str],
    positive_class: int,
    grid: Grid,
    limit: int = MAX_CONTROLS,
) -> tuple[np.ndarray | None, int]:
    """The voxel-wise mean of the control scans among a list of scans, as the network sees them.

    Controls are the scans whose label is not ``positive_class``; at most ``limit`` of them, evenly spaced in the
    list, are loaded. A scan that cannot be loaded or is off ``grid`` is left out with a warning (training reports
    its problem itself).

    Args:
        labels: the class index of each scan.
        load: scan index -> the ``(X, Y, Z)`` (or ``(1, X, Y, Z)``) volume, loaded and normalised as the inputs.
        names: the file of each scan, for the warnings.
        positive_class: the class whose scans are not controls.
        grid: the run's input grid.
        limit: the most scans averaged.

    Returns:
        ``(mean, count)``: the ``(X, Y, Z)`` float32 mean on ``grid`` and the number of scans in it, or
        ``(None, 0)`` when there is no usable control.
    """
    controls = [i for i, label in enumerate(labels) if is_control(label, positive_class)]
    if len(controls) > limit:
        controls = [controls[int(i)] for i in np.linspace(0, len(controls) - 1, limit).round()]
    if not controls:
        return None, 0
    logger.info(f"Averaging {len(controls)} control scans into the mean control scan (the explanation baseline).")
    total, count = np.zeros(grid.shape, np.float64), 0
    for i in controls:
        try:
            volume = np.asarray(load(i), np.float32)
        except Exception as err:  # noqa: BLE001 - the training dataset reports damaged scans together
            logger.warning(f"Leaving {names[i]} out of the mean control scan: {err}")
            continue
        if volume.shape[-3:] != grid.shape or volume.size != int(np.prod(grid.shape)):
            logger.warning(f"Leaving {names[i]} out of the mean control scan: {volume.shape} is off the grid.")
            continue
        total += volume.reshape(grid.shape)
        count += 1
    return ((total / count).astype(np.float32), count) if count else (None, 0)
