"""Command line of the preprocessing.

Usage: ``python -m axial_monai.preprocess BIDS_DIR OUT_DIR [--n_proc 2] [--shard 1/4] [--transform SyNQuick]``.

Every keyword of :func:`axial_monai.preprocess.preprocess_bids` is an option (``--resolution 4``,
``--template MNI152NLin2009aSym``, ``--registration_kwargs '{"aff_iterations": [100, 50, 0]}'``, ...).
Prints the summary (scans in the shard, skipped, succeeded, failed, QC table path) and exits with status 1 if
any scan failed (so array-job schedulers flag it), else 0.

Example (SLURM array job, 10 shards)::

    python -m axial_monai.preprocess /data/ADNI_BIDS /data/ADNI_BIDS --n_proc 4 \\
        --shard "${SLURM_ARRAY_TASK_ID}/10"
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import fire

from axial_monai.preprocess.pipeline import DEFAULT_TEMPLATE, preprocess_bids

__all__ = ["preprocess_command", "main"]


def preprocess_command(
    bids_dir: str,
    out_dir: str,
    template: str = DEFAULT_TEMPLATE,
    template_mask: str | None = None,
    space: str | None = None,
    resolution: float | None = None,
    transform: str = "SyNQuick",
    n4: bool = True,
    registration_mask_dilation_mm: float | None = 6.0,
    registration_kwargs: dict[str, Any] | None = None,
    n4_kwargs: dict[str, Any] | None = None,
    min_similarity_cc: float = 0.3,
    n_proc: int = 1,
    threads_per_worker: int | None = None,
    shard: str | None = None,
    seed: int | None = 42,
    progress: bool = True,
) -> dict[str, Any]:
    """Preprocess the T1w scans of BIDS_DIR into OUT_DIR/derivatives/axial-monai (see ``preprocess_bids``).

    Args:
        bids_dir: root of the Clinica BIDS tree (sub-*/ses-*/anat/*_T1w.nii.gz); only read.
        out_dir: outputs go to OUT_DIR/derivatives/axial-monai (OUT_DIR may be BIDS_DIR).
        template: MNI152NLin2009cAsym (default), MNI152NLin2009aSym, or a NIfTI path.
        template_mask: brain mask of a template given by path (default: its non-zero support).
        space: BIDS space label of the outputs (default: the template name, or "custom").
        resolution: resample the template to this voxel size in mm (e.g. 4 for a quick test).
        transform: SyNQuick (default, as in the paper), SyN, Affine, Rigid, or an ANTsPy type_of_transform.
        n4: N4 bias-field correction (--non4 to skip).
        registration_mask_dilation_mm: metric mask = template brain mask dilated by this (None: no mask).
        registration_kwargs: extra ants.registration arguments as a dict.
        n4_kwargs: extra ants.n4_bias_field_correction arguments as a dict.
        min_similarity_cc: QC warning below this similarity to the template.
        n_proc: worker processes.
        threads_per_worker: ITK threads per worker (default: cores // n_proc).
        shard: "i/n": process only the i-th of n parts of the sorted scan list.
        seed: ANTS_RANDOM_SEED for the registrations.
        progress: show a progress bar.

    Returns:
        the summary of the run as a dict.
    """
    summary = preprocess_bids(
        bids_dir,
        out_dir,
        template=template,
        template_mask=template_mask,
        space=space,
        resolution=resolution,
        transform=transform,
        n4=n4,
        registration_mask_dilation_mm=registration_mask_dilation_mm,
        registration_kwargs=registration_kwargs,
        n4_kwargs=n4_kwargs,
        min_similarity_cc=min_similarity_cc,
        n_proc=n_proc,
        threads_per_worker=threads_per_worker,
        shard=None if shard is None else str(shard),
        seed=seed,
        progress=progress,
    )
    return summary.to_dict()


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = fire.Fire(preprocess_command, command=argv, name="axial_monai.preprocess")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
