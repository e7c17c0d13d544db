"""The file layout of the data: raw Clinica BIDS T1w images and the derivatives the preprocessing writes.

Both :mod:`axial_monai.preprocess` (which writes the derivatives) and :mod:`axial_monai.data.clinica` (which reads
them into datalists) take every name from here.

Input (what ``clinica convert adni-to-bids -m T1`` writes)::

    BIDS_DIR/sub-<label>/ses-<label>/anat/sub-<label>_ses-<label>[_<entity>-<value>...]_T1w.nii[.gz]

Output (BIDS derivatives, :class:`DerivativesLayout`)::

    OUT_DIR/derivatives/axial-monai/                      the pipeline folder (``DerivativesLayout.root``)
        dataset_description.json, .bidsignore
        sub-<label>/ses-<label>/anat/<source stem>_space-<template>[_res-<mm>mm]_desc-preproc_T1w.nii.gz
        qc/<image stem>.json                               one QC record per scan (:class:`QCRecord`)
        qc.tsv                                             all QC records, one row per scan (:data:`QC_COLUMNS`)
        logs/preprocess.log

Example:
    >>> layout = DerivativesLayout.under("/data/ADNI_BIDS")
    >>> image = layout.image_path("sub-01", "ses-M000", "sub-01_ses-M000", space="MNI152NLin2009cAsym")
    >>> layout.record_path(image)
    PosixPath('/data/ADNI_BIDS/derivatives/axial-monai/qc/sub-01_ses-M000_space-MNI152NLin2009cAsym_desc-preproc_T1w.json')
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import SettingsError
from .io import NIFTI_SUFFIXES, nifti_stem

__all__ = [
    "session_month",
    "PIPELINE_NAME",
    "T1W_SUFFIXES",
    "QC_COLUMNS",
    "QCRecord",
    "anat_dir",
    "find_files",
    "raw_t1w_images",
    "resolution_label",
    "space_label",
    "DerivativesLayout",
]

#: Name of the derivatives folder (``OUT_DIR/derivatives/<PIPELINE_NAME>``).
PIPELINE_NAME = "axial-monai"
#: File endings of a raw T1-weighted image.
T1W_SUFFIXES = tuple(f"_T1w{suffix}" for suffix in NIFTI_SUFFIXES)
_LABEL = re.compile(r"^[A-Za-z0-9]+$")
_PREPROC = "_desc-preproc_T1w.nii.gz"


@dataclass
class QCRecord:
    """The QC record of one preprocessing attempt: one JSON file per scan, one row of ``qc.tsv``.

    Attributes:
        subject, session: BIDS ids with their prefixes.
        input_path, output_path: the raw image and the preprocessed image.
        status: ``"ok"`` or ``"failed"``.
        error: one-line message naming the file and the problem (empty when ok).
        similarity_cc: squared normalised cross-correlation of the registered image with the template inside the
            template brain mask (ANTs ``Correlation`` metric, sign flipped; 0 to 1, higher is better).
        similarity_mi: Mattes mutual information with the template inside the brain mask (ANTs
            ``MattesMutualInformation``, sign flipped; higher is better).
        template_correlation: Pearson's r with the template inside its brain mask (-1 to 1; negative for an
            inverted contrast, which the squared ``similarity_cc`` cannot tell).
        jacobian_min, jacobian_max: range of the Jacobian determinant of the registration inside the template brain
            (below 0: folded; far from 1: strong local stretching).
        mask_dice: Dice of the scan's own brain mask (deepbet's, found without the template) carried onto the
            template by the registration, against the template's brain mask.
        brain_volume_ml: volume of the scan's own brain mask (fast profile).
        warning: set when ``similarity_cc`` is below the run's ``min_similarity_cc`` (a likely failed registration).
        runtime_s: wall time of the attempt in seconds.
        finished: ISO time stamp.
        space, transform: template label and registration (``fast`` profile: ``greedy``; paper: the ANTs type).
    """

    subject: str
    session: str
    input_path: str
    output_path: str
    status: str = "failed"
    error: str = ""
    similarity_cc: float | None = None
    similarity_mi: float | None = None
    template_correlation: float | None = None
    jacobian_min: float | None = None
    jacobian_max: float | None = None
    mask_dice: float | None = None
    brain_volume_ml: float | None = None
    warning: str = ""
    runtime_s: float | None = None
    finished: str = ""
    space: str = ""
    transform: str = ""


#: Columns of ``qc.tsv``: the fields of :class:`QCRecord`, in order.
QC_COLUMNS = tuple(f.name for f in dataclasses.fields(QCRecord))


_MONTH = re.compile(r"^ses-M(\d+)$")


def session_month(session: str) -> int | None:
    """Month of a Clinica session id (``"ses-M036"`` -> 36), or ``None`` if it has no ``ses-M<digits>`` form."""
    match = _MONTH.match(str(session))
    return int(match.group(1)) if match else None


def anat_dir(root: str | os.PathLike, subject: str, session: str) -> Path:
    """``root/<subject>/<session>/anat``: the folder of a session's anatomical images, raw or derived."""
    return Path(root) / subject / session / "anat"


def find_files(folder: str | os.PathLike, patterns: list[str]) -> list[str]:
    """Files of ``folder`` that match one of the glob ``patterns``: absolute (links resolved), sorted, unique, and
    without hidden files (temporary files of a writer in progress are hidden, see :mod:`axial_monai.io`)."""
    found = {str(path.resolve()) for pattern in patterns for path in Path(folder).glob(pattern)}
    return sorted(path for path in found if not os.path.basename(path).startswith("."))


def raw_t1w_images(bids_dir: str | os.PathLike, subject: str, session: str) -> list[str]:
    """The raw T1w images of one session of a BIDS tree (see :func:`find_files`)."""
    return find_files(anat_dir(bids_dir, subject, session), [f"*{suffix}" for suffix in T1W_SUFFIXES])


def space_label(label: str) -> str:
    """``label`` itself if it is a valid BIDS ``space`` label (letters and digits only).

    Raises:
        SettingsError: otherwise.
    """
    if not _LABEL.match(str(label)):
        raise SettingsError(f"space must be an alphanumeric BIDS label, not {label!r}.")
    return str(label)


def resolution_label(resolution: float | None) -> str | None:
    """BIDS ``res`` label of an isotropic voxel size in mm (``4`` -> ``"4mm"``, ``1.5`` -> ``"1p5mm"``)."""
    if resolution is None:
        return None
    text = f"{float(resolution):g}".replace(".", "p")
    return f"{text}mm"


@dataclass(frozen=True)
class DerivativesLayout:
    """Every path of the preprocessing output, below the pipeline folder ``root``.

    Attributes:
        root: the pipeline folder, ``OUT_DIR/derivatives/axial-monai``.
    """

    root: Path

    #: names of the QC and log entries of the pipeline folder (not BIDS data: listed in ``.bidsignore``)
    QC_DIR = "qc"
    QC_TABLE = "qc.tsv"
    LOG_DIR = "logs"

    @classmethod
    def under(cls, out_dir: str | os.PathLike) -> DerivativesLayout:
        """The layout written under ``out_dir`` (``out_dir/derivatives/axial-monai``, absolute)."""
        return cls(Path(out_dir).resolve() / "derivatives" / PIPELINE_NAME)

    @classmethod
    def find(cls, path: str | os.PathLike) -> DerivativesLayout:
        """The layout of ``path``: the pipeline folder itself, or a folder that holds ``derivatives/axial-monai``."""
        root = Path(path)
        nested = root / "derivatives" / PIPELINE_NAME
        if not (root / "dataset_description.json").is_file() and nested.is_dir():
            return cls(nested)
        return cls(root)

    @property
    def description(self) -> Path:
        """``dataset_description.json`` of the derivative dataset."""
        return self.root / "dataset_description.json"

    @property
    def bidsignore(self) -> Path:
        """``.bidsignore``, which keeps BIDS validators off the QC and log files."""
        return self.root / ".bidsignore"

    @property
    def bidsignore_text(self) -> str:
        """Content of ``.bidsignore``."""
        return f"{self.QC_DIR}/\n{self.QC_TABLE}\n{self.LOG_DIR}/\n"

    @property
    def qc_dir(self) -> Path:
        """Folder of the per-scan QC records."""
        return self.root / self.QC_DIR

    @property
    def qc_table(self) -> Path:
        """The QC table (TSV, :data:`QC_COLUMNS`)."""
        return self.root / self.QC_TABLE

    @property
    def log_file(self) -> Path:
        """The preprocessing log."""
        return self.root / self.LOG_DIR / "preprocess.log"

    def image_path(
        self, subject: str, session: str, source_stem: str, space: str, resolution: float | None = None
    ) -> Path:
        """Path of the preprocessed image of one raw scan.

        Args:
            subject, session: BIDS ids with prefixes (``"sub-01"``, ``"ses-M000"``).
            source_stem: the raw file name without ``_T1w.nii[.gz]`` (its BIDS entities).
            space: template label (alphanumeric), e.g. ``"MNI152NLin2009cAsym"``.
            resolution: isotropic voxel size in mm when the template was resampled (adds ``_res-<mm>mm``).

        Raises:
            SettingsError: if ``space`` is not alphanumeric.
        """
        res = resolution_label(resolution)
        entities = f"{source_stem}_space-{space_label(space)}" + (f"_res-{res}" if res else "")
        return anat_dir(self.root, subject, session) / f"{entities}{_PREPROC}"

    def image_patterns(self, space: str | None = None) -> list[str]:
        """Glob patterns (inside a session's ``anat`` folder) of the preprocessed images, of one ``space`` or any."""
        if space is None:
            return [f"*_space-*{_PREPROC}"]
        # the space entity is followed by _res-... or directly by _desc-...
        return [f"*_space-{space}{_PREPROC}", f"*_space-{space}_res-*{_PREPROC}"]

    def find_images(self, subject: str, session: str, space: str | None = None) -> list[str]:
        """The preprocessed images of one session, of one ``space`` or any (see :func:`find_files`)."""
        return find_files(anat_dir(self.root, subject, session), self.image_patterns(space))

    def record_path(self, image_path: str | os.PathLike) -> Path:
        """Path of the QC record of the scan whose preprocessed image is ``image_path``."""
        return self.qc_dir / f"{nifti_stem(image_path)}.json"
