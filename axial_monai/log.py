"""Logging of axial-monai: one rule for the library, one setup for the command lines.

* Library modules log to ``logging.getLogger(__name__)`` and never add handlers or set levels, so the
  application decides what is shown. One exception: a preprocessing run also copies its own records into its
  log file ``logs/preprocess.log`` (:mod:`axial_monai.preprocess.pipeline`).
* The command lines (``python -m axial_monai.preprocess``, ``python -m axial_monai.crossval``) call
  :func:`setup_cli_logging` once.
* Bundle runs (``python -m monai.bundle run ...``) are configured by ``bundle/configs/logging.conf``
  (MONAI's ``--logging_file``).
"""

from __future__ import annotations

import logging

__all__ = ["LOG_FORMAT", "setup_cli_logging"]

#: line format of the command lines' log output.
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def setup_cli_logging(level: int = logging.INFO) -> None:
    """Send log records of ``level`` and above to stderr with :data:`LOG_FORMAT` (no-op if already configured)."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
