"""Labelled scan tables from a Clinica BIDS tree: ADvsCN and pMCIvsSMCI against hand-computed expectations."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids_fixture import CORRUPT, bids_tree_placeholder  # noqa: F401  (pytest fixture)

from axial_monai.data.clinica import (
    clinica_task_table,
    label_sessions,
    load_clinica_table,
    normalize_diagnoses,
    session_month,
    to_datalist,
)
from axial_monai.preprocess.bids import Scan, derivative_path, pipeline_dir

# (subject, session, label), worked out by hand from the fixture's diagnoses (see bids_fixture.py).
AD_VS_CN = [
    ("sub-ADNI01", "ses-M000", 0),
    ("sub-ADNI01", "ses-M012", 0),
    ("sub-ADNI01", "ses-M036", 0),
    ("sub-ADNI02", "ses-M000", 1),
    ("sub-ADNI02", "ses-M012", 1),
    ("sub-ADNI03", "ses-M048", 1),
    ("sub-ADNI04", "ses-M036", 1),
    ("sub-ADNI05", "ses-M036", 0),
]
PMCI_VS_SMCI = {
    # 36 months: ADNI03 has both labels (M000 -> M036 MCI: sMCI; M012 -> M048 AD: pMCI); ADNI03 M036 has no M072;
    # ADNI05 M000 -> M036 is CN (excluded), M012 has no M048; ADNI06 has no M036 / M060.
    36: [("sub-ADNI03", "ses-M000", 0), ("sub-ADNI03", "ses-M012", 1), ("sub-ADNI04", "ses-M000", 1)],
    # 24 months: ADNI03 M012 -> M036 MCI; ADNI06 M000 -> M024 MCI; ADNI05 M012 -> M036 CN is excluded.
    24: [("sub-ADNI03", "ses-M012", 0), ("sub-ADNI06", "ses-M000", 0)],
    # 12 months: ADNI03 M036 -> M048 AD; ADNI06 M000 -> M012 has no diagnosis (excluded).
    12: [("sub-ADNI03", "ses-M000", 0), ("sub-ADNI03", "ses-M036", 1), ("sub-ADNI05", "ses-M000", 0)],
}


def _triples(table: pd.DataFrame) -> list[tuple[str, str, int]]:
    return [(row.subject, row.session, int(row.label)) for row in table.itertuples(index=False)]


@pytest.mark.parametrize(
    "session, month", [("ses-M000", 0), ("ses-M012", 12), ("ses-M36", 36), ("ses-M108", 108), ("ses-bl", None)]
)
def test_session_month(session, month):
    assert session_month(session) == month


def test_longitudinal_table(bids_tree_placeholder):  # noqa: F811
    table = load_clinica_table(bids_tree_placeholder.root)
    assert len(table) == len(bids_tree_placeholder.images) == 17
    assert list(table.columns) == ["subject", "session", "month", "diagnosis", "sex", "age", "image"]
    row = table[(table.subject == "sub-ADNI03") & (table.session == "ses-M048")].iloc[0]
    assert (row.month, row.diagnosis, row.sex, row.age) == (48, "AD", "F", 72.0)
    assert row.image == str(bids_tree_placeholder.images[("sub-ADNI03", "ses-M048")].resolve())
    unknown = table[(table.subject == CORRUPT[0]) & (table.session == CORRUPT[1])].iloc[0]
    assert pd.isna(unknown.diagnosis)


def test_ad_vs_cn(bids_tree_placeholder):  # noqa: F811
    table = clinica_task_table(bids_tree_placeholder.root, "ADvsCN")
    assert _triples(table) == AD_VS_CN
    assert set(table.diagnosis) == {"AD", "CN"}
    for row in table.itertuples(index=False):
        assert row.image == str(bids_tree_placeholder.images[(row.subject, row.session)].resolve())


@pytest.mark.parametrize("horizon", [36, 24, 12])
def test_pmci_vs_smci(bids_tree_placeholder, horizon):  # noqa: F811
    table = clinica_task_table(bids_tree_placeholder.root, "pMCIvsSMCI", horizon=horizon)
    assert _triples(table) == PMCI_VS_SMCI[horizon]
    assert set(table.diagnosis) == {"MCI"}
    for row in table.itertuples(index=False):
        assert session_month(row.followup_session) == session_month(row.session) + horizon
        assert row.followup_diagnosis == ("AD" if row.label else "MCI")


def test_default_horizon_is_36(bids_tree_placeholder):  # noqa: F811
    assert _triples(clinica_task_table(bids_tree_placeholder.root, "pMCIvsSMCI")) == PMCI_VS_SMCI[36]


def test_labels_use_the_full_table_not_only_imaged_sessions():
    # The follow-up visit has a diagnosis but no image: it still decides the label of the baseline scan.
    table = pd.DataFrame(
        {
            "subject": ["sub-1", "sub-1"],
            "session": ["ses-M00", "ses-M36"],
            "month": pd.array([0, 36], dtype="Int64"),
            "diagnosis": ["MCI", "AD"],
            "image": ["/a.nii.gz", None],
        }
    )
    labelled = label_sessions(table, "pMCIvsSMCI")
    assert _triples(labelled) == [("sub-1", "ses-M00", 1)]


def test_to_datalist(bids_tree_placeholder):  # noqa: F811
    items = to_datalist(clinica_task_table(bids_tree_placeholder.root, "pMCIvsSMCI"))
    assert [(item["subject"], item["session"], item["label"]) for item in items] == PMCI_VS_SMCI[36]
    for item in items:
        assert set(item) == {"image", "label", "subject", "session", "diagnosis"}
        assert type(item["label"]) is int and isinstance(item["image"], str) and item["diagnosis"] == "MCI"
    extra = to_datalist(clinica_task_table(bids_tree_placeholder.root, "ADvsCN"), extra_keys=("age", "sex"))
    assert extra[0]["age"] == 70.0 and extra[0]["sex"] == "F" and type(extra[0]["age"]) is float


def test_derivative_images(bids_tree_placeholder, tmp_path):  # noqa: F811
    space = "MNI152NLin2009cAsym"
    deriv = pipeline_dir(tmp_path)
    (deriv).mkdir(parents=True)
    (deriv / "dataset_description.json").write_text("{}")
    made = {}
    for (subject, session), raw in bids_tree_placeholder.images.items():
        if (subject, session) == ("sub-ADNI01", "ses-M012"):
            continue  # as if its preprocessing had failed
        out = derivative_path(deriv, Scan(subject, session, str(raw)), space, resolution=4)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw, out)
        made[(subject, session)] = str(out.resolve())

    with pytest.raises(ValueError, match=r"sub-ADNI01/ses-M012.*missing_image='drop'"):
        clinica_task_table(bids_tree_placeholder.root, "ADvsCN", derivatives_dir=deriv)
    with pytest.warns(UserWarning, match="sub-ADNI01/ses-M012"):
        table = clinica_task_table(bids_tree_placeholder.root, "ADvsCN", derivatives_dir=tmp_path, missing_image="drop")
    assert _triples(table) == [t for t in AD_VS_CN if t[:2] != ("sub-ADNI01", "ses-M012")]
    assert all(row.image == made[(row.subject, row.session)] for row in table.itertuples(index=False))
    # the space filter finds the same files; another space finds none
    pmci = clinica_task_table(bids_tree_placeholder.root, "pMCIvsSMCI", derivatives_dir=deriv, space=space)
    assert all(row.image == made[(row.subject, row.session)] for row in pmci.itertuples(index=False))
    with pytest.raises(ValueError, match=re.escape("no preprocessed (*_desc-preproc_T1w.nii.gz) image")):
        clinica_task_table(bids_tree_placeholder.root, "pMCIvsSMCI", derivatives_dir=deriv, space="Other")


def _copy_tsvs(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.nii.gz"))
    return dst


def test_missing_files_and_columns(bids_tree_placeholder, tmp_path):  # noqa: F811
    root = _copy_tsvs(bids_tree_placeholder.root, tmp_path / "bids")
    sessions = root / "sub-ADNI02" / "sub-ADNI02_sessions.tsv"
    sessions.write_text(sessions.read_text().replace("diagnosis", "dx"))
    with pytest.raises(ValueError, match=r"The sessions file .*sub-ADNI02_sessions\.tsv has no column 'diagnosis'"):
        load_clinica_table(root)
    sessions.unlink()
    with pytest.raises(FileNotFoundError, match=r"sub-ADNI02_sessions\.tsv"):
        load_clinica_table(root)
    participants = root / "participants.tsv"
    participants.write_text(participants.read_text().replace("participant_id", "subject"))
    with pytest.raises(ValueError, match=r"The participants file .*participants\.tsv has no column 'participant_id'"):
        load_clinica_table(root)
    participants.unlink()
    with pytest.raises(FileNotFoundError, match=r"participants\.tsv"):
        load_clinica_table(root)


def test_missing_raw_images_raise(bids_tree_placeholder, tmp_path):  # noqa: F811
    root = _copy_tsvs(bids_tree_placeholder.root, tmp_path / "bids")
    with pytest.raises(ValueError, match=r"have no raw"):
        clinica_task_table(root, "ADvsCN")


def test_age_from_participants(tmp_path):
    (tmp_path / "participants.tsv").write_text("participant_id\tsex\tage_bl\nsub-1\tM\t70\n")
    (tmp_path / "sub-1").mkdir()
    (tmp_path / "sub-1" / "sub-1_sessions.tsv").write_text("session_id\tdiagnosis\nses-M000\tcn\nses-M018\tAD\n")
    table = load_clinica_table(tmp_path)
    assert table.age.tolist() == [70.0, 71.5]
    assert table.diagnosis.tolist() == ["CN", "AD"] and table.sex.tolist() == ["M", "M"]
    assert table.image.isna().all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task": "MCIvsCN"}, "task must be one of"),
        ({"task": "pMCIvsSMCI", "horizon": 0}, "horizon must be a positive"),
        ({"missing_image": "ignore"}, "missing_image must be"),
    ],
)
def test_bad_arguments(bids_tree_placeholder, kwargs, match):  # noqa: F811
    with pytest.raises(ValueError, match=match):
        clinica_task_table(bids_tree_placeholder.root, **kwargs)


def test_layout_helpers_do_not_load_ants():
    code = "import sys, axial_monai.preprocess.bids, axial_monai.preprocess.qc; assert 'ants' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- small TSV trees written in the tests: diagnosis spellings, ages, session ids, messages (mutation testing) ----


def _write_tree(
    root: Path, sessions: dict[str, str], participants: str | None = None, images: bool | list = True
) -> Path:
    """A Clinica BIDS tree: ``participants.tsv`` (default: only ``participant_id``), ``sub-X/sub-X_sessions.tsv``
    (``sessions``: subject -> the file's text) and a tiny raw T1w NIfTI for each listed session (``images=True``),
    for none (``False``) or for the listed ``(subject, session)`` pairs."""
    root.mkdir(parents=True, exist_ok=True)
    if participants is None:
        participants = "participant_id\n" + "".join(f"{subject}\n" for subject in sessions)
    (root / "participants.tsv").write_text(participants)
    for subject, text in sessions.items():
        (root / subject).mkdir(exist_ok=True)
        (root / subject / f"{subject}_sessions.tsv").write_text(text)
        for line in text.splitlines()[1:]:
            session = line.split("\t")[0].strip()
            if images is True or (images and (subject, session) in images):
                _write_t1w(root, subject, session)
    return root


def _write_t1w(root: Path, subject: str, session: str, name: str | None = None) -> Path:
    anat = root / subject / session / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    path = anat / (name or f"{subject}_{session}_T1w.nii.gz")
    nib.save(nib.Nifti1Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4)), path)
    return path


def _tsv(*rows: str, header: str = "session_id\tdiagnosis") -> str:
    return "\n".join((header, *rows)) + "\n"


# ADNIMERGE spellings: sub-1 converts (LMCI at M000 -> Dementia at M036), sub-2 stays EMCI, sub-3 has an SMC visit.
ADNIMERGE_TREE = {
    "sub-1": _tsv("ses-M000\tLMCI", "ses-M036\tDementia"),
    "sub-2": _tsv("ses-M000\tEMCI", "ses-M036\tEMCI"),
    "sub-3": _tsv("ses-M000\tCN", "ses-M012\tSMC"),
}


def test_unmapped_diagnoses_are_refused_with_file_and_lines(tmp_path):
    root = _write_tree(tmp_path / "bids", ADNIMERGE_TREE)
    first = re.escape(f"{root / 'sub-1' / 'sub-1_sessions.tsv'} has diagnoses that are not CN, MCI, AD or n/a")
    with pytest.raises(ValueError, match=first + re.escape(" (line 2: 'LMCI', line 3: 'Dementia')")):
        load_clinica_table(root)
    # ADNIMERGE's spellings are known (any case), SMC is not: sub-3's file is refused
    with pytest.raises(ValueError, match=re.escape(f"{root / 'sub-3' / 'sub-3_sessions.tsv'} has") + ".*line 3: 'SMC'"):
        clinica_task_table(root, "ADvsCN", diagnosis_map="ADNImerge")


@pytest.mark.parametrize("smc", [None, float("nan")])
def test_diagnosis_map_maps_spellings_and_leaves_out_none(tmp_path, smc):
    root = _write_tree(tmp_path / "bids", ADNIMERGE_TREE)
    # keys and targets are case- and space-insensitive; SMC mapped to None (or a missing value) is left out
    mapping = {" dementia ": "ad", "lmci": "MCI", "EMCI": " mci ", "smc": smc}
    table = load_clinica_table(root, diagnosis_map=mapping)
    assert table.diagnosis.tolist() == ["MCI", "AD", "MCI", "MCI", "CN", None]
    pmci = clinica_task_table(root, "pMCIvsSMCI", diagnosis_map=mapping)
    assert _triples(pmci) == [("sub-1", "ses-M000", 1), ("sub-2", "ses-M000", 0)]
    assert _triples(clinica_task_table(root, "ADvsCN", diagnosis_map=mapping)) == [
        ("sub-1", "ses-M036", 1),
        ("sub-3", "ses-M000", 0),
    ]


def test_normalize_diagnoses_with_the_adnimerge_map():
    values = pd.Series(["Dementia", " lmci", "EMCI", None, "SMC", "cn"])
    diagnoses, unknown = normalize_diagnoses(values, "AdniMerge")
    assert diagnoses.tolist() == ["AD", "MCI", "MCI", None, "SMC", "CN"]
    assert values[unknown].tolist() == ["SMC"]  # a boolean mask selects the raw values to report
    diagnoses, unknown = normalize_diagnoses(values)
    assert diagnoses.tolist() == ["DEMENTIA", "LMCI", "EMCI", None, "SMC", "CN"]
    assert values[unknown].tolist() == ["Dementia", " lmci", "EMCI", "SMC"]
    with pytest.raises(ValueError, match="mapping or 'adnimerge', not 'adni'"):
        normalize_diagnoses(values, "adni")
    with pytest.raises(ValueError, match="'Dementia' maps to 'Alzheimer'"):
        normalize_diagnoses(values, {"Dementia": "Alzheimer"})


def test_numeric_diagnosis_codes_are_refused_and_at_most_ten_lines_are_listed(tmp_path):
    # ADNI's numeric DX codes (1 = CN, 2 = MCI, 3 = AD) are not diagnoses: refused, read as the text written
    codes = ["1", "2", "3"] * 4
    root = _write_tree(tmp_path / "bids", {"sub-1": _tsv(*(f"ses-M{6 * i:03d}\t{c}" for i, c in enumerate(codes)))})
    with pytest.raises(ValueError) as refused:
        load_clinica_table(root)
    listed = ", ".join(f"line {i + 2}: '{c}'" for i, c in enumerate(codes[:10]))
    assert f"sub-1_sessions.tsv has diagnoses that are not CN, MCI, AD or n/a ({listed})." in str(refused.value)


def test_ages_missing_values_and_diagnosis_case(tmp_path):
    participants = "participant_id\tage\tage_bl\nsub-1\t70\t99\nsub-2\t60\t99\nsub-3\tn/a\t80\nsub-4\tunknown\tn/a\n"
    participants += "sub-5\tn/a\tn/a\n"
    sessions = {
        # the sessions' own ages win; a non-numeric age is missing
        "sub-1": _tsv("ses-M000\tcn\t70.5", "ses-M012\tCn\tunknown", header="session_id\tdiagnosis\tage"),
        # else the participant's age (before age_bl) + months / 12
        "sub-2": _tsv("ses-M000\tMCI", "ses-M024\tNA"),
        "sub-3": _tsv("ses-M000\tN/A", "ses-M006\t"),  # age_bl when age is n/a; BIDS/pandas missing values
        "sub-4": _tsv("ses-M000\tn/a"),  # a non-numeric baseline age: missing
        "sub-5": _tsv("ses-M000\tAD", "ses-M012\tad"),  # no age anywhere
    }
    table = load_clinica_table(_write_tree(tmp_path / "bids", sessions, participants, images=False))
    assert table.age.dtype == np.float64
    assert table.age.tolist() == pytest.approx(
        [70.5, np.nan, 60.0, 62.0, 80.0, 80.5, np.nan, np.nan, np.nan], nan_ok=True
    )
    assert table.diagnosis.tolist() == ["CN", "CN", "MCI", None, None, None, None, "AD", "AD"]
    assert table.sex.isna().all()


def test_participants_with_ids_only_and_padded_session_ids(tmp_path):
    # a one-column participants.tsv (no sex) and a session id with spaces around it (a hand-edited TSV)
    sessions = {"sub-1": _tsv("ses-M000\tMCI", " ses-M036 \tAD", "ses-bl\tCN")}
    root = _write_tree(tmp_path / "bids", sessions)
    table = load_clinica_table(root)
    assert list(table.columns) == ["subject", "session", "month", "diagnosis", "sex", "age", "image"]
    assert table.session.tolist() == ["ses-M000", "ses-M036", "ses-bl"]
    assert str(table.month.dtype) == "Int64" and table.month.tolist()[:2] == [0, 36] and pd.isna(table.month[2])
    assert table.sex.tolist() == [None, None, None]
    assert table.image.tolist() == [str(_write_t1w(root, "sub-1", s).resolve()) for s in table.session]
    with pytest.warns(UserWarning, match=re.escape("Sessions ['ses-bl'] have no month")):
        labelled = clinica_task_table(root, "pMCIvsSMCI")
    assert _triples(labelled) == [("sub-1", "ses-M000", 1)]


def test_empty_participants_give_empty_tables(tmp_path):
    (tmp_path / "participants.tsv").write_text("participant_id\tsex\n")
    assert list(load_clinica_table(tmp_path).columns) == [
        "subject",
        "session",
        "month",
        "diagnosis",
        "sex",
        "age",
        "image",
    ]
    assert clinica_task_table(tmp_path, "ADvsCN").empty and clinica_task_table(tmp_path, "pMCIvsSMCI").empty


@pytest.mark.parametrize(
    "participants, sessions, match",
    [
        ("participant_id\nsub-1\nsub-1\n", _tsv("ses-M000\tCN"), r"participants\.tsv lists \['sub-1'\] more than once"),
        (None, _tsv("ses-M000\tCN", "ses-M000 \tAD"), r"sub-1_sessions\.tsv lists \['ses-M000'\] more than once"),
        (None, _tsv("ses-M12\tMCI", "ses-M012\tMCI", "ses-M048\tAD"), r"lists \['ses-M12', 'ses-M012'\]: one month"),
    ],
)
def test_duplicated_subjects_sessions_and_months_are_refused(tmp_path, participants, sessions, match):
    root = _write_tree(tmp_path / "bids", {"sub-1": sessions}, participants)
    with pytest.raises(ValueError, match=match):
        load_clinica_table(root)


def test_months_warning_only_when_an_mci_session_lacks_a_month(tmp_path, recwarn):
    trees = {
        "all months known": {"sub-1": _tsv("ses-M000\tMCI", "ses-M012\tAD")},
        "no MCI": {"sub-1": _tsv("ses-bl\tCN", "ses-M012\tCN")},
    }
    for name, sessions in trees.items():
        label_sessions(load_clinica_table(_write_tree(tmp_path / name, sessions, images=False)), "pMCIvsSMCI")
    assert not [w for w in recwarn if "no month" in str(w.message)]
    root = _write_tree(tmp_path / "mci", {"sub-1": _tsv("ses-bl\tMCI", "ses-M036\tMCI")}, images=False)
    with pytest.warns(UserWarning, match=re.escape("Sessions ['ses-bl'] have no month (ses-M<digits>)")):
        assert label_sessions(load_clinica_table(root), "pMCIvsSMCI").empty


def test_one_month_horizon_and_label_table_guards(tmp_path):
    root = _write_tree(tmp_path / "bids", {"sub-1": _tsv("ses-M000\tMCI", "ses-M001\tAD", "ses-M002\tAD")})
    table = load_clinica_table(root)
    assert _triples(label_sessions(table, "pMCIvsSMCI", horizon=1)) == [("sub-1", "ses-M000", 1)]
    with pytest.raises(ValueError, match=r"has no column \['month'\]"):
        label_sessions(table.drop(columns="month"), "ADvsCN")
    # a hand-built table with one month twice: refused, never a duplicated (possibly contradictory) label
    twice = pd.concat([table, table.iloc[[1]].assign(session="ses-M1")], ignore_index=True)
    with pytest.raises(pd.errors.MergeError):
        label_sessions(twice, "pMCIvsSMCI", horizon=1)


def test_labelled_table_columns_index_and_label_type(bids_tree_placeholder):  # noqa: F811
    columns = ["subject", "session", "month", "diagnosis", "sex", "age", "image"]
    followup = ["followup_session", "followup_diagnosis"]
    for task, expected in [("ADvsCN", columns + ["label"]), ("pMCIvsSMCI", columns + followup + ["label"])]:
        table = clinica_task_table(bids_tree_placeholder.root, task)
        assert list(table.columns) == expected
        assert table.label.dtype == np.int64 and table.index.tolist() == list(range(len(table)))
    # the task defaults to ADvsCN
    assert _triples(clinica_task_table(bids_tree_placeholder.root)) == AD_VS_CN


def test_missing_image_message_lists_ten_sessions(tmp_path):
    sessions = [f"ses-M{12 * i:03d}" for i in range(11)]
    root = _write_tree(tmp_path / "bids", {"sub-1": _tsv(*(f"{s}\tCN" for s in sessions))}, images=False)
    raw = "labelled session(s) of ADvsCN have no raw (*_T1w.nii[.gz]) image: "
    with pytest.raises(ValueError) as eleven:
        clinica_task_table(root, "ADvsCN")
    listed = [f"sub-1/{s}" for s in sessions]
    assert f"11 {raw}{listed[:10]} ...; pass missing_image='drop'" in str(eleven.value)
    _write_t1w(root, "sub-1", sessions[0])
    with pytest.warns(UserWarning) as ten:
        kept = clinica_task_table(root, "ADvsCN", missing_image="drop")
    assert f"10 {raw}{listed[1:]}; they are left out." in [str(w.message) for w in ten]
    assert _triples(kept) == [("sub-1", "ses-M000", 0)] and kept.index.tolist() == [0]


def test_several_t1w_images_warn_and_the_first_is_used(tmp_path, recwarn):
    root = _write_tree(
        tmp_path / "bids", {"sub-1": _tsv("ses-M000\tCN", "ses-M012\tAD")}, images=[("sub-1", "ses-M012")]
    )
    first = _write_t1w(root, "sub-1", "ses-M000", "sub-1_ses-M000_run-01_T1w.nii.gz")
    _write_t1w(root, "sub-1", "ses-M000", "sub-1_ses-M000_run-02_T1w.nii.gz")
    table = clinica_task_table(root, "ADvsCN")
    assert table.image[0] == str(first.resolve())
    messages = [str(w.message) for w in recwarn if "T1w images" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith("sub-1 ses-M000 has 2 T1w images")


def test_datalist_values_and_refusals(bids_tree_placeholder):  # noqa: F811
    table = clinica_task_table(bids_tree_placeholder.root, "ADvsCN")
    items = to_datalist(table, extra_keys=("month",))
    assert [item["image"] for item in items] == table.image.tolist()
    assert [item["month"] for item in items] == [0, 12, 36, 0, 12, 48, 36, 36]
    assert all(type(item["month"]) is int for item in items)  # plain ints: the datalist is written as JSON
    with pytest.raises(ValueError, match=r"has no column \['label'\]"):
        to_datalist(table.drop(columns="label"))
    blank = table.copy()
    blank.loc[[1, 6], "image"] = None  # AD_VS_CN[1] and [6]
    with pytest.raises(
        ValueError, match=re.escape("Rows without image: ['sub-ADNI01/ses-M012', 'sub-ADNI04/ses-M036']")
    ):
        to_datalist(blank)


def test_splittable_scans_leave_out_qc_failures_and_add_the_other_task(bids_tree_placeholder, tmp_path):  # noqa: F811
    """What datalists, cross-validations and the benchmark split: the task's scans without those the QC gate
    failed (unless kept), and with ``joint`` the other task's labelled sessions."""
    from axial_monai.data.clinica import splittable_scans
    from axial_monai.derivatives import DerivativesLayout
    from axial_monai.io import write_json

    deriv = pipeline_dir(tmp_path)
    deriv.mkdir(parents=True)
    (deriv / "dataset_description.json").write_text("{}")
    failed = ("sub-ADNI02", "ses-M012")
    for (subject, session), raw in bids_tree_placeholder.images.items():
        out = derivative_path(deriv, Scan(subject, session, str(raw)), "MNI152NLin2009cAsym", resolution=4)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw, out)
        status = "failed" if (subject, session) == failed else "ok"
        error = "failed the QC gate: template_correlation 0.100, not above 0.5" if status == "failed" else None
        write_json(DerivativesLayout(deriv).record_path(out), {"status": status, "error": error})

    table, others, told = splittable_scans(bids_tree_placeholder.root, "ADvsCN", deriv)
    assert _triples(table) == [t for t in AD_VS_CN if t[:2] != failed] and others == []
    assert told.startswith("1 scan(s) failed the preprocessing's QC gate and were left out")
    assert "sub-ADNI02 ses-M012: failed the QC gate: template_correlation 0.100" in told
    kept, _, said = splittable_scans(bids_tree_placeholder.root, "ADvsCN", deriv, include_qc_failed=True)
    assert _triples(kept) == AD_VS_CN and "were kept (--include_qc_failed)" in said
    raw, others, quiet = splittable_scans(bids_tree_placeholder.root, "pMCIvsSMCI", joint=True)
    assert _triples(raw) == PMCI_VS_SMCI[36] and quiet == ""  # raw images: no QC records, nothing left out
    assert len(others) == 1 and _triples(others[0]) == AD_VS_CN
    twelve, _, _ = splittable_scans(bids_tree_placeholder.root, "pMCIvsSMCI", horizon=12)
    assert _triples(twelve) == PMCI_VS_SMCI[12]


def test_drop_qc_failed_reads_each_record_and_tells_what_it_left_out(tmp_path):
    """A synthetic table of 12 failed scans and 2 others (one ok, one whose record names no status), on an index
    that is not 0..n-1: the failed ones go (by default), the message counts them, lists 10 with their reasons and
    ends with "..."; nothing fails: the table as it is and no message."""
    from axial_monai.data.clinica import drop_qc_failed
    from axial_monai.derivatives import DerivativesLayout
    from axial_monai.io import write_json

    deriv = pipeline_dir(tmp_path)
    deriv.mkdir(parents=True)
    (deriv / "dataset_description.json").write_text("{}")
    layout = DerivativesLayout(deriv)
    rows = []
    for i in range(14):
        image = derivative_path(
            deriv, Scan(f"sub-{i:02d}", "ses-M000", f"sub-{i:02d}_ses-M000_T1w.nii.gz"), "MNI152NLin2009cAsym", 4
        )
        record = {"status": "failed", "error": f"reason {i}"} if i < 12 else {"status": "ok"} if i == 12 else {}
        write_json(layout.record_path(image), record if i != 11 else {"status": "failed"})
        rows.append({"subject": f"sub-{i:02d}", "session": "ses-M000", "image": str(image)})
    table = pd.DataFrame(rows, index=range(100, 114))
    kept, told = drop_qc_failed(table, deriv)
    assert kept["subject"].tolist() == ["sub-12", "sub-13"] and kept.index.tolist() == [112, 113]
    lines = told.rstrip("\n").split("\n")
    assert lines[0].startswith("12 scan(s) failed the preprocessing's QC gate and were left out") and told[-1] == "\n"
    assert lines[1:11] == [f"  sub-{i:02d} ses-M000: reason {i}" for i in range(10)] and lines[11:] == ["  ..."]
    everything, said = drop_qc_failed(table.iloc[9:], deriv, include=True)
    assert everything.equals(table.iloc[9:]) and said.split("\n")[3] == "  sub-11 ses-M000: failed"
    assert "\n  ...\n" not in said and said.startswith("3 scan(s)")
    assert not drop_qc_failed(table.iloc[:10], deriv)[1].endswith("  ...\n")  # ten failures: all listed
    assert drop_qc_failed(table.iloc[:11], deriv)[1].endswith("  ...\n")  # eleven: ten and "..."
    none, quiet = drop_qc_failed(table.iloc[12:], deriv)
    assert none.equals(table.iloc[12:]) and quiet == ""


def test_splittable_scans_pass_every_option_on(bids_tree_placeholder, tmp_path):  # noqa: F811
    """The space, the diagnosis map and the horizon reach both tables; the other task reads the derivatives too."""
    from axial_monai.data.clinica import splittable_scans

    deriv = pipeline_dir(tmp_path)
    deriv.mkdir(parents=True)
    (deriv / "dataset_description.json").write_text("{}")
    for (subject, session), raw in bids_tree_placeholder.images.items():
        for space in ("MNI152NLin2009cAsym", "Other"):  # two spaces: without `space` the choice is ambiguous
            out = derivative_path(deriv, Scan(subject, session, str(raw)), space, resolution=4)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(raw, out)
    root = bids_tree_placeholder.root
    options = {"space": "Other", "diagnosis_map": {"AD": None}}  # AD read as "no diagnosis": no pMCI, no AD
    table, others, _ = splittable_scans(root, "ADvsCN", deriv, horizon=12, joint=True, **options)
    assert set(table["label"]) == {0} and all("Other" in image for image in table["image"])
    expected = label_sessions(load_clinica_table(root, deriv, "Other", {"AD": None}), "pMCIvsSMCI", 12)
    assert others[0].equals(expected) and set(others[0]["label"]) == {0}
    assert all("Other" in image for image in others[0]["image"].dropna())
    with pytest.warns(UserWarning, match="set space"):  # two spaces and none chosen: the first, with a warning
        assert not any("Other" in image for image in splittable_scans(root, "ADvsCN", deriv)[0]["image"])
