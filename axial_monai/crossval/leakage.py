"""Hard guards against subject leakage between the splits of a fold, and between transfer-learning folds.

Both raise an error (:class:`~axial_monai.errors.InputError`, :class:`~axial_monai.errors.SettingsError`) with
the offending subject ids; the cross-validation runner calls them before it
trains each fold, so a leaky split never reaches the trainer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

import pandas as pd

from ..errors import InputError, SettingsError

__all__ = ["split_subjects", "check_no_leakage", "check_transfer_leakage"]


def split_subjects(items: pd.DataFrame | Iterable[Mapping], where: str = "split") -> set[str]:
    """The subject ids of a split given as a table (``subject`` column) or datalist items (``"subject"`` keys).

    Raises:
        InputError: if a row or item has no subject.
    """
    if isinstance(items, pd.DataFrame):
        if "subject" not in items.columns or items["subject"].isna().any():
            raise InputError(f"Every scan of the {where} needs a subject id to check for leakage.")
        return set(items["subject"].astype(str))
    subjects = set()
    for item in items:
        if item.get("subject") in (None, ""):
            raise InputError(f"A datalist item of the {where} has no 'subject' ({item.get('image', item)}).")
        subjects.add(str(item["subject"]))
    return subjects


def check_no_leakage(splits: Mapping[str, pd.DataFrame | Iterable[Mapping]], fold: int | None = None) -> None:
    """Refuse a fold in which a subject appears in more than one split.

    Args:
        splits: ``{"training": ..., "validation": ..., "test": ...}``, each a table or datalist items.
        fold: fold index, for the message.

    Raises:
        InputError: listing every subject found in two or more splits, with those splits.
    """
    where = "" if fold is None else f"fold {fold}: "
    members = {name: split_subjects(items, f"{where}{name} split") for name, items in splits.items()}
    shared: dict[str, list[str]] = {}
    for name, subjects in members.items():
        for subject in subjects:
            shared.setdefault(subject, []).append(name)
    leaks = {s: names for s, names in sorted(shared.items()) if len(names) > 1}
    if leaks:
        listing = "; ".join(f"{s} in {' and '.join(names)}" for s, names in leaks.items())
        raise InputError(
            f"Subject leakage in {where or 'the splits: '}{len(leaks)} subject(s) in two splits: {listing}."
        )


def check_transfer_leakage(
    test_subjects: Iterable[str], source_datalist: str | os.PathLike, fold: int | None = None
) -> None:
    """Refuse to fine-tune from a model that trained or validated on one of this fold's test subjects.

    Args:
        test_subjects: subject ids of the fold's test split (the task being fine-tuned, e.g. sMCI vs pMCI).
        source_datalist: the ``datalist.json`` of the same fold of the run the weights come from (AD vs CN).
        fold: fold index, for the message.

    Raises:
        FileNotFoundError: if ``source_datalist`` does not exist.
        InputError: if it cannot be read or lacks subject ids.
        SettingsError: if its training/validation splits hold test subjects
            (listed in the message).
    """
    path = str(source_datalist)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"The datalist {path} of the run to transfer from does not exist; it is needed to check for leakage."
        )
    try:
        with open(path) as f:
            source = json.load(f)
    except (OSError, ValueError) as err:
        raise InputError(f"Cannot read the datalist {path}: {err}") from None
    test = {str(s) for s in test_subjects}
    where = "" if fold is None else f"Fold {fold}: "
    leaks = {}
    for name in ("training", "validation"):
        seen = split_subjects(source.get(name, []), f"{name} split of {path}")
        leaks.update({s: leaks.get(s, []) + [name] for s in sorted(seen & test)})
    if leaks:
        listing = "; ".join(f"{s} ({' and '.join(names)})" for s, names in sorted(leaks.items()))
        raise SettingsError(
            f"{where}{len(leaks)} test subject(s) of this fold were in the training/validation data of the model "
            f"to transfer from ({path}): {listing}. Run both cross-validations with the same fold assignment "
            "(the fine-tuning run reuses the source run's fold_assignment.csv)."
        )
