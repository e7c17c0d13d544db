"""Datalists for the bundle: split lists for training/evaluation and file lists for inference."""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence

import nibabel as nib
import pandas as pd
from monai.data import load_decathlon_datalist

from axial_monai.errors import InputError
from axial_monai.io import NIFTI_SUFFIXES, nifti_stem, write_csv

__all__ = ["load_split", "inference_datalist", "check_nifti_header", "scan_ids", "SKIPPED_COLUMNS"]

#: columns of ``skipped.csv``: the scan and its problem (one line, naming what was expected).
SKIPPED_COLUMNS = ("file", "problem")

logger = logging.getLogger(__name__)


def load_split(dataset_dir: str, split: str, datalist: str | None = None) -> list[dict]:
    """Items of one split (``"training"``, ``"validation"``, ``"test"``) of a datalist JSON.

    Args:
        dataset_dir: base directory of relative image paths.
        split: key of the split in the datalist.
        datalist: JSON path; default ``<dataset_dir>/datalist.json``.

    Returns:
        list of dicts with absolute ``image`` paths (and the other keys of the datalist).
    """
    path = datalist or os.path.join(dataset_dir, "datalist.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Datalist {path} does not exist; set dataset_dir or datalist to your data.")
    with open(path) as f:
        keys = list(json.load(f))
    if split not in keys:
        raise InputError(f"Datalist {path} has no split {split!r}; it has {keys}.")
    items = load_decathlon_datalist(path, is_segmentation=False, data_list_key=split, base_dir=dataset_dir)
    if not items:
        raise InputError(f"Split {split!r} of {path} is empty.")
    return items


def check_nifti_header(path: str) -> str | None:
    """Return what is wrong with a NIfTI file's header (unreadable, not one 3D volume), or None if fine.

    Only the header is read, so this is cheap; a file whose data is corrupt is caught when it is loaded.
    """
    try:
        shape = nib.load(path).shape
    except Exception as err:  # nibabel raises many kinds for damaged files
        return f"cannot be read as NIfTI ({type(err).__name__}: {err})"
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        return f"is not a single 3D volume (shape {shape})"
    return None


def _expand(inputs: str | Sequence[str] | Sequence[Mapping], datalist_key: str) -> list[dict]:
    if isinstance(inputs, str) and inputs.endswith(".json"):
        base = os.path.dirname(os.path.abspath(inputs))
        return load_decathlon_datalist(inputs, is_segmentation=False, data_list_key=datalist_key, base_dir=base)
    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    items: list[dict] = []
    for p in paths:
        if isinstance(p, Mapping):  # an item of a datalist already (absolute paths, e.g. a run's test split)
            items.append({**p, "image": os.path.abspath(str(p["image"]))})
            continue
        p = os.fspath(p)
        if os.path.isdir(p):
            found = sorted(
                f for ext in NIFTI_SUFFIXES for f in glob.glob(os.path.join(p, "**", f"*{ext}"), recursive=True)
            )
        elif any(ch in p for ch in "*?["):
            found = sorted(glob.glob(p, recursive=True))
        else:
            found = [p]
        items += [{"image": os.path.abspath(f)} for f in found]
    return items


def scan_ids(items: Sequence[Mapping]) -> list[str]:
    """Unique, readable ids of scans, used as their output folder names (explanations, ``predict``).

    ``<subject>/<session>`` when every item has both and no pair repeats (Clinica datalists); else the image path
    relative to the folder that holds all images, without the NIfTI ending (``a/T1`` and ``b/T1`` for
    ``a/T1.nii.gz`` and ``b/T1.nii.gz``; the file stem when the scans share one folder). Never the base name
    alone when two scans share it.
    """
    pairs = [(str(i.get("subject") or ""), str(i.get("session") or "")) for i in items]
    if all(s and t for s, t in pairs) and len(set(pairs)) == len(pairs):
        return [f"{s}/{t}" for s, t in pairs]
    paths = [os.path.abspath(str(i["image"])) for i in items]
    if not paths:
        return []
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    ids = [os.path.join(os.path.dirname(os.path.relpath(p, root)), nifti_stem(p)) for p in paths]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:  # the same file listed twice, or x.nii next to x.nii.gz
        raise InputError(f"Scans listed twice or with the same name in one folder: {duplicated[:5]}.")
    return ids


def inference_datalist(
    inputs: str | Sequence[str] | Sequence[Mapping],
    output_dir: str | None = None,
    datalist_key: str = "test",
    check: Callable[[str], str | None] | None = None,
) -> list[dict]:
    """Build the inference datalist from a folder, a glob, a list of NIfTI files, datalist items or a datalist JSON.

    Files that are missing, unreadable, not a single 3D volume or (with ``check``) not usable by the model are left
    out with one log line each naming the file and the problem, and listed in ``<output_dir>/skipped.csv``
    (columns :data:`SKIPPED_COLUMNS`; written on every run, empty when nothing was skipped); the other scans still
    run. Each item gets a ``scan_id`` (:func:`scan_ids`).

    Args:
        inputs: what to run on; paths in a datalist JSON are relative to the JSON's folder.
        output_dir: where ``skipped.csv`` goes (None: not written).
        datalist_key: the split of a datalist JSON.
        check: returns the problem of a file, or None if the model can use it; e.g. a trained run's
            :class:`~axial_monai.input_check.InputCheck` (grid, brain-extracted).

    Raises:
        InputError: if no usable scan is left.
    """
    items = _expand(inputs, datalist_key)
    for item, sid in zip(items, scan_ids(items), strict=True):
        item["scan_id"] = sid
    good, skipped = [], []
    for item in items:
        path = item["image"]
        problem = "does not exist" if not os.path.isfile(path) else check_nifti_header(path)
        if problem is None and check is not None:
            problem = check(path)
        if problem:
            logger.error(f"Skipping {path}: {problem}.")
            skipped.append({"file": path, "problem": problem})
        else:
            good.append(item)
    if output_dir:
        write_csv(os.path.join(output_dir, "skipped.csv"), pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS)))
    if not good:
        raise InputError(
            f"No usable scan in {inputs if isinstance(inputs, str) else len(items)!r} ({len(skipped)} skipped"
            + (f"; see {os.path.join(output_dir, 'skipped.csv')}" if output_dir else "")
            + ")."
        )
    return good
