"""Labelled scan tables from a Clinica BIDS tree: ADvsCN and pMCIvsSMCI against hand-computed expectations."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest
from bids_fixture import CORRUPT, bids_tree_placeholder  # noqa: F401  (pytest fixture)

from axial_monai.data.clinica import (
    clinica_task_table,
    label_sessions,
    load_clinica_table,
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
    with pytest.raises(ValueError, match="no preprocessed"):
        clinica_task_table(bids_tree_placeholder.root, "pMCIvsSMCI", derivatives_dir=deriv, space="Other")


def _copy_tsvs(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.nii.gz"))
    return dst


def test_missing_files_and_columns(bids_tree_placeholder, tmp_path):  # noqa: F811
    root = _copy_tsvs(bids_tree_placeholder.root, tmp_path / "bids")
    sessions = root / "sub-ADNI02" / "sub-ADNI02_sessions.tsv"
    sessions.write_text(sessions.read_text().replace("diagnosis", "dx"))
    with pytest.raises(ValueError, match=r"sub-ADNI02_sessions\.tsv has no column 'diagnosis'"):
        load_clinica_table(root)
    sessions.unlink()
    with pytest.raises(FileNotFoundError, match=r"sub-ADNI02_sessions\.tsv"):
        load_clinica_table(root)
    participants = root / "participants.tsv"
    participants.write_text(participants.read_text().replace("participant_id", "subject"))
    with pytest.raises(ValueError, match=r"participants\.tsv has no column 'participant_id'"):
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
