"""Command line of the preprocessing.

Usage: ``python -m axial_monai.preprocess BIDS_DIR OUT_DIR [--n_proc 2] [--shard 1/4] [--profile fast|paper]``.

Every keyword of :func:`axial_monai.preprocess.preprocess_bids` is an option (``--resolution 4``,
``--template MNI152NLin2009aSym``, ``--registration_kwargs '{"aff_iterations": [100, 50, 0]}'``, ...).
Prints the summary (scans in the shard, skipped, succeeded, failed, QC table path) and exits with status 1 if
any scan failed (so array-job schedulers flag it), else 0.

Example (SLURM array job, 10 shards)::

    python -m axial_monai.preprocess /data/ADNI_BIDS /data/ADNI_BIDS --n_proc 4 \\
        --shard "${SLURM_ARRAY_TASK_ID}/10"
"""

from __future__ import annotations

import sys

from ..commandline import run_fire
from ..log import setup_cli_logging
from .batch import preprocess_bids

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    setup_cli_logging()
    # fire exposes every keyword of preprocess_bids as an option and prints the summary as a dict; run_fire answers
    # -h/--help with one line per option
    argv = sys.argv[1:] if argv is None else argv
    summary = run_fire(preprocess_bids, argv, "axial-monai-preprocess", serialize=lambda s: s.to_dict())
    return 0 if summary is None else 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
