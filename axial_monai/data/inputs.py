"""The scans of a command line: NIfTI files, folders of them, and folders of DICOM series, one item per volume.

``axial-monai predict`` and ``axial-monai preprocess`` take the same inputs. :func:`gather_scans` turns them into
one :class:`ScanInput` per volume:

* a NIfTI file, a glob, or a folder without DICOM files (every NIfTI file below it, sorted): one item per file,
  with the short unique id of :func:`~axial_monai.data.datalist.scan_ids`;
* a folder holding DICOM files (any names): one item per series (:func:`~axial_monai.data.dicom.find_series`),
  named by its description and the end of its ``SeriesInstanceUID``. A 3D T1 series is read by ITK and written
  as NIfTI to ``<cache>/dicom/<digest>.nii.gz``, keyed by the content of its files, so a second call reads it
  from there; any other series keeps why it is refused (``problem``), and the other inputs go on.

Example:
    >>> items = gather_scans(["scan.nii.gz", "/media/dicom_study"], cache=Path("~/.cache/axial_monai"))
    >>> [(i.scan_id, i.file, i.problem) for i in items]
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..io import file_digest
from .datalist import expand_inputs, scan_ids
from .dicom import find_series, is_dicom, series_to_nifti

__all__ = ["ScanInput", "is_dicom_folder", "gather_scans"]


@dataclass
class ScanInput:
    """One volume given on a command line.

    Attributes:
        scan: what was given: the NIfTI file, or ``<DICOM folder>:<SeriesInstanceUID>``.
        scan_id: its unique, readable id (output folder and file names).
        file: the NIfTI to read: the file itself or the series converted; None for a refused series.
        series: the series description (DICOM input only).
        problem: why the volume cannot be used, or None.
    """

    scan: str
    scan_id: str
    file: str | None = None
    series: str | None = None
    problem: str | None = None


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder with at least one DICOM file below it."""
    return os.path.isdir(path) and any(p.is_file() and is_dicom(p) for p in Path(path).rglob("*"))


def gather_scans(
    scans: Sequence[str | os.PathLike], cache: Path, echo: Callable[[str], object] = print
) -> list[ScanInput]:
    """One :class:`ScanInput` per NIfTI file or DICOM series of ``scans`` (module docstring): the NIfTI files in input
    order, then the series of each DICOM folder.

    Args:
        scans: NIfTI files, globs, folders of NIfTI files, folders of DICOM files.
        cache: folder whose ``dicom/`` keeps the series converted to NIfTI.
        echo: where one line per series goes (read, or refused and why).

    Raises:
        InputError: if nothing is found.
    """
    given = [os.fspath(s) for s in scans]
    dicom = {s for s in given if is_dicom_folder(s)}
    items = expand_inputs([s for s in given if s not in dicom]) if len(dicom) < len(given) else []
    found = [ScanInput(i["image"], sid, file=i["image"]) for i, sid in zip(items, scan_ids(items), strict=True)]
    for folder in (s for s in given if s in dicom):
        for series in find_series(folder):
            item = ScanInput(f"{folder}:{series.uid}", series.name, series=series.description)
            if series.problem:
                item.problem = f"{series} {series.problem}"
                echo(f"skipped {item.scan}: {item.problem}")
            else:
                digest = hashlib.sha256(b"".join(file_digest(f).encode() for f in series.files)).hexdigest()[:32]
                target = cache / "dicom" / f"{digest}.nii.gz"
                item.file = str(target if target.is_file() else series_to_nifti(series, target))
                echo(f"{item.scan}: DICOM {series} read as {item.file}")
            found.append(item)
    if not found:
        raise InputError(f"No NIfTI file or DICOM series found in {given}.")
    return found
