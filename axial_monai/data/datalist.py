"""Datalists for the bundle: split lists for training/evaluation and file lists for inference."""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Sequence

import nibabel as nib
import pandas as pd
from monai.data import load_decathlon_datalist

from axial_monai.errors import InputError
from axial_monai.io import NIFTI_SUFFIXES, write_csv

__all__ = ["load_split", "inference_datalist", "check_nifti_header"]

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


def _expand(inputs: str | Sequence[str], datalist_key: str) -> list[dict]:
    if isinstance(inputs, str) and inputs.endswith(".json"):
        base = os.path.dirname(os.path.abspath(inputs))
        return load_decathlon_datalist(inputs, is_segmentation=False, data_list_key=datalist_key, base_dir=base)
    paths = [inputs] if isinstance(inputs, str) else list(inputs)
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(
                f for ext in NIFTI_SUFFIXES for f in glob.glob(os.path.join(p, "**", f"*{ext}"), recursive=True)
            )
        elif any(ch in p for ch in "*?["):
            files += sorted(glob.glob(p, recursive=True))
        else:
            files.append(p)
    return [{"image": os.path.abspath(f)} for f in files]


def inference_datalist(
    inputs: str | Sequence[str], output_dir: str | None = None, datalist_key: str = "test"
) -> list[dict]:
    """Build the inference datalist from a folder, a glob, a list of NIfTI files or a datalist JSON.

    Files that are missing, unreadable or not a single 3D volume are left out with one log line each naming the
    file and the problem, and listed in ``<output_dir>/skipped.csv``; the other scans still run.

    Raises:
        InputError: if no usable scan is left.
    """
    items = _expand(inputs, datalist_key)
    good, skipped = [], []
    for item in items:
        path = item["image"]
        problem = "does not exist" if not os.path.isfile(path) else check_nifti_header(path)
        if problem:
            logger.error(f"Skipping {path}: {problem}.")
            skipped.append({"file": path, "problem": problem})
        else:
            good.append(item)
    if output_dir and skipped:
        write_csv(os.path.join(output_dir, "skipped.csv"), pd.DataFrame(skipped))
    if not good:
        raise InputError(f"No usable NIfTI scan found in {inputs!r} ({len(skipped)} skipped).")
    return good
