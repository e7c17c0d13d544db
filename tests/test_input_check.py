"""Input checks against the trained run's grid and "brain-extracted", on real head and brain scans.

Real heads: Colin27 (a single-subject T1 with skull) and its brain from Debian's ``mricron-data`` (``.ci/run``
installs it); the model is the session's small demo-trained run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import nibabel.processing
import numpy as np
import pandas as pd
import pytest
from bundle_utils import run, workflow

from axial_monai.errors import InputError
from axial_monai.explain import DEFAULT_METHOD
from axial_monai.input_check import PREPROCESS_FIRST, Grid, InputCheck, outside_brain_share, read_grid
from axial_monai.run import RunSettings
from axial_monai.transforms import CheckVolumed, load_volume

COLIN = Path("/usr/share/mricron/templates")


@pytest.fixture(scope="module")
def colin27() -> dict[str, Path]:
    """Colin27 with skull (``ch2``) and brain-extracted (``ch2bet``), 181 x 217 x 181 at 1 mm, MNI-aligned."""
    files = {"head": COLIN / "ch2.nii.gz", "brain": COLIN / "ch2bet.nii.gz"}
    missing = [str(p) for p in files.values() if not p.is_file()]
    assert not missing, f"{missing} missing: apt-get install mricron-data (.ci/run does)"
    return files


@pytest.fixture(scope="module")
def settings(trained_demo) -> RunSettings:
    return RunSettings.load(trained_demo)


def _on_grid(path: Path, grid: Grid, out: Path) -> Path:
    """``path`` resampled onto ``grid`` (world coordinates kept): a scan registered to the template, not skull-stripped
    if it had a skull."""
    image = nibabel.processing.resample_from_to(nib.load(path), (grid.shape, np.asarray(grid.affine)), order=1)
    nib.save(image, out)
    return out


def test_grid_is_read_in_ras_from_the_header(tiny_cohort, tmp_path):
    source = Path(tiny_cohort) / "images" / "sub-0001_T1w.nii.gz"
    image = nib.load(source)
    lps = image.as_reoriented(nib.orientations.axcodes2ornt(("L", "P", "S")))  # same voxels, other storage order
    nib.save(lps, tmp_path / "lps.nii.gz")
    assert nib.aff2axcodes(nib.load(tmp_path / "lps.nii.gz").affine) == ("L", "P", "S")
    grid = read_grid(source)
    assert grid.mismatch(read_grid(tmp_path / "lps.nii.gz")) is None
    assert Grid.from_dict(grid.to_dict()) == grid and grid.to_dict()["orientation"] == "RAS"
    shifted = image.affine.copy()
    shifted[:3, 3] += 2.0  # two thirds of a 3 mm voxel
    assert "shifted by [2.0, 2.0, 2.0] mm" in grid.mismatch(Grid.from_affine(grid.shape, shifted))
    coarse = Grid.from_affine((30, 40, 30), np.diag([4.0, 4.0, 4.0, 1.0]))
    assert grid.mismatch(coarse).startswith("is on a (30, 40, 30) grid of 4 mm voxels, but the model expects a ")


def test_brain_extracted_share_separates_real_heads_from_brains(settings, colin27, tiny_cohort, tmp_path):
    """The measure behind the check, on real scans: demo brains and Colin27's brain are far below 5 %, Colin27 with
    its skull far above."""
    check = settings.input_check()
    shares = {
        name: outside_brain_share(
            nib.load(_on_grid(path, settings.grid, tmp_path / f"{name}.nii.gz")).get_fdata(), check.allowed
        )
        for name, path in colin27.items()
    }
    demo = [
        outside_brain_share(nib.load(path).get_fdata(), check.allowed)
        for path in sorted((Path(tiny_cohort) / "images").glob("*.nii.gz"))[:10]
    ]
    assert max(demo) < 0.01 and shares["brain"] < 0.02, (demo, shares)
    assert shares["head"] > 0.25, shares


def test_loading_transform_refuses_a_head_with_one_line(settings, colin27, tmp_path):
    head = _on_grid(colin27["head"], settings.grid, tmp_path / "head.nii.gz")
    transform = load_volume("image", check=settings.input_check(model="runs/demo"))
    with pytest.raises(RuntimeError) as caught:  # MONAI's Compose names the failing transform and chains the error
        transform({"image": str(head)})
    assert isinstance(caught.value.__cause__, InputError)
    message = str(caught.value.__cause__)
    assert message.startswith(f"{head} is not brain-extracted:") and "\n" not in message
    assert f"{PREPROCESS_FIRST}: axial-monai predict {head} --model runs/demo" in message
    assert isinstance(transform.transforms[2], CheckVolumed)


def test_inference_and_explain_skip_unusable_scans_and_run_the_others(
    trained_demo, settings, colin27, tiny_cohort, tmp_path
):
    """One batch: two valid scans that share a file name, Colin27 as it comes from the scanner (other grid, skull),
    Colin27 with skull on the model's grid, and a valid brain on a 2 mm grid."""
    images = sorted((Path(tiny_cohort) / "images").glob("*.nii.gz"))[:2]
    scans = tmp_path / "scans"
    for folder, image in zip(("a", "b"), images, strict=True):
        (scans / folder).mkdir(parents=True)
        shutil.copy(image, scans / folder / "T1.nii.gz")
    shutil.copy(colin27["head"], scans / "colin27_raw.nii.gz")
    _on_grid(colin27["head"], settings.grid, scans / "colin27_on_grid.nii.gz")
    coarse = Grid.from_affine((48, 58, 48), [[4, 0, 0, -96], [0, 4, 0, -132], [0, 0, 4, -78], [0, 0, 0, 1]])
    _on_grid(images[0], coarse, scans / "brain_4mm.nii.gz")

    out = tmp_path / "out"
    settings_ = {"input": str(scans), "output_dir": str(out), "ckpt_path": str(trained_demo / "models" / "model.pt")}
    atlas = {
        "atlas": str(Path(tiny_cohort) / "atlas.nii.gz"),
        "atlas_labels": str(Path(tiny_cohort) / "atlas_labels.csv"),
    }
    with pytest.raises(SystemExit) as ended:  # scans were skipped: exit status 1 once the others are done
        run(workflow(["inference", "explain"], "infer", num_workers=0, plots=False, **atlas, **settings_))
    assert ended.value.code == 1

    preds = pd.read_csv(out / "inference" / "predictions.csv")
    assert sorted(preds["file"]) == [str(scans / "a" / "T1.nii.gz"), str(scans / "b" / "T1.nii.gz")]
    skipped = pd.read_csv(out / "inference" / "skipped.csv").set_index("file")
    expected = {
        "colin27_raw.nii.gz": "is on a (181, 217, 181) grid of 1 mm voxels, but the model expects a (65, 77, 65) grid",
        "colin27_on_grid.nii.gz": "is not brain-extracted",
        "brain_4mm.nii.gz": "is on a (48, 58, 48) grid of 4 mm voxels",
    }
    assert sorted(skipped.index) == sorted(str(scans / name) for name in expected)
    for name, problem in expected.items():
        text = skipped.loc[str(scans / name), "problem"]
        assert text.startswith(problem), text
        assert text.endswith(f"{PREPROCESS_FIRST}: axial-monai predict {scans / name} --model {trained_demo}"), text
    # explanations of the two valid scans, one folder each although both files are T1.nii.gz
    explained = pd.read_csv(out / "explain" / "cohort" / "explanations.csv")
    assert sorted(explained["scan"]) == ["a/T1", "b/T1"]
    for sid in ("a/T1", "b/T1"):
        assert (out / "explain" / sid / f"{DEFAULT_METHOD}.nii.gz").is_file()


def test_no_usable_scan_is_an_error_naming_the_skipped_list(trained_demo, colin27, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError) as caught:
        run(
            workflow(
                ["inference"],
                "infer",
                input=[str(colin27["head"])],
                output_dir=str(out),
                ckpt_path=str(trained_demo / "models" / "model.pt"),
                num_workers=0,
            )
        )
    err = caught.value
    while err.__cause__ is not None:
        err = err.__cause__
    assert isinstance(err, InputError) and "skipped.csv" in str(err)
    assert len(pd.read_csv(out / "inference" / "skipped.csv")) == 1


def test_input_check_without_mask_checks_the_grid_only(settings, colin27, tmp_path):
    head = _on_grid(colin27["head"], settings.grid, tmp_path / "head.nii.gz")
    assert InputCheck(settings.grid)(head) is None
    assert settings.input_check(brain_extracted=False)(head) is None
    assert "not brain-extracted" in settings.input_check()(head)


@pytest.mark.parametrize(
    "images, extra, expected",
    [
        (["/d/images/sub-01_T1w.nii.gz", "/d/images/sub-02_T1w.nii.gz"], {}, ["sub-01_T1w", "sub-02_T1w"]),
        (["/x/a/T1.nii.gz", "/x/b/T1.nii.gz"], {}, ["a/T1", "b/T1"]),  # never the shared base name
        (["/a/s/T1.nii.gz", "/b/s/T1.nii.gz", "/b/t/T1.nii"], {}, ["a/s/T1", "b/s/T1", "t/T1"]),
        (["/runs/cohort.nii.gz", "/x/y.nii.gz"], {}, ["runs/cohort", "y"]),  # explain/cohort is taken
        (
            ["/p/1.nii.gz", "/p/2.nii.gz"],
            {"subject": ["sub-1", "sub-1"], "session": ["ses-1", "ses-2"]},
            ["sub-1/ses-1", "sub-1/ses-2"],
        ),
    ],
)
def test_scan_ids_are_unique_and_readable(images, extra, expected):
    from axial_monai.data.datalist import scan_ids

    items = [{"image": image, **{k: v[i] for k, v in extra.items()}} for i, image in enumerate(images)]
    assert scan_ids(items) == expected
    with pytest.raises(InputError, match="listed twice"):
        scan_ids([{"image": "/a/x.nii"}, {"image": "/a/x.nii.gz"}])


def test_each_header_is_read_once_until_the_file_changes(tmp_path, monkeypatch):
    """The start of training reads each header for the grid, the item checks and the run's check: one read per
    file (the cache of ``load_header``); a file written again is read again."""
    import os

    from axial_monai.data.datalist import check_items, check_nifti_header
    from axial_monai.input_check import _load_header

    _load_header.cache_clear()
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"sub-{i}_T1w.nii.gz")
        nib.save(nib.Nifti1Image(np.full((8, 9, 10), i + 1.0, np.float32), np.eye(4)), paths[-1])
    loads = []
    real_load = nib.load
    monkeypatch.setattr(nib, "load", lambda path, *a, **k: loads.append(os.path.basename(path)) or real_load(path))
    grid = read_grid(paths[0])
    checked = check_items([{"image": str(p)} for p in paths], "the test split", check=InputCheck(grid))
    assert [check_nifti_header(str(p)) for p in paths] == [None] * 3 and len(checked) == 3
    assert sorted(loads) == sorted(p.name for p in paths)  # grid, header checks and the run's check: one read each
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 11), np.float32), np.eye(4)), paths[1])
    os.utime(paths[1], ns=(1, 1))  # another version of the file, whatever the clock's resolution
    assert "(8, 9, 11)" in InputCheck(grid)(paths[1]) and loads.count(paths[1].name) == 2
