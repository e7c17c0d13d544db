"""DICOM input: the series of a folder, which of them is a 3D T1, and its volume as NIfTI (read by ITK/GDCM).

Scanners write DICOM: one file per slice, several series per study (localisers, T1, T2, FLAIR, ...). A folder given
where a scan is expected (``axial-monai predict FOLDER``) is searched for DICOM files (any name; the ``DICM`` marker
decides), which are grouped by ``SeriesInstanceUID`` (:func:`find_series`). Each series is either a 3D T1 volume or
refused with the reason (:func:`series_problem`):

* not MR, or a localiser (``ImageType`` LOCALIZER; "localizer", "scout", "survey" in the description);
* several echoes (distinct ``EchoNumbers`` or ``EchoTime``: multi-echo), or mixed images (several orientations,
  image sizes or acquisitions), or slices that are not evenly spaced (missing slices);
* too few slices for a 3D volume (fewer than :data:`MIN_SLICES`);
* not T1-weighted: a description naming another contrast (T2, FLAIR, diffusion, BOLD, ...), or timings of another
  contrast (echo time over :data:`MAX_T1_TE_MS` ms, or repetition time over :data:`MAX_T1_TR_MS` ms), or neither a
  T1 name (T1, MPRAGE, SPGR, ...) nor timings to tell.

A usable series is read with ITK's GDCM reader as float (``RescaleSlope``/``RescaleIntercept`` applied to every
slice), in the slice order of the positions along the slice normal, and written as NIfTI (:func:`series_to_nifti`):
ITK carries the patient geometry (position, orientation, spacing) into the NIfTI affine, so the volume is where the
scanner says it is, oblique or not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_path

__all__ = ["MIN_SLICES", "MAX_T1_TE_MS", "MAX_T1_TR_MS", "Series", "is_dicom", "find_series", "series_to_nifti"]

#: the fewest slices of a 3D volume.
MIN_SLICES = 16
#: the longest echo time (ms) of a T1-weighted series (MPRAGE and SPGR: 2-10 ms; T2: 80 ms and more).
MAX_T1_TE_MS = 20.0
#: the longest repetition time (ms) of a T1-weighted series (MPRAGE: about 2300; T2 and FLAIR: 3000-10000).
MAX_T1_TR_MS = 3500.0
_T1_NAMES = re.compile(r"t1|mp-?rage|spgr|bravo|tfe|tfl|ir-?fspgr|flash|mprage|vibe", re.IGNORECASE)
_OTHER_NAMES = re.compile(
    r"t2|flair|dwi|dti|diffusion|bold|fmri|epi|swi|\bpd\b|proton|adc|trace|perfusion|asl|tof|angio", re.IGNORECASE
)
_LOCALIZER = re.compile(r"locali[sz]er|scout|survey|3[- ]?plane|aahscout", re.IGNORECASE)


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a DICOM file (the ``DICM`` marker after the 128-byte preamble)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


@dataclass
class Series:
    """One DICOM series of a folder.

    Attributes:
        uid: ``SeriesInstanceUID``.
        description: ``SeriesDescription`` (or ``ProtocolName``), as written.
        files: its files, in slice order.
        problem: why it is not a 3D T1 volume, or None.
    """

    uid: str
    description: str
    files: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def name(self) -> str:
        """A readable, unique file-system name: the description and the end of the UID."""
        words = re.sub(r"[^A-Za-z0-9]+", "_", self.description).strip("_") or "series"
        return f"{words[:40]}_{self.uid.replace('.', '')[-8:]}"

    def __str__(self) -> str:
        return f"series {self.description or '(no description)'!r} ({self.uid}, {len(self.files)} files)"


def _value(header: Any, name: str) -> Any:
    value = getattr(header, name, None)
    return None if value is None or value == "" else value


def _distinct(headers: Sequence[Any], name: str) -> set:
    values = set()
    for header in headers:
        value = _value(header, name)
        if value is not None:
            values.add(tuple(float(v) for v in value) if isinstance(value, list | tuple) else str(value))
    return values


def _slice_positions(headers: Sequence[Any]) -> np.ndarray:
    orientation = np.asarray([float(v) for v in headers[0].ImageOrientationPatient]).reshape(2, 3)
    normal = np.cross(orientation[0], orientation[1])
    return np.asarray([np.dot(normal, [float(v) for v in h.ImagePositionPatient]) for h in headers])


def _contrast_problem(headers: Sequence[Any], description: str) -> str | None:
    names = " ".join(str(_value(headers[0], n) or "") for n in ("SeriesDescription", "ProtocolName", "SequenceName"))
    if _OTHER_NAMES.search(description) and not _T1_NAMES.search(description):
        return f"is not a T1 (its description {description!r} names another contrast)"
    echo, repetition = _value(headers[0], "EchoTime"), _value(headers[0], "RepetitionTime")
    if echo is not None and float(echo) > MAX_T1_TE_MS:
        return f"is not a T1 (echo time {float(echo):g} ms, over {MAX_T1_TE_MS:g} ms: T2-weighted)"
    if repetition is not None and float(repetition) > MAX_T1_TR_MS:
        return f"is not a T1 (repetition time {float(repetition):g} ms, over {MAX_T1_TR_MS:g} ms)"
    if not _T1_NAMES.search(names) and (echo is None or repetition is None):
        return "cannot be told to be a T1 (no T1 name in its description or protocol, and no echo/repetition time)"
    return None


def series_problem(headers: Sequence[Any]) -> str | None:
    """Why the headers of one series (pydicom datasets) are not a usable 3D T1 volume, or None (module docstring)."""
    first = headers[0]
    description = str(_value(first, "SeriesDescription") or _value(first, "ProtocolName") or "")
    modality = str(_value(first, "Modality") or "")
    if modality != "MR":
        return f"is not MR (modality {modality or 'unknown'!r})"
    image_type = " ".join(str(v) for v in (_value(first, "ImageType") or []))
    if "LOCALIZER" in image_type.upper() or _LOCALIZER.search(description):
        return "is a localiser"
    echo_numbers, echo_times = _distinct(headers, "EchoNumbers"), _distinct(headers, "EchoTime")
    if len(echo_numbers) > 1 or len(echo_times) > 1:
        count = max(len(echo_numbers), len(echo_times))
        return f"is multi-echo ({count} echoes): give one echo, or a combined T1 series"
    for name, what in (("ImageOrientationPatient", "orientations"), ("Rows", "image sizes")):
        if len(_distinct(headers, name)) > 1:
            return f"mixes images of {len(_distinct(headers, name))} {what}"
    if len(_distinct(headers, "Columns")) > 1 or len(_distinct(headers, "AcquisitionNumber")) > 1:
        return "mixes images of several acquisitions or sizes"
    if len(headers) < MIN_SLICES:
        return f"has {len(headers)} slices: not a 3D volume (at least {MIN_SLICES})"
    if (
        any(_value(h, "ImagePositionPatient") is None for h in headers)
        or _value(first, "ImageOrientationPatient") is None
    ):
        return "lacks the slice positions or orientation (ImagePositionPatient, ImageOrientationPatient)"
    gaps = np.diff(np.sort(_slice_positions(headers)))
    if gaps.min() <= 0 or gaps.max() > 1.1 * gaps.min():
        return f"has unevenly spaced slices ({gaps.min():.2f} to {gaps.max():.2f} mm apart: slices are missing)"
    return _contrast_problem(headers, description)


def find_series(folder: str | os.PathLike) -> list[Series]:
    """The DICOM series of the files below ``folder``, each with its files in slice order and its problem (None for
    a usable 3D T1), sorted by description.

    Raises:
        InputError: if the folder holds no DICOM file.
    """
    import pydicom

    files = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file() and is_dicom(p))
    if not files:
        raise InputError(f"{folder} holds no DICOM file.")
    groups: dict[str, list[tuple[str, Any]]] = {}
    for path in files:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        if _value(header, "SeriesInstanceUID") is None or ("PixelSpacing" not in header and "Rows" not in header):
            continue  # DICOMDIR, structured reports and other files without an image
        groups.setdefault(str(header.SeriesInstanceUID), []).append((path, header))
    series = []
    for uid, members in groups.items():
        headers = [h for _, h in members]
        description = str(_value(headers[0], "SeriesDescription") or _value(headers[0], "ProtocolName") or "")
        problem = series_problem(headers)
        if problem is None:  # in slice order, along the normal of the slices
            order = np.argsort(_slice_positions(headers), kind="stable")
            members = [members[i] for i in order]
        series.append(Series(uid, description, [p for p, _ in members], problem))
    return sorted(series, key=lambda s: (s.description, s.uid))


def series_to_nifti(series: Series, target: str | os.PathLike) -> Path:
    """Read a usable series with ITK (GDCM) as float and write it to ``target`` (NIfTI); returns ``target``.

    Raises:
        InputError: for a refused series, or one ITK cannot read.
    """
    import itk

    if series.problem:
        raise InputError(f"{series} {series.problem}.")
    try:
        image = itk.imread(series.files, itk.F)  # float: every slice's rescale applied, whatever the first one
    except Exception as err:  # noqa: BLE001 - ITK raises RuntimeError with its own text
        raise InputError(f"{series} cannot be read by ITK: {' '.join(str(err).split())[:300]}") from None
    with atomic_path(target, suffix=".nii.gz") as tmp:
        itk.imwrite(image, str(tmp))
    return Path(target)
