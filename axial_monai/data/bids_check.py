"""Check a Clinica BIDS tree before training: what is missing, where, which Clinica step makes it, and what each
task would get.

What is checked (each problem is one :class:`Problem`: severity, file, TSV line, message, fix):

* the tree exists and is not empty;
* ``participants.tsv``: present, ``participant_id`` column, no duplicates, every listed subject has a folder and
  every ``sub-*`` folder is listed;
* ``sub-X/sub-X_sessions.tsv``: present, ``session_id`` and ``diagnosis`` columns, no session twice, no month twice
  (``ses-M48`` and ``ses-M048``), diagnoses ``CN``/``MCI``/``AD``/``n/a`` (after ``diagnosis_map``);
* session ids written two ways: a row ``ses-M48`` whose folder is ``ses-M048`` (or the reverse), and trees that mix
  both widths (Clinica wrote two digits up to 0.7.3 and three from 0.7.4);
* per session: a folder, a ``*_T1w.nii[.gz]`` whose NIfTI header reads as one 3D volume and, with
  ``derivatives_dir``, the preprocessed image;
* per task: scans and subjects of each class (AD/CN; sMCI/pMCI at ``horizon`` months), from the same labelling code
  as training (:func:`axial_monai.data.clinica.label_sessions`).

Errors make the tree unusable (:func:`axial_monai.data.clinica.load_clinica_table` would refuse it, or a task has
no scan of a class); warnings are sessions or subjects that will be left out.

Example:
    >>> report = check_bids_tree("/data/ADNI_BIDS", tasks=["ADvsCN"])
    >>> print("\\n".join(report.lines())); report.usable
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ..errors import SettingsError
from .clinica import DIAGNOSES, TASKS, find_session_image, label_sessions, normalize_diagnoses, session_month
from .datalist import check_nifti_header

__all__ = ["CLASS_NAMES", "CLINICA_STEPS", "Problem", "BidsCheck", "check_bids_tree"]

#: class names in label order per task.
CLASS_NAMES = {"ADvsCN": ("CN", "AD"), "pMCIvsSMCI": ("sMCI", "pMCI")}
#: what produces each piece of the tree (named in every problem line).
CLINICA_STEPS = {
    "tree": "clinica convert adni-to-bids ADNI_DIR CLINICAL_DIR BIDS_DIR -m T1 (see docs: From ADNI to BIDS)",
    "participants": "clinica convert adni-to-bids writes participants.tsv from ADNIMERGE (rerun it with "
    "--clinical-data-only to rewrite the TSV files only)",
    "sessions": "clinica convert adni-to-bids writes sub-X/sub-X_sessions.tsv, diagnosis from ADNIMERGE DX (rerun "
    "with --clinical-data-only to rewrite the TSV files only)",
    "diagnosis": 'pass --diagnosis_map (e.g. \'{"Dementia": "AD"}\' or adnimerge), or fix the value; Clinica maps '
    "ADNIMERGE's Dementia to AD unless another DX value stops its mapping",
    "session_ids": "convert the whole tree with one Clinica version (>= 0.7.4 writes ses-M048, <= 0.7.3 ses-M48), "
    "or rename the folders and files to match sessions.tsv",
    "t1w": "clinica convert adni-to-bids -m T1 (the download needs the MPRAGE series with image types Original, "
    "Pre-processed and Post-processed; some visits are known conversion failures)",
    "preprocess": "axial-monai-preprocess BIDS_DIR OUT_DIR (a failed scan is listed in qc.tsv)",
}
_SESSION = re.compile(r"^ses-M(\d+)$")


@dataclass(frozen=True)
class Problem:
    """One problem of a tree.

    Attributes:
        severity: ``"error"`` (the tree or a task cannot be used) or ``"warning"`` (something is left out).
        file: the file or folder, relative to the BIDS root (``"."`` for the root).
        line: line number in a TSV file (the header is line 1), or ``None``.
        message: what is wrong.
        fix: the step that produces the missing piece.
    """

    severity: str
    file: str
    line: int | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.file + (f" line {self.line}" if self.line is not None else "")
        return f"{self.severity.upper()} {where}: {self.message} [fix: {self.fix}]"


@dataclass
class BidsCheck:
    """Result of :func:`check_bids_tree`.

    Attributes:
        root: the BIDS root.
        problems: in the order found.
        counts: task -> class name -> ``{"scans", "subjects", "with_image"}``.
        horizon: months of follow-up of pMCIvsSMCI.
        n_subjects, n_sessions, n_images: subjects with a sessions file, sessions listed, T1w images found.
    """

    root: Path
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    horizon: int = 36
    n_subjects: int = 0
    n_sessions: int = 0
    n_images: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def usable(self) -> bool:
        """True when there is no error."""
        return not self.errors

    def add(self, severity: str, file: str | os.PathLike, message: str, step: str, line: int | None = None) -> None:
        self.problems.append(Problem(severity, str(file), line, message, CLINICA_STEPS[step]))

    def count_lines(self) -> list[str]:
        """One line per task: scans / subjects of each class (and how many scans have an image)."""
        lines = []
        for task, classes in self.counts.items():
            name = task if task == "ADvsCN" else f"{task} (horizon {self.horizon} months)"
            parts = [
                f"{c} {v['scans']} scans / {v['subjects']} subjects ({v['with_image']} with image)"
                for c, v in classes.items()
            ]
            lines.append(f"{name}: " + ", ".join(parts))
        return lines

    def lines(self) -> list[str]:
        """Everything to print: the problems, a summary, the counts per task and the verdict."""
        out = [str(p) for p in self.problems]
        warnings = len(self.problems) - len(self.errors)
        out.append(
            f"{self.root}: {self.n_subjects} subjects, {self.n_sessions} sessions, {self.n_images} T1w images; "
            f"{len(self.errors)} errors, {warnings} warnings"
        )
        out += self.count_lines()
        out.append("usable" if self.usable else f"NOT usable: {len(self.errors)} error(s) above")
        return out


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _read(
    path: Path, report: BidsCheck, step: str, required: Sequence[str], severity: str = "error"
) -> pd.DataFrame | None:
    """A TSV as strings, or ``None`` (with a problem) if it is missing, unreadable or lacks a required column."""
    rel = _rel(path, report.root)
    if not path.is_file():
        report.add(severity, rel, "is missing", step)
        return None
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=True, na_values=["n/a", "N/A", ""])
    except (ValueError, OSError) as err:
        report.add(severity, rel, f"cannot be read as TSV ({err})", step)
        return None
    missing = [c for c in required if c not in table.columns]
    if missing:
        report.add(severity, rel, f"has no column {', '.join(missing)} (it has {', '.join(table.columns)})", step)
        return None
    return table


def _check_participants(root: Path, report: BidsCheck, folders: set[str]) -> list[str]:
    """The subjects to check: those listed (with a folder) plus unlisted folders."""
    table = _read(root / "participants.tsv", report, "participants", ["participant_id"])
    if table is None:
        return sorted(folders)
    listed: list[str] = []
    for position, subject in enumerate(table["participant_id"]):
        line = position + 2
        if pd.isna(subject):
            report.add("error", "participants.tsv", "has no participant_id", "participants", line)
        elif subject in listed:
            report.add("error", "participants.tsv", f"lists {subject} again", "participants", line)
        elif subject not in folders:
            report.add("error", "participants.tsv", f"lists {subject}, which has no folder", "tree", line)
        else:
            listed.append(subject)
    for subject in sorted(folders - set(table["participant_id"].dropna())):
        report.add(
            "warning",
            f"{subject}/",
            "subject folder not listed in participants.tsv: its scans are ignored",
            "participants",
        )
    return listed


def _other_spellings(session: str, existing: set[str]) -> list[str]:
    """Folders of ``existing`` that name the same month as ``session`` with another number of digits."""
    month = session_month(session)
    if month is None:
        return []
    return sorted(s for s in existing if s != session and session_month(s) == month)


def _check_subject(
    root: Path,
    subject: str,
    report: BidsCheck,
    diagnosis_map: Mapping[str, str | None] | str | None,
    derivatives_dir: str | os.PathLike | None,
    listed: bool,
) -> list[dict]:
    """Rows ``{subject, session, month, diagnosis, image, preprocessed}`` of one subject's sessions file."""
    path = root / subject / f"{subject}_sessions.tsv"
    # an unlisted subject is ignored anyway: its problems are warnings
    sessions = _read(path, report, "sessions", ["session_id", "diagnosis"], "error" if listed else "warning")
    if sessions is None:
        return []
    rel = _rel(path, root)
    folders = {p.name for p in (root / subject).glob("ses-*") if p.is_dir()}
    diagnoses, unknown = normalize_diagnoses(sessions["diagnosis"], diagnosis_map)
    rows, months, matched = [], {}, set()
    for position, (session, raw) in enumerate(zip(sessions["session_id"], sessions["diagnosis"])):
        line = position + 2
        if pd.isna(session):
            report.add("error", rel, "has no session_id", "sessions", line)
            continue
        session = str(session).strip()
        if any(r["session"] == session for r in rows):
            report.add("error", rel, f"lists {session} again", "sessions", line)
            continue
        month = session_month(session)
        if month is None:
            report.add(
                "warning", rel, f"{session} is not ses-M<months>: it gets no sMCI/pMCI label", "session_ids", line
            )
        elif month in months:
            report.add(
                "error",
                rel,
                f"{session} and {months[month]} are the same month written two ways (ses-M48 vs ses-M048)",
                "session_ids",
                line,
            )
            continue
        else:
            months[month] = session
        if unknown.iloc[position]:
            report.add(
                "error",
                rel,
                f"diagnosis {raw!r} of {session} is not {', '.join(DIAGNOSES)} or n/a (training refuses the tree "
                "until it is mapped)",
                "diagnosis",
                line,
            )
        image = preprocessed = None
        if session in folders:
            matched.add(session)
            image = find_session_image(root, subject, session)
            if image is None:
                report.add("warning", f"{subject}/{session}/anat/", "has no *_T1w.nii[.gz]: session left out", "t1w")
            else:
                problem = check_nifti_header(image)
                if problem:
                    report.add("warning", _rel(Path(image), root), f"{problem}: session left out", "t1w")
                    image = None
            if image is not None and derivatives_dir is not None:
                preprocessed = find_session_image(root, subject, session, derivatives_dir)
                if preprocessed is None:
                    report.add(
                        "warning",
                        f"{subject}/{session}",
                        f"has no preprocessed image in {derivatives_dir}: session left out",
                        "preprocess",
                    )
        else:
            others = _other_spellings(session, folders)
            if others:
                report.add(
                    "error",
                    rel,
                    f"{session} has no folder, but {subject}/{others[0]}/ has the same month: session ids written "
                    "two ways (ses-M48 vs ses-M048), so its image is never found",
                    "session_ids",
                    line,
                )
                matched.update(others)
            else:
                report.add("warning", rel, f"{session} has no folder {subject}/{session}/: no image", "t1w", line)
        diagnosis = None if unknown.iloc[position] else diagnoses.iloc[position]
        rows.append(
            {
                "subject": subject,
                "session": session,
                "month": month,
                "diagnosis": diagnosis,
                "image": image,
                "preprocessed": preprocessed,
            }
        )
    for folder in sorted(folders - matched):
        report.add(
            "warning", f"{subject}/{folder}/", f"is not in {subject}_sessions.tsv: no diagnosis, not used", "sessions"
        )
    return rows


def _check_widths(rows: list[dict], report: BidsCheck) -> None:
    """Warn once when the tree writes session months with two different numbers of digits."""
    widths: dict[int, str] = {}
    for row in rows:
        match = _SESSION.match(row["session"])
        if match and int(match.group(1)) < 100:
            widths.setdefault(len(match.group(1)), f"{row['subject']}/{row['session']}")
    if len(widths) > 1:
        examples = " and ".join(widths[w] for w in sorted(widths))
        report.add(
            "warning", ".", f"session ids are written with different numbers of digits ({examples})", "session_ids"
        )


def _count(report: BidsCheck, rows: list[dict], tasks: Sequence[str], explicit: bool, derivatives: bool) -> None:
    table = pd.DataFrame(rows, columns=["subject", "session", "month", "diagnosis", "image", "preprocessed"])
    table["month"] = table["month"].astype("Int64")
    usable_image = table["preprocessed"] if derivatives else table["image"]
    table = table.assign(has_image=usable_image.notna())
    for task in tasks:
        labelled = label_sessions(table, task, report.horizon)
        classes = {}
        for label, name in enumerate(CLASS_NAMES[task]):
            part = labelled[labelled["label"] == label]
            classes[name] = {
                "scans": int(len(part)),
                "subjects": int(part["subject"].nunique()),
                "with_image": int(part["has_image"].sum()),
            }
            if classes[name]["with_image"] == 0:
                report.add(
                    "error" if explicit else "warning",
                    ".",
                    f"{task} has no {name} scan with an image: the task cannot be trained",
                    "tree",
                )
        report.counts[task] = classes


def check_bids_tree(
    bids_dir: str | os.PathLike,
    tasks: Sequence[str] | None = None,
    horizon: int = 36,
    derivatives_dir: str | os.PathLike | None = None,
    diagnosis_map: Mapping[str, str | None] | str | None = None,
) -> BidsCheck:
    """Check a Clinica BIDS tree for the classification tasks (see the module docstring).

    Args:
        bids_dir: Clinica BIDS root.
        tasks: tasks to count (default both); a task given here with a class that has no usable scan is an error,
            otherwise a warning.
        horizon: months of follow-up for pMCIvsSMCI.
        derivatives_dir: preprocessing output; if given, sessions without a preprocessed image are reported and
            counted as without image.
        diagnosis_map: maps other diagnosis spellings to ours (see :mod:`axial_monai.data.clinica`).

    Returns:
        the :class:`BidsCheck` (problems, counts, ``usable``).

    Raises:
        ValueError: for an unknown task or a bad ``diagnosis_map`` (bad arguments, not bad data).
    """
    explicit = tasks is not None
    tasks = list(TASKS) if tasks is None else [tasks] if isinstance(tasks, str) else list(tasks)
    unknown_tasks = [t for t in tasks if t not in TASKS]
    if unknown_tasks:
        raise SettingsError(f"tasks must be among {list(TASKS)}, not {unknown_tasks}.")
    normalize_diagnoses(pd.Series([], dtype=object), diagnosis_map)  # validate the mapping before reading anything
    root = Path(bids_dir)
    report = BidsCheck(root=root, horizon=int(horizon))
    if not root.is_dir():
        report.add("error", str(root), "does not exist or is not a folder", "tree")
        return report
    folders = {p.name for p in root.glob("sub-*") if p.is_dir()}
    if not folders and not (root / "participants.tsv").exists():
        report.add("error", ".", "empty tree: no participants.tsv and no sub-*/ folder", "tree")
        return report
    listed = _check_participants(root, report, folders)
    rows: list[dict] = []
    # a bar on a terminal only (disable=None): real ADNI trees have thousands of sessions to open
    for subject in tqdm(sorted(set(listed) | folders), desc="check-bids", unit="subject", disable=None, leave=False):
        subject_rows = _check_subject(root, subject, report, diagnosis_map, derivatives_dir, subject in listed)
        if subject in listed:
            rows += subject_rows
            report.n_subjects += (root / subject / f"{subject}_sessions.tsv").is_file()
    _check_widths(rows, report)
    report.n_sessions = len(rows)
    report.n_images = sum(r["image"] is not None for r in rows)
    _count(report, rows, tasks, explicit, derivatives_dir is not None)
    return report
