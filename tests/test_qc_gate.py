"""The QC gate refuses a preprocessed scan whose registration failed: injected failures end as ``failed``, never
``ok``, and ``predict`` refuses them by name while it answers for the other scans; the QC page of the run shows
every scan, failures first, in headless chromium.

The scans are Colin27 with skull at 4 mm, moved off the template (``test_predict.moved_head``), the same head stored
in LPS order, and the same head tilted by 25 degrees more; the failures are made from it: its contrast inverted
inside the head (not a T1), its upper half cut away (half a head), and its voxels shuffled (a scan too corrupted to
register).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation
from test_predict import moved_head
from test_report import browser  # noqa: F401 - the headless chromium fixture

from axial_monai import cli
from axial_monai.preprocess.gate import DEFAULT_GATE, QCGate

FAILURES = ("inverted", "half_head", "corrupted")
GOOD = ("good", "good_lps", "good_tilted")

pytestmark = pytest.mark.slow  # six registrations of a real head


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
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.array(data.shape[:2]) - 1  # voxel order reversed along i and j: the same head in LPS order
    nib.save(nib.Nifti1Image(data[::-1, ::-1], image.affine @ flip), folder / "good_lps.nii.gz")
    tilt = np.eye(4)
    tilt[:3, :3] = Rotation.from_euler("x", 25, degrees=True).as_matrix()
    nib.save(nib.Nifti1Image(data, tilt @ image.affine), folder / "good_tilted.nii.gz")
    return folder


@pytest.fixture(scope="module")
def preprocessed(scans, tmp_path_factory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("gate-out")
    return out, cli.main(["preprocess", str(scans), "--out", str(out), "--resolution", "3"])


def test_each_injected_failure_is_refused_by_the_gate_and_the_good_scans_pass(scans, preprocessed):
    out, status = preprocessed
    assert status == 1
    table = pd.read_csv(out / "preprocess.csv").set_index("scan")
    for name in GOOD:  # the same head, whatever its voxel order or tilt
        good = table.loc[str(scans / f"{name}.nii.gz")]
        assert good["status"] == "ok" and Path(good["output"]).is_file(), good.to_dict()
        assert DEFAULT_GATE.refusal(good.to_dict()) is None and good["template_correlation"] > 0.75, good.to_dict()
    for name in FAILURES:
        row = table.loc[str(scans / f"{name}.nii.gz")]
        assert row["status"] == "failed", (name, row.to_dict())
        assert "failed the QC gate" in row["problem"] or "no brain found" in row["problem"], (name, row["problem"])
        assert not list(out.glob(f"{name}_*desc-preproc_T1w.nii.gz"))  # nothing a datalist could pick up
    assert all(Path(picture).is_file() for picture in table["qc_figure"])  # a QC picture for every scan


def test_the_qc_page_shows_every_scan_failures_first(scans, preprocessed, browser):  # noqa: F811
    out, _ = preprocessed
    page = out / "qc.html"
    browser.get_log("browser")
    browser.get(page.as_uri())
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    titles = [element.text for element in browser.find_elements("css selector", ".scan h3")]
    assert len(titles) == 6 and all(title.endswith("(failed)") for title in titles[:3]), titles
    assert sorted(title.split(" ")[0] for title in titles) == sorted(f"{name}.nii.gz" for name in GOOD + FAILURES)
    images = browser.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(images) == 6 and all(complete and width > 400 for complete, width in images), images
    text = browser.find_element("tag name", "body").text
    assert "6 scans: 3 ok, 3 failed" in text and text.count("failed the QC gate") >= 2


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
        ({"template_correlation": 0.88, "jacobian_min": 0.3}, None),  # a figure not measured is not checked
        ({"template_correlation": -0.5, "mask_dice": 0.95, "jacobian_min": 0.15}, "template_correlation"),
        ({"template_correlation": 0.88, "mask_dice": 0.5, "jacobian_min": 0.15}, "mask_dice"),
        ({"template_correlation": 0.88, "mask_dice": 0.95, "jacobian_min": 0.0}, None),  # reported, not gated
    ],
)
def test_the_gate_names_the_figure_out_of_range(metrics, figure):
    assert QCGate(min_jacobian=0.05).refusal({**metrics, "jacobian_min": 0.0}) is not None  # when asked, it is
    refusal = QCGate().refusal(metrics)
    if figure is None:
        assert refusal is None
    else:
        assert refusal is not None and figure in refusal, refusal
