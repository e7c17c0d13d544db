"""``axial-monai check-bids`` on the fixture BIDS tree and on broken copies of it: the expected line per problem,
the counts the Clinica tests expect, and the exit status."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from bids_fixture import SESSIONS, bids_tree_placeholder  # noqa: F401  (pytest fixture)
from test_clinica import AD_VS_CN, PMCI_VS_SMCI

from axial_monai.cli import main
from axial_monai.data.clinica import clinica_task_table, load_clinica_table

REPO = Path(__file__).resolve().parents[1]


def _counts_line(task: str, triples, classes, with_image=None) -> str:
    parts = []
    for label, name in enumerate(classes):
        scans = [t for t in triples if t[2] == label]
        images = len(scans) if with_image is None else with_image[name]
        parts.append(f"{name} {len(scans)} scans / {len({t[0] for t in scans})} subjects ({images} with image)")
    return f"{task}: " + ", ".join(parts)


EXPECTED_ADCN = _counts_line("ADvsCN", AD_VS_CN, ("CN", "AD"))
EXPECTED_MCI = _counts_line("pMCIvsSMCI (horizon 36 months)", PMCI_VS_SMCI[36], ("sMCI", "pMCI"))


def _check(capsys, root, *options) -> tuple[int, list[str]]:
    status = main(["check-bids", str(root), *map(str, options)])
    captured = capsys.readouterr()
    return status, (captured.out + captured.err).splitlines()


@pytest.fixture
def tree(bids_tree_placeholder, tmp_path):  # noqa: F811
    """A copy of the placeholder fixture tree to break."""
    return Path(shutil.copytree(bids_tree_placeholder.root, tmp_path / "bids"))


def test_fixture_tree_counts_match_the_clinica_tests(bids_tree_placeholder, capsys):  # noqa: F811
    status, lines = _check(capsys, bids_tree_placeholder.root)
    assert status == 0
    assert EXPECTED_ADCN in lines and EXPECTED_MCI in lines
    assert lines[-1] == "usable"
    # the only problem of the fixture: its deliberately truncated image (a session without diagnosis)
    problems = [line for line in lines if line.startswith(("ERROR", "WARNING"))]
    assert len(problems) == 1 and problems[0].startswith("WARNING sub-ADNI06/ses-M012/anat/sub-ADNI06_ses-M012_T1w")
    # the same counts as the labelling code gives
    for task, expected in (("ADvsCN", AD_VS_CN), ("pMCIvsSMCI", PMCI_VS_SMCI[36])):
        table = clinica_task_table(bids_tree_placeholder.root, task)
        assert [(r.subject, r.session, r.label) for r in table.itertuples()] == expected


def test_console_module_exit_status(bids_tree_placeholder, tmp_path):  # noqa: F811
    command = [sys.executable, "-m", "axial_monai", "check-bids"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    good = subprocess.run([*command, str(bids_tree_placeholder.root)], capture_output=True, text=True, env=env)
    assert good.returncode == 0 and EXPECTED_ADCN in good.stdout.splitlines()
    empty = subprocess.run([*command, str(tmp_path)], capture_output=True, text=True, env=env)
    assert empty.returncode == 1 and "Traceback" not in empty.stdout + empty.stderr


def test_check_bids_and_the_datalist_tools_start_without_monai():
    # axial_monai.data imports its names on first use: a BIDS check starts in about a second, not after MONAI's import
    code = (
        "import sys, axial_monai.data, axial_monai.data.bids_check, axial_monai.data.datalist; "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('monai', 'torch')], 'monai or torch imported'; "
        "axial_monai.data.VolumeCacheDataset; assert 'monai' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _replace(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def _rename_session(root: Path, subject: str, old: str, new: str) -> None:
    folder = root / subject / old
    for image in (folder / "anat").glob("*"):
        image.rename(image.with_name(image.name.replace(old, new)))
    folder.rename(root / subject / new)


def _no_participants(root):
    (root / "participants.tsv").unlink()


def _no_diagnosis_column(root):
    _replace(root / "sub-ADNI02" / "sub-ADNI02_sessions.tsv", "diagnosis", "dx")


def _no_sessions_file(root):
    (root / "sub-ADNI03" / "sub-ADNI03_sessions.tsv").unlink()


def _session_without_t1w(root):
    for image in (root / "sub-ADNI01" / "ses-M012" / "anat").glob("*_T1w.nii.gz"):
        image.unlink()


def _folder_two_digits(root):
    _rename_session(root, "sub-ADNI03", "ses-M048", "ses-M48")


def _table_two_digits(root):
    _replace(root / "sub-ADNI04" / "sub-ADNI04_sessions.tsv", "ses-M036", "ses-M36")


def _both_widths_consistent(root):
    _rename_session(root, "sub-ADNI03", "ses-M048", "ses-M48")
    _replace(root / "sub-ADNI03" / "sub-ADNI03_sessions.tsv", "ses-M048", "ses-M48")


def _same_month_twice(root):
    path = root / "sub-ADNI02" / "sub-ADNI02_sessions.tsv"
    path.write_text(path.read_text() + "ses-M12\tAD\t76.5\n")


def _dementia(root):
    _replace(root / "sub-ADNI02" / "sub-ADNI02_sessions.tsv", "\tAD\t", "\tDementia\t")


def _unlisted_subject(root):
    _replace(root / "participants.tsv", "sub-ADNI05\tF\n", "")


def _listed_without_folder(root):
    _replace(root / "participants.tsv", "sub-ADNI06\tM\n", "sub-ADNI06\tM\nsub-ADNI07\tF\n")


def _empty(root):
    shutil.rmtree(root)
    root.mkdir()


def _folder_not_in_sessions(root):
    shutil.copytree(root / "sub-ADNI01" / "ses-M036", root / "sub-ADNI01" / "ses-M060")


# (break the tree, expected exit status, expected start of a printed line)
BROKEN = {
    "missing participants.tsv": (_no_participants, 1, "ERROR participants.tsv: is missing [fix: clinica convert"),
    "missing diagnosis column": (
        _no_diagnosis_column,
        1,
        "ERROR sub-ADNI02/sub-ADNI02_sessions.tsv: has no column diagnosis (it has session_id, dx, age)",
    ),
    "missing sessions.tsv": (_no_sessions_file, 1, "ERROR sub-ADNI03/sub-ADNI03_sessions.tsv: is missing [fix: "),
    "session without T1w": (
        _session_without_t1w,
        0,
        "WARNING sub-ADNI01/ses-M012/anat/: has no *_T1w.nii[.gz]: session left out [fix: clinica convert adni-to-bids "
        "-m T1",
    ),
    "folder ses-M48, table ses-M048": (
        _folder_two_digits,
        1,
        "ERROR sub-ADNI03/sub-ADNI03_sessions.tsv line 5: ses-M048 has no folder, but sub-ADNI03/ses-M48/ has the "
        "same month",
    ),
    "table ses-M36, folder ses-M036": (
        _table_two_digits,
        1,
        "ERROR sub-ADNI04/sub-ADNI04_sessions.tsv line 3: ses-M36 has no folder, but sub-ADNI04/ses-M036/",
    ),
    "ses-M48 next to ses-M012 in one tree": (
        _both_widths_consistent,
        0,
        "WARNING .: session ids are written with different numbers of digits",
    ),
    "same month written twice": (
        _same_month_twice,
        1,
        "ERROR sub-ADNI02/sub-ADNI02_sessions.tsv line 4: ses-M12 and ses-M012 are the same month written two ways",
    ),
    "Dementia reported, not dropped": (
        _dementia,
        1,
        "ERROR sub-ADNI02/sub-ADNI02_sessions.tsv line 2: diagnosis 'Dementia' of ses-M000 is not CN, MCI, AD or n/a",
    ),
    "subject folder not in participants.tsv": (
        _unlisted_subject,
        0,
        "WARNING sub-ADNI05/: subject folder not listed in participants.tsv: its scans are ignored",
    ),
    "participant without folder": (
        _listed_without_folder,
        1,
        "ERROR participants.tsv line 8: lists sub-ADNI07, which has no folder",
    ),
    "session folder not in sessions.tsv": (
        _folder_not_in_sessions,
        0,
        "WARNING sub-ADNI01/ses-M060/: is not in sub-ADNI01_sessions.tsv: no diagnosis, not used",
    ),
    "empty tree": (_empty, 1, "ERROR .: empty tree: no participants.tsv and no sub-*/ folder"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_tree_prints_the_expected_line(name, tree, capsys):
    breaker, expected_status, expected = BROKEN[name]
    breaker(tree)
    status, lines = _check(capsys, tree)
    assert status == expected_status, "\n".join(lines)
    matching = [line for line in lines if line.startswith(expected)]
    assert len(matching) == 1, f"expected a line starting with {expected!r}, got:\n" + "\n".join(lines)
    assert "[fix: " in matching[0]
    assert lines[-1] == ("usable" if expected_status == 0 else lines[-1])
    if expected_status:
        assert lines[-1].startswith("NOT usable")


def test_session_without_t1w_is_counted_without_image(tree, capsys):
    _session_without_t1w(tree)
    status, lines = _check(capsys, tree)
    assert status == 0
    assert _counts_line("ADvsCN", AD_VS_CN, ("CN", "AD"), {"CN": 3, "AD": 4}) in lines


def test_dementia_is_refused_by_the_loader_and_mapped_on_request(tree, capsys):
    _dementia(tree)
    with pytest.raises(ValueError, match=r"sub-ADNI02_sessions\.tsv has diagnoses .*line 2: 'Dementia'.*diagnosis_map"):
        load_clinica_table(tree)
    for mapping in ('{"Dementia": "AD"}', "adnimerge"):
        status, lines = _check(capsys, tree, "--diagnosis_map", mapping)
        assert status == 0 and EXPECTED_ADCN in lines
    table = clinica_task_table(tree, "ADvsCN", diagnosis_map={"dementia": "ad"})
    assert [(r.subject, r.session, r.label) for r in table.itertuples()] == AD_VS_CN
    # mapping a value to None leaves those sessions out on purpose
    excluded = load_clinica_table(tree, diagnosis_map={"Dementia": None})
    assert excluded.loc[excluded.subject == "sub-ADNI02", "diagnosis"].isna().all()
    with pytest.raises(ValueError, match="must map to one of"):
        load_clinica_table(tree, diagnosis_map={"Dementia": "Alzheimer"})


def test_named_task_without_a_class_is_an_error(tree, capsys):
    # only AD and CN subjects left: no sMCI/pMCI at all
    keep = ("sub-ADNI01", "sub-ADNI02")
    participants = pd.read_csv(tree / "participants.tsv", sep="\t")
    participants[participants.participant_id.isin(keep)].to_csv(tree / "participants.tsv", sep="\t", index=False)
    for subject in set(SESSIONS) - set(keep):
        shutil.rmtree(tree / subject)
    status, lines = _check(capsys, tree)
    assert status == 0 and any(line.startswith("WARNING .: pMCIvsSMCI has no sMCI scan") for line in lines)
    status, lines = _check(capsys, tree, "--task", "pMCIvsSMCI")
    assert status == 1 and any(line.startswith("ERROR .: pMCIvsSMCI has no sMCI scan") for line in lines)


def test_strict_and_bad_arguments(bids_tree_placeholder, tmp_path, capsys):  # noqa: F811
    assert _check(capsys, bids_tree_placeholder.root, "--strict")[0] == 1  # the fixture has one warning
    status, lines = _check(capsys, bids_tree_placeholder.root, "--task", "ADvsMCI")
    assert status == 2 and lines == [
        "axial-monai check-bids: error: tasks must be among ['ADvsCN', 'pMCIvsSMCI'], not ['ADvsMCI']."
    ]
    status, lines = _check(capsys, tmp_path / "nowhere")
    assert status == 1 and lines[0].startswith(f"ERROR {tmp_path / 'nowhere'}: does not exist")


def test_derivatives_missing_a_preprocessed_image(bids_tree_placeholder, tmp_path, capsys):  # noqa: F811
    from axial_monai.preprocess.bids import Scan, derivative_path, pipeline_dir

    deriv = pipeline_dir(tmp_path / "out")
    deriv.mkdir(parents=True)
    (deriv / "dataset_description.json").write_text("{}")
    for (subject, session), raw in bids_tree_placeholder.images.items():
        if (subject, session) != ("sub-ADNI02", "ses-M012"):  # as if its preprocessing had failed
            out = derivative_path(deriv, Scan(subject, session, str(raw)), "MNI152NLin2009cAsym")
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(raw, out)
    status, lines = _check(capsys, bids_tree_placeholder.root, "--derivatives", tmp_path / "out")
    assert status == 0
    assert any(line.startswith("WARNING sub-ADNI02/ses-M012: has no preprocessed image in") for line in lines)
    assert _counts_line("ADvsCN", AD_VS_CN, ("CN", "AD"), {"CN": 4, "AD": 3}) in lines
