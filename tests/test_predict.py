"""``axial-monai predict`` on a real raw head scan: preprocessing (cached), prediction, maps and region tables in one
command.

The head is Colin27 with skull (Debian ``mricron-data``), downsampled to 4 mm to keep the test fast and moved by a
rigid transform (rotation about three axes and a shift), as a scan straight from a scanner would be; the model is
the session's small demo-trained run (3 mm grid); the registration is affine, at 2 mm.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import nibabel.processing
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

import axial_monai.preprocess.pipeline as pipeline
from axial_monai import cli
from axial_monai.explain import DEFAULT_METHOD, DEFAULT_METHODS
from axial_monai.run import RunSettings

COLIN = Path("/usr/share/mricron/templates/ch2.nii.gz")


def moved_head(out: Path, voxel: float = 4.0, source: Path = COLIN) -> Path:
    """Colin27 with skull (or ``source``, e.g. its brain) at ``voxel`` mm, rotated by (8, -5, 12) degrees and
    shifted by (12, -9, 15) mm."""
    assert source.is_file(), f"{source} missing: apt-get install mricron-data (.ci/run does)"
    image = nibabel.processing.resample_to_output(nib.load(source), voxel_sizes=(voxel,) * 3, order=1)
    rigid = np.eye(4)
    rigid[:3, :3] = Rotation.from_euler("xyz", (8, -5, 12), degrees=True).as_matrix()
    rigid[:3, 3] = (12.0, -9.0, 15.0)
    # voxel v of the moved scan shows what the original had at rigid^-1(position of v): the head moved by rigid
    moved = nibabel.processing.resample_from_to(image, (image.shape, np.linalg.inv(rigid) @ image.affine), order=1)
    nib.save(nib.Nifti1Image(np.asarray(moved.dataobj, np.float32), image.affine), out)
    return out


@pytest.fixture(scope="module")
def predicted(trained_demo, tiny_cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    scans = root / "scans"
    scans.mkdir()
    head = moved_head(scans / "colin27_moved.nii.gz")
    demo_scan = Path(tiny_cohort) / "images" / "sub-0001_T1w.nii.gz"
    broken = scans / "broken.nii.gz"
    broken.write_bytes(b"not a scan")
    out, cache = root / "out", root / "cache"
    argv = ["predict", str(head), str(demo_scan), str(broken), "--model", str(trained_demo), "--explain"]
    # fast settings for CI: affine registration at 2 mm (the default, SyNQuick at 1 mm, is what the README measures)
    argv += ["--out", str(out), "--transform", "Affine", "--resolution", "2", "--cache_dir", str(cache)]
    return {"argv": argv, "head": head, "demo_scan": demo_scan, "broken": broken, "out": out, "cache": cache}


def test_predict_on_a_raw_head_in_one_command(predicted, trained_demo, capsys):
    status = cli.main(predicted["argv"])
    printed = capsys.readouterr()
    assert status == 1  # one scan could not be read: reported, the others predicted
    out = predicted["out"]
    assert "python -m monai.bundle run explaining --config_file" in printed.out  # the equivalent bundle line
    assert f"{predicted['head']}: preprocessed in" in printed.out
    assert f"{predicted['demo_scan']}: already on the model's grid and brain-extracted" in printed.out
    assert f"not predicted: {predicted['broken']}" in printed.err and "2 of 3 scans predicted" in printed.out

    settings = RunSettings.load(trained_demo)
    head = json.loads((out / "colin27_moved" / "prediction.json").read_text())
    assert head["preprocessed"] is True and head["scan"] == str(predicted["head"])
    assert set(head["probabilities"]) == {"CN", "AD"} and sum(head["probabilities"].values()) == pytest.approx(1)
    assert head["prediction"] == max(head["probabilities"], key=head["probabilities"].get)
    assert head["preprocessing"]["similarity_cc"] > 0.5, head["preprocessing"]  # the affine registration worked
    # the preprocessed scan and the maps are on the template grid of the run
    preprocessed = nib.load(head["input"])
    assert preprocessed.shape == settings.grid.shape
    np.testing.assert_allclose(preprocessed.affine, settings.grid.affine, atol=1e-4)
    for name in DEFAULT_METHODS:  # explain.json's maps
        cam = nib.load(out / "colin27_moved" / f"{name}.nii.gz")
        assert cam.shape == settings.grid.shape and cam.get_fdata().max() > 0
        np.testing.assert_allclose(cam.affine, settings.grid.affine, atol=1e-4)
    regions = pd.read_csv(out / "colin27_moved" / f"regions_{DEFAULT_METHOD}.csv")
    assert len(regions) > 0 and {"name", "V", "mean", "mass_share"} <= set(regions.columns)
    assert (out / "colin27_moved" / "overview.png").stat().st_size > 10_000

    demo = json.loads((out / "sub-0001_T1w" / "prediction.json").read_text())
    assert demo["preprocessed"] is False and demo["input"] == str(predicted["demo_scan"])
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["file"].tolist() == [str(predicted["broken"])]
    assert pd.read_csv(out / "predictions.csv")["file"].tolist() == sorted([head["input"], demo["input"]])


def test_preprocessing_is_cached_by_content(predicted, monkeypatch, capsys):
    """A second call reuses the preprocessed head: no registration runs (it would raise here)."""

    def no_registration(*args, **kwargs):
        raise AssertionError("preprocessed again although the scan is cached")

    monkeypatch.setattr(pipeline, "preprocess_t1w", no_registration)
    argv = predicted["argv"][:]
    argv.remove(str(predicted["broken"]))
    argv.remove("--explain")
    argv[argv.index("--out") + 1] = str(predicted["out"].parent / "again")
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{predicted['head']}: preprocessed (from the cache)" in printed
    first = json.loads((predicted["out"] / "colin27_moved" / "prediction.json").read_text())
    again = json.loads((predicted["out"].parent / "again" / "colin27_moved" / "prediction.json").read_text())
    assert again["probabilities"] == pytest.approx(first["probabilities"], abs=1e-6)
    assert len(list((predicted["cache"] / "predict").glob("*.nii.gz"))) == 1


def test_predict_requires_a_model(capsys, tmp_path):
    assert cli.main(["predict", str(tmp_path / "scan.nii.gz")]) == 2
    assert "--model is required" in capsys.readouterr().err


def test_predict_explain_with_a_checkpoint_without_the_mean_control_scan_starts_from_the_template(
    trained_demo, tiny_cohort, capsys, tmp_path
):
    """A run trained before 0.2.5 (or a bundle shared without the mean): the default map starts from the template's
    brain, and explanation.json says so."""
    import torch

    old = tmp_path / "old" / "models" / "model.pt"
    old.parent.mkdir(parents=True)
    checkpoint = torch.load(Path(trained_demo) / "models" / "model.pt", weights_only=True)
    del checkpoint["run"]["controls"]
    torch.save(checkpoint, old)
    scan = Path(tiny_cohort) / "images" / "sub-0001_T1w.nii.gz"  # on the model's grid: no preprocessing
    argv = ["predict", str(scan), "--model", str(old.parents[1]), "--explain", "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 0
    folder = tmp_path / "out" / "sub-0001_T1w"
    assert nib.load(folder / f"{DEFAULT_METHOD}.nii.gz").get_fdata().max() > 0
    record = json.loads((folder / "explanation.json").read_text())
    assert record["baselines"]["ig_baseline"].startswith("template: the model carries no mean control scan")
