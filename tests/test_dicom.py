"""DICOM input: series found and classified, a T1 series read as its NIfTI, and ``predict`` on a DICOM study.

The series are real DICOM files written with pydicom from Colin27 (Debian ``mricron-data``), downsampled to 4 mm,
moved off the template and acquired obliquely (``tests/dicom_fixture.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from dicom_fixture import write_series
from scipy.spatial.transform import Rotation
from test_predict import moved_head

from axial_monai import cli
from axial_monai.data.dicom import find_series, series_to_nifti
from axial_monai.errors import InputError
from axial_monai.predict import predict_scans


@pytest.fixture(scope="module")
def oblique(tmp_path_factory) -> nib.Nifti1Image:
    """Colin27 with skull at 4 mm, moved, on a grid tilted by 15 and -10 degrees: an oblique acquisition."""
    root = tmp_path_factory.mktemp("oblique")
    head = nib.load(moved_head(root / "head.nii.gz", voxel=4.0))
    tilt = np.eye(4)
    tilt[:3, :3] = Rotation.from_euler("xyz", (15, 0, -10), degrees=True).as_matrix()
    image = nib.Nifti1Image(np.asarray(head.dataobj, np.float32), tilt @ head.affine)
    nib.save(image, root / "oblique_T1w.nii.gz")
    return image


@pytest.fixture(scope="module")
def study(oblique, tmp_path_factory) -> Path:
    """A study as a scanner writes it: a T1, a localiser, a T2 and a multi-echo T1, in folders of any name."""
    root = tmp_path_factory.mktemp("study")
    write_series(root / "s3", oblique)
    write_series(root / "s1", oblique, description="AAHScout", slices=[10, 20, 30], image_type=["LOCALIZER"])
    write_series(root / "s5", oblique, description="t2_tse_tra", echo_time=90.0, repetition_time=6000.0)
    write_series(root / "s7", oblique, description="T1 ME-MPRAGE", echo_time=(1.6, 3.5))
    return root


def _problems(folder: Path) -> dict[str, str | None]:
    return {s.description: s.problem for s in find_series(folder)}


def test_each_series_is_a_t1_or_refused_with_its_reason(study, oblique, tmp_path):
    assert _problems(study) == {
        "T1 MPRAGE sag": None,
        "AAHScout": "is a localiser",
        "t2_tse_tra": "is not a T1 (its description 't2_tse_tra' names another contrast)",
        "T1 ME-MPRAGE": "is multi-echo (2 echoes): give one echo, or a combined T1 series",
    }
    cases = {
        "by timing": ({"description": "axial 3d", "echo_time": 85.0, "repetition_time": 5000.0}, "echo time 85 ms"),
        "long TR": ({"description": "axial 3d", "echo_time": 4.0, "repetition_time": 9000.0}, "repetition time 9000"),
        "unknown": ({"description": "sequence 12", "inversion_time": None}, None),
        "few slices": ({"slices": range(10)}, "has 10 slices: not a 3D volume"),
        "gap": ({"slices": [*range(10), *range(12, 40)]}, "unevenly spaced slices"),
    }
    for name, (kwargs, expected) in cases.items():
        write_series(tmp_path / name, oblique, **kwargs)
        (found,) = find_series(tmp_path / name)
        assert (found.problem is None) if expected is None else expected in found.problem, (name, found.problem)
    mixed = tmp_path / "mixed"  # one series whose second half was acquired in another orientation
    uid = write_series(mixed, oblique, slices=range(20))
    turned = nib.Nifti1Image(np.asarray(oblique.dataobj), oblique.affine @ np.diag([-1, 1, 1, 1]))
    write_series(mixed, turned, slices=range(20, 40), series_uid=uid, first_number=20)
    (found,) = find_series(mixed)
    assert found.problem == "mixes images of 2 orientations"
    ct = tmp_path / "ct"
    write_series(ct, oblique)
    for path in ct.iterdir():  # the same images, said to be CT
        import pydicom

        ds = pydicom.dcmread(path)
        ds.Modality = "CT"
        ds.save_as(path)
    assert find_series(ct)[0].problem == "is not MR (modality 'CT')"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no DICOM here")
    with pytest.raises(InputError, match="holds no DICOM file"):
        find_series(tmp_path / "empty")


def test_a_t1_series_reads_as_its_nifti(study, oblique, tmp_path):
    (t1,) = [s for s in find_series(study) if s.problem is None]
    image = nib.load(series_to_nifti(t1, tmp_path / "t1.nii.gz"))
    np.testing.assert_allclose(image.affine, oblique.affine, atol=1e-3)  # the oblique patient geometry
    source = np.asarray(oblique.dataobj)
    np.testing.assert_allclose(np.asarray(image.dataobj), source, atol=np.abs(source).max() / 30000)  # int16 steps
    (localiser,) = [s for s in find_series(study) if s.description == "AAHScout"]
    with pytest.raises(InputError, match="AAHScout.*is a localiser"):
        series_to_nifti(localiser, tmp_path / "loc.nii.gz")


def test_predict_on_a_dicom_study_equals_its_nifti_and_names_the_refused_series(
    study, oblique, trained_demo, tmp_path, capsys
):
    nifti = tmp_path / "oblique_T1w.nii.gz"
    nib.save(oblique, nifti)
    quiet = {"echo": lambda *_: None, "cache_dir": tmp_path / "cache"}
    by_dicom = predict_scans([study], trained_demo, out=tmp_path / "dicom", **quiet)
    (by_nifti,) = predict_scans([nifti], trained_demo, out=tmp_path / "nifti", **quiet)
    predicted = [r for r in by_dicom if r.problem is None]
    refused = {r.series: r.problem for r in by_dicom if r.problem}
    assert len(predicted) == 1 and predicted[0].series == "T1 MPRAGE sag" and predicted[0].preprocessed
    assert set(refused) == {"AAHScout", "t2_tse_tra", "T1 ME-MPRAGE"}
    assert all(name in problem for name, problem in refused.items())  # each refusal names its series
    (t1,) = predicted
    for name, probability in by_nifti.probabilities.items():
        assert abs(t1.probabilities[name] - probability) <= 0.01
    a, b = nib.load(t1.image), nib.load(by_nifti.image)  # the same preprocessed grid, nearly the same voxels
    assert a.shape == b.shape and np.allclose(a.affine, b.affine)
    assert np.corrcoef(np.asarray(a.dataobj).ravel(), np.asarray(b.dataobj).ravel())[0, 1] > 0.99
    record = json.loads((tmp_path / "dicom" / t1.scan_id / "prediction.json").read_text())
    assert record["series"] == "T1 MPRAGE sag" and record["scan"] == f"{study}:{t1.scan.split(':')[-1]}"
    skipped = pd.read_csv(tmp_path / "dicom" / "skipped.csv")
    assert len(skipped) == 3 and all("is " in p for p in skipped["problem"])
    # the command line: one prediction, three refusals, exit status 1
    argv = ["predict", str(study), "--model", str(trained_demo), "--out", str(tmp_path / "cli")]
    assert cli.main([*argv, "--cache_dir", str(tmp_path / "cache")]) == 1
    printed = capsys.readouterr()
    assert "1 of 4 scans predicted" in printed.out and printed.err.count("not predicted:") == 3


def test_preprocess_writes_each_t1_series_on_the_grid_of_its_nifti_and_lists_the_refused(study, oblique, tmp_path):
    nifti = tmp_path / "oblique_T1w.nii.gz"
    nib.save(oblique, nifti)
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["preprocess", str(study), str(nifti), "--out", str(out), "--resolution", "4", "--cache_dir", str(cache)]
    assert cli.main(argv) == 1  # three series refused
    table = pd.read_csv(out / "preprocess.csv")
    assert len(table) == 5 and sorted(table["status"]) == ["failed"] * 3 + ["ok"] * 2
    by_dicom, by_nifti = (nib.load(p) for p in table.loc[table["status"] == "ok"].sort_values("series")["output"])
    assert by_dicom.shape == by_nifti.shape and np.allclose(by_dicom.affine, by_nifti.affine)
    a, b = np.asarray(by_dicom.dataobj).ravel(), np.asarray(by_nifti.dataobj).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.99
    failed = table[table["status"] == "failed"]
    assert all(str(s) in p for s, p in zip(failed["series"], failed["problem"], strict=True))
    stamps = {p: Path(p).stat().st_mtime_ns for p in table["output"].dropna()}
    assert cli.main(argv) == 1  # a rerun reuses the outputs of the same settings
    assert {p: Path(p).stat().st_mtime_ns for p in stamps} == stamps
    assert (pd.read_csv(out / "preprocess.csv")["seconds"].dropna() == 0).all()
