"""Labelled scan tables from a Clinica BIDS tree (``participants.tsv`` + ``sub-X/sub-X_sessions.tsv``).

Tasks (labels per scan; positive class = 1):

* ``"ADvsCN"``: every session diagnosed AD (1) or CN (0); MCI and unknown diagnoses are left out.
* ``"pMCIvsSMCI"``: every MCI session at month ``m`` whose subject has a session at exactly ``m + horizon``
  months (default 36, as in AXIAL): AD there -> pMCI (1), MCI there -> sMCI (0). A missing follow-up session,
  CN or an unknown diagnosis at follow-up -> left out. Months come from the session ids (``ses-M000``,
  ``ses-M012``, ... also ``ses-M12``; one month written both ways in a subject is refused). Labels are computed
  on the full longitudinal table, before any split; a subject may contribute several scans, even with different
  labels.

Diagnoses (``diagnosis`` column of ``sessions.tsv``) must be ``CN``, ``MCI`` or ``AD`` (any case) or missing
(``n/a``). Any other value (ADNIMERGE writes ``Dementia``) is refused with the file and line, never silently dropped;
``diagnosis_map`` maps such values, e.g. ``{"Dementia": "AD"}``, or ``"adnimerge"`` for :data:`ADNIMERGE_DIAGNOSES`
(a value mapped to ``None`` marks the session as unknown on purpose).

Image paths are the raw ``sub-X/ses-Y/anat/*_T1w.nii[.gz]`` or, when ``derivatives_dir`` is given, the
preprocessed ``*_space-<template>[_res-...]_desc-preproc_T1w.nii.gz`` of :mod:`axial_monai.preprocess` (both
named as in :mod:`axial_monai.derivatives`).

Example:
    >>> table = clinica_task_table("/data/ADNI_BIDS", "pMCIvsSMCI", derivatives_dir="/data/ADNI_BIDS")
    >>> items = to_datalist(table)  # [{"image": ..., "label": 1, "subject": ..., "session": ..., ...}, ...]
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..derivatives import DerivativesLayout, raw_t1w_images, session_month
from ..errors import InputError, SettingsError

__all__ = [
    "TASKS",
    "DIAGNOSES",
    "ADNIMERGE_DIAGNOSES",
    "normalize_diagnoses",
    "session_month",
    "read_participants",
    "read_sessions",
    "find_session_image",
    "load_clinica_table",
    "label_sessions",
    "clinica_task_table",
    "drop_qc_failed",
    "splittable_scans",
    "to_datalist",
]

#: the classification tasks.
TASKS = ("ADvsCN", "pMCIvsSMCI")
DIAGNOSES = ("CN", "MCI", "AD")
#: ADNIMERGE's per-visit ``DX`` and baseline ``DX_bl`` spellings that are not ours (``diagnosis_map="adnimerge"``).
ADNIMERGE_DIAGNOSES = {"DEMENTIA": "AD", "EMCI": "MCI", "LMCI": "MCI"}


def _diagnosis_mapping(diagnosis_map: Mapping[str, str | None] | str | None) -> dict[str, str | None]:
    if diagnosis_map is None:
        return {}
    if isinstance(diagnosis_map, str):
        if diagnosis_map.lower() != "adnimerge":
            raise SettingsError(f"diagnosis_map must be a mapping or 'adnimerge', not {diagnosis_map!r}.")
        diagnosis_map = ADNIMERGE_DIAGNOSES
    mapping = {}
    for raw, ours in dict(diagnosis_map).items():
        target = None if ours is None or pd.isna(ours) else str(ours).strip().upper()
        if target not in (*DIAGNOSES, None):
            raise SettingsError(
                f"diagnosis_map must map to one of {list(DIAGNOSES)} or None; {raw!r} maps to {ours!r}."
            )
        mapping[str(raw).strip().upper()] = target
    return mapping


def normalize_diagnoses(
    values: pd.Series, diagnosis_map: Mapping[str, str | None] | str | None = None
) -> tuple[pd.Series, pd.Series]:
    """Diagnoses in upper case, mapped by ``diagnosis_map``, and which of them are not ``CN``/``MCI``/``AD``.

    Args:
        values: raw ``diagnosis`` strings (missing values stay missing).
        diagnosis_map: ``{raw: "CN"|"MCI"|"AD"|None}`` (case-insensitive keys) or ``"adnimerge"``.

    Returns:
        ``(diagnoses, unknown)``: the normalised values (``None`` where missing or mapped to ``None``) and a
        boolean mask of values that are neither missing nor one of :data:`DIAGNOSES`.

    Raises:
        ValueError: for a ``diagnosis_map`` that is not a mapping to our diagnoses.
    """
    mapping = _diagnosis_mapping(diagnosis_map)
    upper = values.astype("string").str.strip().str.upper()
    mapped = upper.map(lambda v: mapping.get(v, v) if isinstance(v, str) else None).astype(object)
    mapped = mapped.where(mapped.notna(), None)
    unknown = mapped.map(lambda v: v is not None and v not in DIAGNOSES).astype(bool)
    return mapped, unknown


def _read_tsv(path: Path, required: tuple[str, ...], what: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"The {what} file {path} does not exist.")
    # pandas' default missing values include BIDS's "n/a" (and "N/A", "NA", empty cells)
    table = pd.read_csv(path, sep="\t", dtype=str)
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise InputError(
            f"The {what} file {path} has no column {', '.join(repr(c) for c in missing)}; "
            f"its columns are {list(table.columns)}."
        )
    return table


def read_participants(bids_dir: str | os.PathLike) -> pd.DataFrame:
    """``participants.tsv`` with ``participant_id`` (required) and, where present, ``sex`` and ``age``/``age_bl``.

    Raises:
        FileNotFoundError: if the file is missing.
        InputError: if ``participant_id`` is missing or duplicated.
    """
    path = Path(bids_dir) / "participants.tsv"
    table = _read_tsv(path, ("participant_id",), "participants")
    duplicated = table["participant_id"][table["participant_id"].duplicated()].tolist()
    if duplicated:
        raise InputError(f"The participants file {path} lists {duplicated} more than once.")
    return table


def read_sessions(bids_dir: str | os.PathLike, subject: str) -> pd.DataFrame:
    """``sub-X/sub-X_sessions.tsv`` of one subject, with ``session_id`` and ``diagnosis`` (required).

    Raises:
        FileNotFoundError: if the file is missing.
        InputError: if a required column is missing, a session is listed twice, or one month is written two
            ways (``ses-M48`` and ``ses-M048``: its follow-up would be ambiguous).
    """
    path = Path(bids_dir) / subject / f"{subject}_sessions.tsv"
    table = _read_tsv(path, ("session_id", "diagnosis"), "sessions")
    ids = table["session_id"].str.strip()
    duplicated = ids[ids.duplicated()].tolist()
    if duplicated:
        raise InputError(f"The sessions file {path} lists {duplicated} more than once.")
    months = ids.map(session_month)
    same_month = ids[months.notna() & months.duplicated(keep=False)].tolist()
    if same_month:
        raise InputError(
            f"The sessions file {path} lists {same_month}: one month written two ways (ses-M48 vs ses-M048); keep one."
        )
    return table


def find_session_image(
    bids_dir: str | os.PathLike,
    subject: str,
    session: str,
    derivatives_dir: str | os.PathLike | None = None,
    space: str | None = None,
) -> str | None:
    """The T1w image of one session, raw or preprocessed, or ``None`` if there is none.

    Args:
        bids_dir: BIDS root.
        subject: e.g. ``"sub-ADNI002S0295"``.
        session: e.g. ``"ses-M012"``.
        derivatives_dir: the preprocessing's pipeline folder (``OUT/derivatives/axial-monai``) or ``OUT`` itself;
            ``None`` for the raw image.
        space: template label to pick among several preprocessed versions (e.g. ``"MNI152NLin2009cAsym"``).

    Returns:
        the absolute path; the first in sorted order (with a warning) if a session has several.
    """
    if derivatives_dir is None:
        found = raw_t1w_images(bids_dir, subject, session)
    else:
        found = DerivativesLayout.find(derivatives_dir).find_images(subject, session, space)
    if len(found) > 1:
        warnings.warn(
            f"{subject} {session} has {len(found)} T1w images ({[os.path.basename(p) for p in found]}); "
            f"using {os.path.basename(found[0])}" + ("" if derivatives_dir is None or space else "; set space"),
            stacklevel=2,
        )
    return found[0] if found else None


def _age_column(sessions: pd.DataFrame, participant: pd.Series) -> pd.Series:
    """Age per session: the sessions' ``age`` if present, else the participant's baseline ``age``/``age_bl`` +
    months / 12, else missing."""
    if "age" in sessions.columns:
        return pd.to_numeric(sessions["age"], errors="coerce")
    for column in ("age", "age_bl"):
        if column in participant.index and pd.notna(participant[column]):
            baseline = pd.to_numeric(participant[column], errors="coerce")
            return baseline + sessions["month"].astype(float) / 12.0
    return pd.Series(np.nan, index=sessions.index)


def load_clinica_table(
    bids_dir: str | os.PathLike,
    derivatives_dir: str | os.PathLike | None = None,
    space: str | None = None,
    diagnosis_map: Mapping[str, str | None] | str | None = None,
) -> pd.DataFrame:
    """The full longitudinal table: one row per session listed in the subjects' ``sessions.tsv`` files.

    Args:
        bids_dir: Clinica BIDS root (``participants.tsv``, ``sub-X/sub-X_sessions.tsv``, images).
        derivatives_dir: preprocessing output (pipeline folder, or the folder holding
            ``derivatives/axial-monai``): image paths point to the preprocessed images; ``None``: raw images.
        space: template label of the preprocessed images to use, if there are several.
        diagnosis_map: maps other diagnosis spellings to ours, e.g. ``{"Dementia": "AD"}`` or ``"adnimerge"``
            (see the module docstring).

    Returns:
        columns ``subject``, ``session``, ``month`` (``Int64``, missing for ids without ``M<digits>``),
        ``diagnosis`` (upper case, missing where unknown), ``sex``, ``age`` (missing where unknown) and
        ``image`` (``None`` where the session has no image), sorted by subject and month.

    Raises:
        FileNotFoundError: if ``participants.tsv`` or a subject's sessions file is missing.
        InputError: if a required column is missing, a subject, session or month is listed twice (``ses-M48`` and
            ``ses-M048``), or a diagnosis is not CN, MCI, AD or missing after ``diagnosis_map`` (the message names
            the file and lines).
    """
    participants = read_participants(bids_dir).set_index("participant_id", drop=False)
    frames = []
    for subject in participants.index:
        sessions = read_sessions(bids_dir, subject)
        participant = participants.loc[subject]
        diagnoses, unknown = normalize_diagnoses(sessions["diagnosis"], diagnosis_map)
        if unknown.any():
            path = Path(bids_dir) / subject / f"{subject}_sessions.tsv"
            lines = ", ".join(f"line {i + 2}: {sessions['diagnosis'].iloc[i]!r}" for i in np.flatnonzero(unknown)[:10])
            raise InputError(
                f"{path} has diagnoses that are not {', '.join(DIAGNOSES)} or n/a ({lines}). Map them with "
                "diagnosis_map, e.g. {'Dementia': 'AD'} or 'adnimerge' (--diagnosis_map on the command line), or "
                "map them to None to leave those sessions out."
            )
        session_ids = sessions["session_id"].str.strip()
        frame = pd.DataFrame(
            {
                "subject": subject,
                "session": session_ids,
                "month": session_ids.map(session_month).astype("Int64"),
                "diagnosis": diagnoses,
            }
        )
        frame["sex"] = participant["sex"] if "sex" in participants.columns else None
        frame["age"] = _age_column(sessions.assign(month=frame["month"]), participant).to_numpy()
        frames.append(frame)
    empty = pd.DataFrame(columns=["subject", "session", "month", "diagnosis", "sex", "age"])
    table = pd.concat(frames, ignore_index=True) if frames else empty
    table["image"] = [
        find_session_image(bids_dir, row.subject, row.session, derivatives_dir, space)
        for row in table.itertuples(index=False)
    ]
    return table.sort_values(["subject", "month", "session"]).reset_index(drop=True)


def label_sessions(table: pd.DataFrame, task: str, horizon: int = 36) -> pd.DataFrame:
    """Rows of the longitudinal ``table`` that get a label for ``task``, with an integer ``label`` column.

    Args:
        table: the full longitudinal table (:func:`load_clinica_table`; needs ``subject``, ``session``,
            ``month``, ``diagnosis``).
        task: ``"ADvsCN"`` or ``"pMCIvsSMCI"`` (see the module docstring).
        horizon: months between an MCI session and its follow-up for ``"pMCIvsSMCI"``.

    Returns:
        the labelled rows (a copy), sorted as ``table``; for ``"pMCIvsSMCI"`` also ``followup_session`` and
        ``followup_diagnosis``.

    Raises:
        SettingsError: for an unknown task or a non-positive horizon.
        InputError: for missing columns.
    """
    missing = [column for column in ("subject", "session", "month", "diagnosis") if column not in table.columns]
    if missing:
        raise InputError(f"The table has no column {missing}; it has {list(table.columns)}.")
    if task == "ADvsCN":
        labelled = table[table["diagnosis"].isin(["AD", "CN"])].copy()
        labelled["label"] = (labelled["diagnosis"] == "AD").astype(int)
        return labelled
    if task != "pMCIvsSMCI":
        raise SettingsError(f"task must be one of {list(TASKS)}, not {task!r}.")
    if int(horizon) != horizon or horizon <= 0:
        raise SettingsError(f"horizon must be a positive number of months, not {horizon!r}.")
    if table["month"].isna().any() and (table["diagnosis"] == "MCI").any():
        odd = table.loc[table["month"].isna(), "session"].unique().tolist()
        warnings.warn(f"Sessions {odd} have no month (ses-M<digits>); they get no pMCI/sMCI label.", stacklevel=2)
    known = table.dropna(subset=["month"])
    followups = known[["subject", "month", "session", "diagnosis"]].rename(
        columns={"session": "followup_session", "diagnosis": "followup_diagnosis", "month": "followup_month"}
    )
    mci = known[known["diagnosis"] == "MCI"].copy()
    mci["followup_month"] = mci["month"] + int(horizon)
    merged = mci.merge(followups, on=["subject", "followup_month"], how="left", validate="many_to_one")
    merged = merged[merged["followup_diagnosis"].isin(["AD", "MCI"])].copy()
    merged["label"] = (merged["followup_diagnosis"] == "AD").astype(int)
    merged = merged.drop(columns="followup_month")
    return merged.sort_values(["subject", "month", "session"]).reset_index(drop=True)


def clinica_task_table(
    bids_dir: str | os.PathLike,
    task: str = "ADvsCN",
    derivatives_dir: str | os.PathLike | None = None,
    horizon: int = 36,
    space: str | None = None,
    missing_image: str = "raise",
    diagnosis_map: Mapping[str, str | None] | str | None = None,
) -> pd.DataFrame:
    """The labelled scans of a Clinica BIDS tree for ``task``: :func:`load_clinica_table` + :func:`label_sessions`.

    Args:
        bids_dir: Clinica BIDS root.
        task: ``"ADvsCN"`` or ``"pMCIvsSMCI"``.
        derivatives_dir: preprocessing output (see :func:`load_clinica_table`); ``None``: raw images.
        horizon: follow-up months for ``"pMCIvsSMCI"`` (default 36).
        space: template label of the preprocessed images, if there are several.
        missing_image: ``"raise"`` (default) or ``"drop"`` (with a warning) for a labelled session without image
            (e.g. a scan whose preprocessing failed).
        diagnosis_map: maps other diagnosis spellings to ours (see the module docstring).

    Returns:
        one row per labelled scan: ``subject``, ``session``, ``month``, ``diagnosis``, ``sex``, ``age``,
        ``image``, ``label`` (and ``followup_session``/``followup_diagnosis`` for pMCIvsSMCI).

    Raises:
        SettingsError: for bad arguments.
        InputError: for a labelled session without image when ``missing_image="raise"``.
        FileNotFoundError: for a missing TSV file.
    """
    if missing_image not in ("raise", "drop"):
        raise SettingsError(f"missing_image must be 'raise' or 'drop', not {missing_image!r}.")
    if task not in TASKS:
        raise SettingsError(f"task must be one of {list(TASKS)}, not {task!r}.")
    labelled = label_sessions(load_clinica_table(bids_dir, derivatives_dir, space, diagnosis_map), task, horizon)
    absent = labelled["image"].isna()
    if absent.any():
        where = "preprocessed (*_desc-preproc_T1w.nii.gz)" if derivatives_dir is not None else "raw (*_T1w.nii[.gz])"
        pairs = [f"{row.subject}/{row.session}" for row in labelled[absent].itertuples(index=False)]
        message = f"{len(pairs)} labelled session(s) of {task} have no {where} image: {pairs[:10]}" + (
            " ..." if len(pairs) > 10 else ""
        )
        if missing_image == "raise":
            raise InputError(message + "; pass missing_image='drop' to leave them out.")
        warnings.warn(message + "; they are left out.", stacklevel=2)
        labelled = labelled[~absent]
    return labelled.reset_index(drop=True)


def to_datalist(df: pd.DataFrame, extra_keys: tuple[str, ...] = ()) -> list[dict]:
    """Datalist items ``{"image", "label", "subject", "session", "diagnosis"}`` (+ ``extra_keys``) of a table.

    Args:
        df: a table from :func:`clinica_task_table` (or any with those columns).
        extra_keys: more columns to copy into every item (e.g. ``("age", "sex")``).

    Returns:
        one dict per row, with a Python ``int`` label and ``str`` image path.

    Raises:
        InputError: if a needed column is missing or an image is missing.
    """
    keys = ("image", "label", "subject", "session", "diagnosis", *extra_keys)
    missing = [key for key in keys if key not in df.columns]
    if missing:
        raise InputError(f"The table has no column {missing}; it has {list(df.columns)}.")
    if df["image"].isna().any():
        rows = df.loc[df["image"].isna(), ["subject", "session"]].astype(str).agg("/".join, axis=1).tolist()
        raise InputError(f"Rows without image: {rows}.")
    items = []
    for row in df.itertuples(index=False):
        item = {
            "image": str(row.image),
            "label": int(row.label),
            "subject": str(row.subject),
            "session": str(row.session),
            "diagnosis": str(row.diagnosis),
        }
        for key in extra_keys:
            value = getattr(row, key)
            item[key] = value.item() if isinstance(value, np.generic) else value
        items.append(item)
    return items


def drop_qc_failed(
    table: pd.DataFrame, derivatives_dir: str | os.PathLike | None, include: bool = False
) -> tuple[pd.DataFrame, str]:
    """Leave out the scans that the preprocessing's QC gate failed.

    The preprocessing writes a refused scan's image too (for inspection) and marks it ``failed`` in its QC record
    (``qc/<image>.json``, gathered in ``qc.tsv``). An image without a record (preprocessed elsewhere) is kept.

    Args:
        table: one row per scan with an ``image`` column (e.g. :func:`clinica_task_table`).
        derivatives_dir: the preprocessing's pipeline folder, or the folder holding ``derivatives/axial-monai``;
            ``None`` (raw images): nothing is left out.
        include: keep the failed scans as well (they are still counted in the message).

    Returns:
        the table without the failed scans (all of it with ``include``), and what was done for the command line:
        the count and the first scans with the figure and the limit that failed them (empty when none failed).
    """
    if derivatives_dir is None or table.empty:
        return table, ""
    layout = DerivativesLayout.find(derivatives_dir)
    records = [_record(layout.record_path(image)) for image in table["image"]]
    failed = pd.Series([record.get("status", "ok") != "ok" for record in records], index=table.index)
    if not failed.any():
        return table, ""
    verb = "kept (--include_qc_failed)" if include else "left out (--include_qc_failed keeps them)"
    lines = [f"{int(failed.sum())} scan(s) failed the preprocessing's QC gate and were {verb}; see {layout.qc_table}:"]
    reasons = [record.get("error") or "failed" for record, bad in zip(records, failed, strict=True) if bad]
    lines += [f"  {row.subject} {row.session}: {why}" for row, why in zip(table[failed].itertuples(), reasons)][:10]
    lines += ["  ..."] if failed.sum() > 10 else []
    return (table if include else table[~failed]), "\n".join(lines) + "\n"


def splittable_scans(
    bids_dir: str | os.PathLike,
    task: str,
    derivatives_dir: str | os.PathLike | None = None,
    horizon: int = 36,
    space: str | None = None,
    missing_image: str = "raise",
    diagnosis_map: Mapping[str, str | None] | str | None = None,
    include_qc_failed: bool = False,
    joint: bool = False,
) -> tuple[pd.DataFrame, list[pd.DataFrame], str]:
    """What a datalist, a cross-validation or the benchmark splits: :func:`clinica_task_table` without the scans the
    QC gate failed (:func:`drop_qc_failed`), and with ``joint`` the other task's labelled sessions, whose subjects
    take part in the assignment to splits (a converter tested for sMCI vs pMCI never trained AD vs CN).

    Returns:
        the task's table, the other task's tables (``[]`` without ``joint``) and the QC message of
        :func:`drop_qc_failed` (empty when no scan failed).
    """
    table = clinica_task_table(bids_dir, task, derivatives_dir, horizon, space, missing_image, diagnosis_map)
    table, told = drop_qc_failed(table, derivatives_dir, include_qc_failed)
    others = []
    if joint:
        other = next(t for t in TASKS if t != task)
        full = load_clinica_table(bids_dir, derivatives_dir, space, diagnosis_map)
        others.append(label_sessions(full, other, horizon))
    return table, others, told


def _record(path: Path) -> dict:
    """A QC record, or ``{}`` if it is missing or unreadable (the data layer does not import the preprocessing)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
