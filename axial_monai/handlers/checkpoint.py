"""MONAI's ``CheckpointSaver`` with fixed-name checkpoints replaced atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver

from ..io import save_checkpoint

__all__ = ["AtomicCheckpointSaver"]


class _AtomicFileSaver(BaseSaveHandler):
    """Save every checkpoint to one fixed file by write-then-rename (:func:`axial_monai.io.save_checkpoint`)."""

    def __init__(self, dirname: str, filename: str) -> None:
        self.path = os.path.join(dirname, filename)

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        save_checkpoint(self.path, checkpoint)

    def remove(self, filename: str) -> None:
        pass  # the next save replaces the file; removing it first would leave no checkpoint in between


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` whose fixed-name checkpoint (``key_metric_filename``) is replaced atomically.

    MONAI's saver writes a fixed-name checkpoint in place, after deleting the previous one (ignite removes the old
    best before saving the new one): a run killed in between leaves no checkpoint or a truncated one. Here the new
    checkpoint is written to a temporary file beside it and renamed over the old one, so ``model.pt`` is always a
    complete checkpoint (the previous best until the new one is complete). Same arguments as ``CheckpointSaver``,
    and ``interval_filename``: one fixed file for the interval checkpoint (``save_interval``), replaced the same way
    (the training state of ``train.json``, see :mod:`axial_monai.handlers.resume`).
    """

    def __init__(self, *args: Any, interval_filename: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._key_metric_checkpoint, self._final_checkpoint):
            fixed = getattr(getattr(checkpoint, "save_handler", None), "filename", None)
            if fixed is not None:
                checkpoint.save_handler = _AtomicFileSaver(self.save_dir, fixed)
        if interval_filename is not None:
            if self._interval_checkpoint is None:
                raise ValueError("interval_filename needs save_interval > 0.")
            self._interval_checkpoint.save_handler = _AtomicFileSaver(self.save_dir, interval_filename)
