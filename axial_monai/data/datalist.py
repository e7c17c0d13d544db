"""Datalists for the bundle: split lists for training/evaluation and file lists for inference."""

from __future__ import annotations

import glob
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import pandas as pd
from monai.data import load_decathlon_datalist

from axial_monai.errors import InputError
from axial_monai.io import NIFTI_SUFFIXES, nifti_stem, write_csv

__all__ = [
    "load_split",
    "expand_inputs",
    "inference_datalist",
    "check_nifti_header",
    "scan_ids",
    "SKIPPED_COLUMNS",
    "RESERVED_IDS",
]

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


def expand_inputs(inputs: str | Sequence[str] | Sequence[Mapping], datalist_key: str = "test") -> list[dict]:
    """Datalist items ``{"image": absolute path, ...}`` of a datalist JSON (its ``datalist_key`` split, paths relative
    to the JSON's folder), or of folders (every NIfTI file below, sorted), globs, files and items, in order."""
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


#: names that scan ids must not start with: the cohort outputs of an explanation run live beside the scans' folders.
RESERVED_IDS = ("cohort",)


def scan_ids(items: Sequence[Mapping]) -> list[str]:
    """Unique, readable ids of scans, used as their output folder names (explanations, ``predict``).

    ``<subject>/<session>`` when every item has both and no pair repeats (Clinica datalists). Else the shortest
    end of each image path, without the NIfTI ending, that tells it apart from the others: the file stem when
    stems are unique, ``a/T1`` and ``b/T1`` for ``a/T1.nii.gz`` and ``b/T1.nii.gz``, more parent folders as needed.
    An id never starts with a name of :data:`RESERVED_IDS`.

    Raises:
        InputError: if two items name the same file.
    """
    pairs = [(str(i.get("subject") or ""), str(i.get("session") or "")) for i in items]
    if pairs and all(s and t for s, t in pairs) and len(set(pairs)) == len(pairs):
        return [f"{s}/{t}" for s, t in pairs]
    paths = [os.path.abspath(str(i["image"])) for i in items]
    parts = [(*Path(p).parent.parts[1:], nifti_stem(p)) for p in paths]
    depth = [1] * len(parts)
    while True:
        ids = ["/".join(part[-d:]) for part, d in zip(parts, depth, strict=True)]
        counts = Counter(ids)
        clashing = [k for k, i in enumerate(ids) if counts[i] > 1 or i.split("/")[0] in RESERVED_IDS]
        longer = [k for k in clashing if depth[k] < len(parts[k])]
        if not longer:
            break
        for k in longer:
            depth[k] += 1
    repeated = sorted({ids[k] for k in clashing if counts[ids[k]] > 1})
    if repeated:  # the same file listed twice, or x.nii next to x.nii.gz
        raise InputError(f"Scans listed twice or with the same name in one folder: {repeated[:5]}.")
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
    run. Each item keeps its ``scan_id`` or gets one (:func:`scan_ids`): its output folder name.

    Args:
        inputs: what to run on; paths in a datalist JSON are relative to the JSON's folder.
        output_dir: where ``skipped.csv`` goes (None: not written).
        datalist_key: the split of a datalist JSON.
        check: returns the problem of a file, or None if the model can use it; e.g. a trained run's
            :class:`~axial_monai.input_check.InputCheck` (grid, brain-extracted).

    Raises:
        InputError: if no usable scan is left.
    """
    items = expand_inputs(inputs, datalist_key)
    unnamed = [item for item in items if not item.get("scan_id")]
    for item, sid in zip(unnamed, scan_ids(unnamed), strict=True):
        item["scan_id"] = sid
    ids = [str(item["scan_id"]) for item in items]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InputError(f"Scan ids must be unique (they name the output folders), but these repeat: {repeated[:5]}.")
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
        listed = f"; see {os.path.join(output_dir, 'skipped.csv')}" if output_dir else ""
        raise InputError(f"No usable scan among the {len(items)} given ({len(skipped)} skipped{listed}).")
    return good
