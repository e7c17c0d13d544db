"""The atomic writers, NaN-safe JSON and the NIfTI stem of ``axial_monai.io``."""

import json
import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from axial_monai.io import (
    atomic_path,
    json_safe,
    nifti_stem,
    save_checkpoint,
    write_csv,
    write_json,
    write_nifti,
    write_png,
    write_text,
)


@pytest.mark.parametrize(
    "path, stem",
    [
        ("/data/sub-01_ses-M000_T1w.nii.gz", "sub-01_ses-M000_T1w"),
        ("scan.nii", "scan"),
        ("a.b.nii.gz", "a.b"),
        ("/x/table.csv", "table.csv"),
        ("/x/archive.gz", "archive.gz"),
    ],
)
def test_nifti_stem(path, stem):
    assert nifti_stem(path) == stem


def test_json_safe_writes_nan_as_null(tmp_path):
    value = {"auc": float("nan"), "acc": 0.5, "nested": [np.float64("nan"), {"x": (1.0, float("nan"))}], "n": 3}
    assert json_safe(value) == {"auc": None, "acc": 0.5, "nested": [None, {"x": [1.0, None]}], "n": 3}
    write_json(tmp_path / "out" / "m.json", value)
    text = (tmp_path / "out" / "m.json").read_text()
    assert "NaN" not in text and text.endswith("\n")
    assert json.loads(text)["nested"][1]["x"] == [1.0, None]


def test_every_writer_leaves_only_the_target(tmp_path):
    figure = Figure(figsize=(1, 1))
    figure.subplots().plot([0, 1])
    image = nib.Nifti1Image(np.arange(8, dtype=np.float32).reshape(2, 2, 2), np.diag([2.0, 2.0, 2.0, 1.0]))
    write_text(tmp_path / "a" / "note.txt", "hello\n")
    write_csv(tmp_path / "table.tsv", pd.DataFrame({"x": [1, None]}), sep="\t", na_rep="n/a")
    write_nifti(tmp_path / "map.nii.gz", image)
    write_nifti(tmp_path / "map.nii", image)
    write_png(tmp_path / "fig.png", figure)
    save_checkpoint(tmp_path / "model.pt", {"w": torch.ones(2)})

    assert (tmp_path / "a" / "note.txt").read_text() == "hello\n"
    assert (tmp_path / "table.tsv").read_text() == "x\n1.0\nn/a\n"
    for name in ("map.nii.gz", "map.nii"):
        loaded = nib.load(tmp_path / name)
        np.testing.assert_array_equal(loaded.get_fdata(), image.get_fdata())
        np.testing.assert_array_equal(loaded.affine, image.affine)
    assert (tmp_path / "map.nii.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip, chosen by the target name
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["w"], torch.ones(2))
    leftovers = list(tmp_path.rglob(".*"))
    assert leftovers == []


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "summary.json"
    write_json(target, {"version": 1})

    class BoomError(Exception):
        pass

    with pytest.raises(BoomError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"version": 2, "trunc')  # a writer killed halfway
            raise BoomError
    assert json.loads(target.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_clean_stale_removes_temporary_files_of_a_killed_writer(tmp_path):
    target = tmp_path / "out.nii.gz"
    stale = tmp_path / ".out.nii.gz.abc123.tmp.nii.gz"
    stale.write_bytes(b"half")
    other = tmp_path / ".other.nii.gz.abc123.tmp.nii.gz"  # another target's file is left alone
    other.write_bytes(b"half")
    with atomic_path(target, suffix=".nii.gz", clean_stale=True) as tmp:
        tmp.write_bytes(b"done")
    assert sorted(os.listdir(tmp_path)) == [other.name, "out.nii.gz"]
