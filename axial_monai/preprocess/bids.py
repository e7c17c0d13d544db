"""Raw BIDS input of the preprocessing: find the T1w scans of a Clinica BIDS tree, shard them, name their outputs.

The names of the input and output files are those of :mod:`axial_monai.derivatives`. This module only deals with
paths; it imports neither ANTs nor any imaging library.

Example:
    >>> scans = find_t1w_scans("/data/ADNI_BIDS")
    >>> mine = select_shard(scans, "2/8")  # the second of 8 cluster array jobs
    >>> derivative_path(pipeline_dir("/data/ADNI_BIDS"), mine[0], space="MNI152NLin2009cAsym")
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..derivatives import PIPELINE_NAME, T1W_SUFFIXES, DerivativesLayout
from ..errors import InputError, SettingsError
from ..io import write_json, write_text

__all__ = [
    "Scan",
    "is_bids_tree",
    "find_t1w_scans",
    "parse_shard",
    "select_shard",
    "pipeline_dir",
    "derivative_path",
    "write_dataset_description",
]


@dataclass(frozen=True, order=True)
class Scan:
    """One raw T1-weighted image of a BIDS tree.

    Attributes:
        subject: participant id with its prefix, e.g. ``"sub-ADNI002S0295"``.
        session: session id with its prefix, e.g. ``"ses-M012"``.
        path: absolute path of the image.
    """

    subject: str
    session: str
    path: str

    @property
    def stem(self) -> str:
        """File name without the ``_T1w.nii[.gz]`` ending: the BIDS entities of the source image."""
        name = os.path.basename(self.path)
        for suffix in T1W_SUFFIXES:
            if name.endswith(suffix):
                return name[: -len(suffix)]
        raise InputError(f"{self.path} does not end with one of {T1W_SUFFIXES}.")


def is_bids_tree(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder with BIDS sessions (``sub-*/ses-*/anat``) in it."""
    return os.path.isdir(path) and any(Path(path).glob("sub-*/ses-*/anat"))


def find_t1w_scans(bids_dir: str | os.PathLike) -> list[Scan]:
    """All T1w images ``sub-*/ses-*/anat/*_T1w.nii[.gz]`` of a BIDS tree, sorted by subject, session and path.

    Hidden files and the ``derivatives`` folder are ignored, so an output tree inside the BIDS tree is never
    mistaken for input.

    Args:
        bids_dir: root of the BIDS dataset.

    Returns:
        the scans, sorted (the order that sharding partitions).

    Raises:
        FileNotFoundError: if ``bids_dir`` is not a directory.
        InputError: if it holds no T1w image.
    """
    root = Path(bids_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"BIDS directory {root} does not exist.")
    scans = []
    for subject_dir in sorted(root.glob("sub-*")):
        for anat in sorted(subject_dir.glob("ses-*/anat")):
            for image in sorted(anat.iterdir()):
                if image.name.startswith(".") or not image.name.endswith(T1W_SUFFIXES):
                    continue
                scans.append(Scan(subject=subject_dir.name, session=anat.parent.name, path=str(image)))
    if not scans:
        raise InputError(f"No T1w image (sub-*/ses-*/anat/*_T1w.nii[.gz]) found under {root}.")
    return sorted(scans)


def parse_shard(shard: str | None) -> tuple[int, int]:
    """Parse a shard spec ``"i/n"`` (1-based: ``"1/4"`` ... ``"4/4"``); ``None`` means ``(1, 1)``.

    Raises:
        SettingsError: if the spec is not two integers with ``1 <= i <= n``.
    """
    if shard is None:
        return 1, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(shard))
    if match is None:
        raise SettingsError(f"shard must look like 'i/n' (e.g. '2/8'), not {shard!r}.")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise SettingsError(f"shard 'i/n' needs 1 <= i <= n, not {shard!r}.")
    return index, count


def select_shard(scans: list[Scan], shard: str | None) -> list[Scan]:
    """The scans of shard ``"i/n"``: every n-th scan of the sorted list, starting at the i-th.

    The shards ``"1/n"`` ... ``"n/n"`` partition the scans (each scan in exactly one shard), and the partition
    depends only on the sorted scan list, so independent cluster array jobs agree on it.
    """
    index, count = parse_shard(shard)
    return sorted(scans)[index - 1 :: count]


def pipeline_dir(out_dir: str | os.PathLike) -> Path:
    """The derivatives folder of this pipeline: ``out_dir/derivatives/axial-monai`` (absolute)."""
    return DerivativesLayout.under(out_dir).root


def derivative_path(deriv_dir: str | os.PathLike, scan: Scan, space: str, resolution: float | None = None) -> Path:
    """Path of the preprocessed image of ``scan`` inside the pipeline folder ``deriv_dir``.

    Args:
        deriv_dir: the pipeline's derivatives folder (see :func:`pipeline_dir`).
        scan: the source scan.
        space: template label (alphanumeric), e.g. ``"MNI152NLin2009cAsym"``.
        resolution: isotropic voxel size in mm when the template was resampled (adds ``_res-<mm>mm``).

    Raises:
        SettingsError: if ``space`` is not alphanumeric.
    """
    layout = DerivativesLayout(Path(deriv_dir))
    return layout.image_path(scan.subject, scan.session, scan.stem, space, resolution)


def write_dataset_description(deriv_dir: str | os.PathLike, source_dir: str | os.PathLike, version: str) -> Path:
    """Write the derivative's ``dataset_description.json`` (atomically) and a ``.bidsignore`` for the QC files.

    Args:
        deriv_dir: the pipeline's derivatives folder.
        source_dir: the raw BIDS dataset it was computed from.
        version: version of axial-monai.

    Returns:
        path of ``dataset_description.json``.
    """
    layout = DerivativesLayout(Path(deriv_dir))
    description = {
        "Name": "axial-monai T1w preprocessing",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": PIPELINE_NAME,
                "Version": version,
                "Description": "N4 bias-field correction, ANTs registration to an MNI152 template, "
                "brain extraction with the template's brain mask.",
            }
        ],
        "SourceDatasets": [{"URL": Path(source_dir).resolve().as_uri()}],
    }
    write_json(layout.description, description)
    write_text(layout.bidsignore, layout.bidsignore_text)
    return layout.description
