"""The QC gate refuses a preprocessed scan whose registration failed: injected failures end as ``failed``, never
``ok``, and ``predict`` refuses them by name while it answers for the other scans.

The failures are made from Colin27 with skull at 4 mm, moved off the template (``test_predict.moved_head``): its
contrast inverted inside the head (not a T1), its upper half cut away (half a head), and its voxels shuffled (a scan
too corrupted to register).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from test_predict import moved_head

from axial_monai import cli
from axial_monai.preprocess.gate import DEFAULT_GATE, QCGate

FAILURES = ("inverted", "half_head", "corrupted")


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gate") / "scans"
    folder.mkdir()
    head = moved_head(folder / "good.nii.gz")
    image = nib.load(head)
    data = np.asarray(image.dataobj, np.float32)
    half = data.copy()
    half[:, :, data.shape[2] // 2 :] = 0
    variants = {
        "inverted": np.where(data > 0.05 * data.max(), data.max() - data, 0),
        "half_head": half,
        "corrupted": np.random.default_rng(0).permutation(data.reshape(-1)).reshape(data.shape),
    }
    for name, array in variants.items():
        nib.save(nib.Nifti1Image(array.astype(np.float32), image.affine), folder / f"{name}.nii.gz")
    return folder


def test_each_injected_failure_is_refused_by_the_gate_and_the_good_scan_passes(scans, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["preprocess", str(scans), "--out", str(out), "--resolution", "3"]) == 1
    table = pd.read_csv(out / "preprocess.csv").set_index("scan")
    good = table.loc[str(scans / "good.nii.gz")]
    assert good["status"] == "ok" and Path(good["output"]).is_file(), good.to_dict()
    assert DEFAULT_GATE.refusal(good.to_dict()) is None
    for name in FAILURES:
        row = table.loc[str(scans / f"{name}.nii.gz")]
        assert row["status"] == "failed", (name, row.to_dict())
        assert "failed the QC gate" in row["problem"] or "no brain found" in row["problem"], (name, row["problem"])
        assert not list(out.glob(f"{name}_*desc-preproc_T1w.nii.gz"))  # nothing a datalist could pick up
    printed = capsys.readouterr().out
    assert all(f"{scans / name}.nii.gz: failed: " in printed for name in FAILURES), printed


def test_predict_refuses_a_failed_registration_by_name_and_answers_for_the_others(
    scans, trained_demo, tiny_cohort, tmp_path, capsys
):
    demo_scan = Path(tiny_cohort) / "images" / "sub-0001_T1w.nii.gz"
    inverted = scans / "inverted.nii.gz"
    argv = ["predict", str(inverted), str(demo_scan), "--model", str(trained_demo), "--out", str(tmp_path / "p")]
    assert cli.main([*argv, "--cache_dir", str(tmp_path / "cache")]) == 1
    printed = capsys.readouterr()
    (line,) = [line for line in printed.err.splitlines() if line.startswith(f"not predicted: {inverted}")]
    assert "failed the QC gate" in line or "no brain found" in line, line
    assert "--profile" in line or "no brain found" in line  # what to try
    assert (tmp_path / "p" / "sub-0001_T1w" / "prediction.json").is_file()
    assert pd.read_csv(tmp_path / "p" / "skipped.csv")["file"].tolist() == [str(inverted)]


@pytest.mark.parametrize(
    "metrics, figure",
    [
        ({"template_correlation": 0.88, "mask_dice": 0.95, "jacobian_min": 0.15}, None),
        ({"template_correlation": 0.88, "jacobian_min": 0.3}, None),  # the paper profile measures no mask_dice
        ({"template_correlation": -0.5, "mask_dice": 0.95, "jacobian_min": 0.15}, "template_correlation"),
        ({"template_correlation": 0.88, "mask_dice": 0.5, "jacobian_min": 0.15}, "mask_dice"),
        ({"template_correlation": 0.88, "mask_dice": 0.95, "jacobian_min": 0.0}, "jacobian_min"),
    ],
)
def test_the_gate_names_the_figure_out_of_range(metrics, figure):
    refusal = QCGate().refusal(metrics)
    if figure is None:
        assert refusal is None
    else:
        assert refusal is not None and figure in refusal, refusal
