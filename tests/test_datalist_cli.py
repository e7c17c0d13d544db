"""``axial-monai datalist``: subject-wise stratified training/validation/test datalists (or k folds) that load with
the bundle's ``load_split``, never share a subject between splits, keep the class balance, and pass the leakage
guard (which is shown to refuse a leaky split)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import axial_monai.crossval.holdout as holdout
from axial_monai.cli import main
from axial_monai.crossval.splits import split_fold
from axial_monai.data.datalist import load_split

#: subject -> [(session, diagnosis)]: CN and AD subjects with one or two visits, MCI converters (AD at M036: pMCI)
#: and stable MCI subjects with one or two labelled visits. With this mix StratifiedGroupKFold keeps every split
#: within one scan of the overall class balance for seeds 0-39, hold-out and 3 folds, both tasks (measured).
DESIGN = {
    **{f"sub-CNa{i:02d}": [("ses-M000", "CN")] for i in range(16)},
    **{f"sub-CNb{i:02d}": [("ses-M000", "CN"), ("ses-M012", "CN")] for i in range(4)},
    **{f"sub-ADa{i:02d}": [("ses-M000", "AD")] for i in range(8)},
    **{f"sub-ADb{i:02d}": [("ses-M000", "AD"), ("ses-M012", "AD")] for i in range(2)},
    **{f"sub-PMa{i:02d}": [("ses-M000", "MCI"), ("ses-M036", "AD")] for i in range(6)},
    "sub-PMb00": [("ses-M000", "MCI"), ("ses-M012", "MCI"), ("ses-M036", "AD"), ("ses-M048", "AD")],
    **{f"sub-SMa{i:02d}": [("ses-M000", "MCI"), ("ses-M036", "MCI")] for i in range(8)},
    **{f"sub-SMb{i:02d}": [(f"ses-M{m:03d}", "MCI") for m in (0, 12, 36, 48)] for i in range(2)},
}
MCI_SUBJECTS = {s for s in DESIGN if s.startswith(("sub-PM", "sub-SM"))}
SPLITS = ("training", "validation", "test")


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    """A Clinica-style tree of the design above with tiny placeholder T1w images (datalists do not read them)."""
    root = tmp_path_factory.mktemp("datalist") / "bids"
    root.mkdir()
    (root / "participants.tsv").write_text("participant_id\n" + "\n".join(DESIGN) + "\n")
    for subject, sessions in DESIGN.items():
        (root / subject).mkdir()
        rows = ["session_id\tdiagnosis"] + [f"{s}\t{d}" for s, d in sessions]
        (root / subject / f"{subject}_sessions.tsv").write_text("\n".join(rows) + "\n")
        for session, _ in sessions:
            anat = root / subject / session / "anat"
            anat.mkdir(parents=True)
            image = nib.Nifti1Image(np.ones((2, 2, 2), np.int16), np.eye(4))
            nib.save(image, anat / f"{subject}_{session}_T1w.nii.gz")
    return root


def _run(capsys, *argv) -> tuple[int, str]:
    status = main(["datalist", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def _check_datalist(path: Path, dataset_dir: Path) -> dict[str, list[dict]]:
    """Load every split with the bundle's loader; no subject in two splits; class balance within one scan."""
    splits = {name: load_split(str(dataset_dir), name, str(path)) for name in SPLITS}
    subjects = {name: {item["subject"] for item in items} for name, items in splits.items()}
    for a in SPLITS:
        for b in SPLITS:
            assert a == b or not subjects[a] & subjects[b], f"{a} and {b} share {subjects[a] & subjects[b]}"
    everything = [item for items in splits.values() for item in items]
    share = np.mean([item["label"] for item in everything])
    for name, items in splits.items():
        positives = sum(item["label"] for item in items)
        assert abs(positives - share * len(items)) <= 1.0, f"{name}: {positives} positives of {len(items)} scans"
        assert all(Path(item["image"]).is_file() for item in items)
    return splits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_holdout_datalist(bids, tmp_path, capsys, seed):
    out = tmp_path / "lists" / "adcn.json"
    status, printed = _run(capsys, bids, "--task", "ADvsCN", "--out", out, "--seed", seed)
    assert status == 0, printed
    splits = _check_datalist(out, tmp_path)
    n_scans = sum(len(items) for items in splits.values())
    assert n_scans == 16 + 4 * 2 + 8 + 2 * 2 + 6 + 2  # every CN and AD session, the converters' AD sessions
    n_subjects = len({item["subject"] for items in splits.values() for item in items})
    assert len({item["subject"] for item in splits["test"]}) == pytest.approx(0.2 * n_subjects, abs=1.5)
    assert set(splits["training"][0]) == {"image", "label", "subject", "session", "diagnosis"}
    # printed class counts per split are the real ones
    for name, items in splits.items():
        labels = [item["label"] for item in items]
        cn = f"CN {labels.count(0)} scans / {len({i['subject'] for i in items if i['label'] == 0})} subjects"
        ad = f"AD {labels.count(1)} scans / {len({i['subject'] for i in items if i['label'] == 1})} subjects"
        assert f"  {name:<10} {cn}, {ad}" in printed.splitlines()
    assert "leakage guard passed" in printed
    assert f"python -m monai.bundle run training --config_file {Path('bundle/configs/train.json').resolve()}" in printed


def test_k_fold_datalists(bids, tmp_path, capsys):
    out = tmp_path / "cv.json"
    status, printed = _run(capsys, bids, "--task", "pMCIvsSMCI", "--out", out, "--k", 3, "--val_fraction", 0.25)
    assert status == 0, printed
    paths = [tmp_path / f"cv_fold-{i}.json" for i in range(3)]
    tested = []
    for path in paths:
        splits = _check_datalist(path, tmp_path)
        tested.append({item["subject"] for item in splits["test"]})
    assert set().union(*tested) == MCI_SUBJECTS
    assert sum(len(t) for t in tested) == len(MCI_SUBJECTS)  # every MCI subject tested exactly once
    assert "sMCI" in printed and "pMCI" in printed and "--class_names \"['sMCI', 'pMCI']\"" in printed


def test_joint_split_keeps_converters_on_one_side(bids, tmp_path, capsys):
    """A converter tested for sMCI vs pMCI is tested (never trained on) for AD vs CN too."""
    assert _run(capsys, bids, "--task", "ADvsCN", "--out", tmp_path / "adcn.json")[0] == 0
    assert _run(capsys, bids, "--task", "pMCIvsSMCI", "--out", tmp_path / "mci.json")[0] == 0
    adcn, mci = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("adcn", "mci"))
    converters = {s for s in DESIGN if s.startswith("sub-PM")}
    for subject in converters:
        in_test = [any(i["subject"] == subject for i in d["test"]) for d in (adcn, mci)]
        assert in_test[0] == in_test[1], subject


def test_leakage_guard_refuses_a_leaky_split(bids, tmp_path, capsys, monkeypatch):
    def leaky(table, folds, fold, val_fraction, seed):
        splits = split_fold(table, folds, fold, val_fraction, seed)
        return {**splits, "test": pd.concat([splits["test"], splits["training"].iloc[:1]])}

    monkeypatch.setattr(holdout, "split_fold", leaky)
    out = tmp_path / "leaky.json"
    status, printed = _run(capsys, bids, "--out", out)
    assert status == 2 and "Subject leakage" in printed and "in training and test" in printed
    assert "Traceback" not in printed and not out.exists()


def test_bad_input_is_one_line(tmp_path, capsys):
    status, printed = _run(capsys, tmp_path / "missing", "--out", tmp_path / "x.json")
    assert status == 2
    missing = tmp_path / "missing" / "participants.tsv"
    assert printed.strip().splitlines() == [
        f"axial-monai datalist: error: The participants file {missing} does not exist."
    ]
