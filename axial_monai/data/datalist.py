"""Datalists for the bundle: split lists for training/evaluation and file lists for inference."""

from __future__ import annotations

import glob
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence, Sized
from pathlib import Path

import pandas as pd

from ..errors import InputError, one_line, refuse_or_drop
from ..input_check import affine_problem, load_header, voxel_problem
from ..io import NIFTI_SUFFIXES, nifti_stem, write_csv
from ..layout import RunLayout

__all__ = [
    "load_split",
    "check_items",
    "labelled_split",
    "require_items",
    "expand_inputs",
    "inference_datalist",
    "ScanList",
    "check_nifti_header",
    "scan_ids",
    "SKIPPED_COLUMNS",
    "RESERVED_IDS",
    "voxel_problems",
]

#: columns of ``skipped.csv``: the scan and its problem (one line, naming what was expected).
SKIPPED_COLUMNS = ("file", "problem")

logger = logging.getLogger(__name__)


def load_split(
    dataset_dir: str | None,
    split: str,
    datalist: str | None = None,
    keys: Sequence[str] = ("image",),
    num_classes: int | None = None,
) -> list[dict]:
    """Items of one split (``"training"``, ``"validation"``, ``"test"``) of a datalist JSON.

    Args:
        dataset_dir: base directory of relative image paths (None: the datalist's folder).
        split: key of the split in the datalist.
        datalist: JSON path; default ``<dataset_dir>/datalist.json``.
        keys: keys every item must have (training and evaluation: ``("image", "label")``).
        num_classes: if given, every ``label`` must be a class index ``0 .. num_classes - 1``.

    Returns:
        list of dicts with absolute ``image`` paths (and the other keys of the datalist).

    Raises:
        FileNotFoundError: if the datalist does not exist.
        InputError: if it cannot be read, has no such split or an empty one, or if items lack a key, have an
            unknown label or list the same image twice: one message naming the datalist, the split and every such
            item (1-based position in the split).
    """
    path = datalist or os.path.join(dataset_dir, RunLayout.DATALIST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Datalist {path} does not exist; set dataset_dir or datalist to your data.")
    try:
        with open(path) as f:
            content = json.load(f)
    except (OSError, ValueError) as err:
        raise InputError(f"Cannot read the datalist {path} as JSON ({one_line(err)}).") from None
    if not isinstance(content, Mapping):
        raise InputError(f"Datalist {path} must be a JSON object of splits, not a {type(content).__name__}.")
    if split not in content:
        raise InputError(f"Datalist {path} has no split {split!r}; it has {list(content)}.")
    if not isinstance(content[split], list) or not all(isinstance(i, Mapping) for i in content[split]):
        raise InputError(f"Split {split!r} of {path} must be a list of items ({{'image': ..., 'label': ...}}).")
    if not content[split]:
        raise InputError(f"Split {split!r} of {path} is empty; add items or use another split.")
    from monai.data import load_decathlon_datalist  # here: check-bids and the datalist tools start without MONAI

    items = load_decathlon_datalist(path, is_segmentation=False, data_list_key=split, base_dir=dataset_dir)
    problems = _item_problems(items, keys, num_classes)
    if problems:
        raise InputError(
            f"Datalist {path}, split {split!r}: {len(problems)} bad item(s): {'; '.join(problems)}. Fix the datalist."
        )
    return items


def _item_problems(items: Sequence[Mapping], keys: Sequence[str], num_classes: int | None) -> list[str]:
    """One line per item that lacks a key, has an unknown label or repeats an image (1-based positions)."""
    problems = []
    first: dict[str, int] = {}
    for n, item in enumerate(items, start=1):
        missing = [k for k in keys if item.get(k) in (None, "")]
        if missing:
            problems.append(f"item {n} has no {' and no '.join(repr(k) for k in missing)} ({dict(item)})")
        label = item.get("label")
        if num_classes is not None and label is not None:
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
                problems.append(
                    f"item {n} ({item.get('image')}) has label {label!r}, not a class index 0..{num_classes - 1}"
                )
        image = item.get("image")
        if image:
            image = os.path.normpath(str(image))
            if image in first:
                problems.append(f"item {n} repeats item {first[image]} ({image})")
            else:
                first[image] = n
    return problems


def check_items(
    items: Sequence[Mapping], where: str, check: Callable[[str], str | None] | None = None, drop: bool = False
) -> list[dict]:
    """Check the image files of datalist items (exist, readable NIfTI header, one 3D volume, non-singular affine,
    and ``check``, e.g. the run's grid) and refuse them all at once, or drop the bad ones.

    Training calls this on its splits (``drop_bad_items`` in ``train.json``), so a datalist with several bad files
    costs one run to find them all, not one run per file. Damaged voxel data (NaN, an all-zero volume, a file cut
    short behind a fine header) shows only when a volume is read, which the training dataset does next; when the
    headers already refuse the split, the voxels of the other items are read first, so that the one message lists
    those too.

    Args:
        items: datalist items with an ``image`` path.
        where: what the items are, for the message (e.g. ``"the training split of datalist.json"``).
        check: returns the problem of a file or None (e.g. a run's :class:`~axial_monai.input_check.InputCheck`).
        drop: leave the bad items out (one warning naming each) instead of raising.

    Returns:
        the usable items (all of them unless ``drop``).

    Raises:
        InputError: one line listing every bad item and its problem, unless ``drop``.
    """
    good, bad = [], []
    for item in items:
        path = str(item["image"])
        problem = "does not exist" if not os.path.isfile(path) else check_nifti_header(path)
        if problem is None and check is not None:
            problem = check(path)
        if problem:
            bad.append(f"{path} {problem}")
        else:
            good.append(dict(item))
    refuse_or_drop(bad, len(items), f"items of {where}", drop, more=lambda: voxel_problems(good))
    if not good:
        raise InputError(f"No usable item is left in {where}: {'; '.join(bad)}.")
    return good


def labelled_split(
    dataset_dir: str | None,
    split: str,
    datalist: str | None = None,
    num_classes: int | None = None,
    check: Callable[[str], str | None] | None = None,
    drop: bool = False,
) -> list[dict]:
    """The checked items (``image``, ``label``) of one split of a datalist, for training or evaluation.

    :func:`load_split` with ``keys=("image", "label")``, then :func:`check_items`. With neither ``dataset_dir`` nor
    ``datalist`` there is no data yet: no item, with a warning (a shared bundle's training config resolves before its
    receiver names the data; :func:`require_items` refuses the run).

    Args:
        dataset_dir: base directory of relative image paths.
        split: key of the split in the datalist.
        datalist: JSON path; default ``<dataset_dir>/datalist.json``.
        num_classes: every ``label`` must be a class index ``0 .. num_classes - 1``.
        check, drop: as :func:`check_items`.
    """
    if dataset_dir is None and datalist is None:
        logger.warning(f"No data for the {split} split: set dataset_dir (and datalist).")
        return []
    path = datalist or os.path.join(str(dataset_dir), RunLayout.DATALIST)
    # without dataset_dir, image paths are relative to the datalist's folder
    items = load_split(dataset_dir, split, path, keys=("image", "label"), num_classes=num_classes)
    return check_items(items, f"the {split} split of {path}", check=check, drop=drop)


def require_items(splits: Mapping[str, Sized]) -> None:
    """Refuse to start a run that has no data for one of its splits (the first step of a bundle's ``run``).

    Args:
        splits: split name -> its items or dataset, e.g. ``{"training": ..., "validation": ...}``.

    Raises:
        InputError: naming the empty splits and how to give the data.
    """
    empty = [name for name, items in splits.items() if len(items) == 0]
    if empty:
        raise InputError(
            f"No data for the {', '.join(empty)} split{'s' if len(empty) > 1 else ''}: set dataset_dir (the data "
            "folder) and datalist (default <dataset_dir>/datalist.json)."
        )


def check_nifti_header(path: str) -> str | None:
    """Return what is wrong with a NIfTI file's header (unreadable, not one 3D volume, singular affine), or None if
    fine (one line).

    Only the header is read, so this is cheap; a file whose data is corrupt is caught when its voxels are read (the
    run's :class:`~axial_monai.input_check.InputCheck` reads them).
    """
    try:
        image = load_header(path)
    except Exception as err:  # nibabel raises many kinds for damaged files
        return f"cannot be read as NIfTI ({one_line(err)})"
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        kind = f"a {len(shape)}D image" + (f" of {shape[3]} volumes" if len(shape) == 4 else "")
        return f"is not a single 3D volume ({kind}, shape {shape}); give one 3D T1 volume per file"
    return affine_problem(image.affine)


def expand_inputs(inputs: str | Sequence[str] | Sequence[Mapping], datalist_key: str = "test") -> list[dict]:
    """Datalist items ``{"image": absolute path, ...}`` of a datalist JSON (its ``datalist_key`` split, paths relative
    to the JSON's folder), or of folders (every NIfTI file below, sorted), globs, files and items, in order."""
    if isinstance(inputs, str) and inputs.endswith(".json"):
        from monai.data import load_decathlon_datalist

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


class ScanList(list):
    """The scans of an inference or explanation run: the usable datalist items (the list itself) and the others.

    :func:`inference_datalist` builds it while the bundle's config is resolved, so building it only reads headers
    and writes nothing (the model zoo resolves a bundle's configs without data to check its properties). The run
    starts with :meth:`report` and ends with :meth:`exit_if_skipped`.

    Attributes:
        skipped: ``{"file", "problem"}`` of each scan left out (columns :data:`SKIPPED_COLUMNS`).
        given: how many scans were given.
    """

    def __init__(self, items: Sequence[Mapping], skipped: Sequence[Mapping[str, str]], given: int) -> None:
        super().__init__(items)
        self.skipped = [dict(row) for row in skipped]
        self.given = int(given)

    def report(self, output_dir: str | os.PathLike) -> None:
        """Write ``<output_dir>/skipped.csv`` (empty when nothing was skipped) and refuse a run with no usable scan.

        Raises:
            InputError: if no scan was given, or none is usable (one line; the file lists why).
        """
        path = os.path.join(output_dir, RunLayout.SKIPPED)
        write_csv(path, pd.DataFrame(self.skipped, columns=list(SKIPPED_COLUMNS)))
        if not self.given:
            raise InputError(
                "No scans to run on: pass --input with a folder, NIfTI files or a datalist JSON (with --datalist_key "
                "for its split)."
            )
        if not self:
            raise InputError(f"No usable scan among the {self.given} given ({len(self.skipped)} skipped; see {path}).")

    def exit_if_skipped(self) -> None:
        """End a batch run with exit status 1 if it skipped any scan (the bundle's ``finalize`` step).

        The other scans have been processed and written by then; the status lets a job script or a scheduler notice
        that ``skipped.csv`` lists scans that still need attention.

        Raises:
            SystemExit: status 1, after one log line, if a scan was skipped.
        """
        if self.skipped:
            logger.error(
                f"{len(self.skipped)} scan(s) were skipped, listed with the reason in skipped.csv; the others finished."
            )
            raise SystemExit(1)


def inference_datalist(
    inputs: str | Sequence[str] | Sequence[Mapping] | None,
    datalist_key: str = "test",
    check: Callable[[str], str | None] | None = None,
) -> ScanList:
    """The scans of an inference run, from a folder, a glob, a list of NIfTI files, datalist items or a datalist JSON.

    Files that are missing, unreadable, not a single 3D volume or (with ``check``) not usable by the model are left
    out with one log line each naming the file and the problem; :meth:`ScanList.report` lists them in
    ``skipped.csv`` when the run starts, and the other scans still run. Each item keeps its ``scan_id`` or gets one
    (:func:`scan_ids`): its output folder name.

    Args:
        inputs: what to run on (``None`` or empty: nothing yet; the run then refuses to start); paths in a datalist
            JSON are relative to the JSON's folder.
        datalist_key: the split of a datalist JSON.
        check: returns the problem of a file, or None if the model can use it; e.g. a trained run's
            :class:`~axial_monai.input_check.InputCheck` (grid, brain-extracted).

    Raises:
        InputError: if two scans would get the same output folder.
    """
    items = expand_inputs(inputs, datalist_key) if inputs else []
    if inputs and not items:
        logger.warning(f"No scan found in {inputs}.")
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
    return ScanList(good, skipped, len(items))


def voxel_problems(items: Sequence[Mapping]) -> list[str]:
    """``"<file> <problem>"`` for each item whose voxel data is damaged behind a fine header (cut short, NaN, all
    zero): found only by reading the volumes, which a refusal does so that its one message lists these too."""
    return [line for line in (voxel_problem(str(item["image"])) for item in items) if line]
