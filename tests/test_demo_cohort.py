"""Tests of the planted-atrophy demo cohort (axial_monai.data.demo), on real files written to temp dirs.

Cohorts are generated at 4 mm with 6-12 subjects to stay fast.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from scipy import ndimage

from axial_monai.data import demo as demo_module
from axial_monai.data import load_atlas, phantom, region_mask, resample_atlas
from axial_monai.data.demo import prepare_demo_cohort

FAST = {"n_subjects": 10, "spacing": 4.0, "seed": 3}
DEFAULT_REGIONS = ("Left_Hippocampus", "Right_Hippocampus", "Left_Amygdala", "Right_Amygdala")
SPLITS = ("training", "validation", "test")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return Path(prepare_demo_cohort(root=str(tmp_path_factory.mktemp("cache")), **FAST))


def _entries(cohort_dir: Path) -> list[dict]:
    datalist = json.loads((cohort_dir / "datalist.json").read_text())
    return [dict(entry, split=split) for split in SPLITS for entry in datalist[split]]


def _array(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def _region(cohort_dir: Path, regions) -> np.ndarray:
    atlas = load_atlas("neuromorphometrics")
    atlas.image = nib.load(str(cohort_dir / "atlas.nii.gz"))
    return region_mask(atlas, regions)


def _all_files(cohort_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(cohort_dir)): p.stat().st_mtime_ns for p in sorted(cohort_dir.rglob("*")) if p.is_file()}


def test_files_on_disk_share_one_grid(cohort):
    manifest = json.loads((cohort / "cohort.json").read_text())
    assert manifest["complete"] is True
    assert manifest["parameters"]["n_subjects"] == 10 and manifest["parameters"]["spacing"] == 4.0
    assert manifest["class_names"] == {"0": "CN", "1": "AD"}
    assert manifest["regions"] == list(DEFAULT_REGIONS)
    assert cohort.name.startswith("demo-")

    template = nib.load(str(cohort / "template.nii.gz"))
    atlas = nib.load(str(cohort / "atlas.nii.gz"))
    assert list(template.shape) == manifest["shape"] == [49, 58, 49]
    assert nib.aff2axcodes(template.affine) == ("R", "A", "S")
    np.testing.assert_allclose(template.header.get_zooms(), (4.0, 4.0, 4.0))
    np.testing.assert_array_equal(template.affine, np.array(manifest["affine"]))
    assert np.array_equal(atlas.affine, template.affine) and atlas.shape == template.shape
    assert np.asanyarray(atlas.dataobj).dtype.kind in "iu"
    # the saved atlas is the shipped atlas resampled (nearest) onto the cohort grid
    expected = resample_atlas(load_atlas("neuromorphometrics"), template)
    np.testing.assert_array_equal(np.asanyarray(atlas.dataobj), np.asanyarray(expected.image.dataobj))
    with open(cohort / "atlas_labels.csv") as f:
        labels = {int(row["index"]): row["name"] for row in csv.DictReader(f)}
    assert labels == expected.labels

    entries = _entries(cohort)
    assert len(entries) == 10
    for entry in entries:
        image = nib.load(str(cohort / entry["image"]))
        mask = nib.load(str(cohort / entry["atrophy_mask"]))
        assert image.shape == mask.shape == template.shape
        assert np.array_equal(image.affine, template.affine) and np.array_equal(mask.affine, template.affine)
        assert image.get_data_dtype() == np.float32 and mask.get_data_dtype() == np.uint8
        data = np.asanyarray(image.dataobj)
        assert data.min() == 0.0 and data[0, 0, 0] == 0.0 and data[-1, -1, -1] == 0.0  # background stays 0
        brain = data > 0
        assert 0.1 < brain.mean() < 0.5 and 0.4 < data[brain].mean() < 1.0


def test_datalist_resolves_with_monai_and_matches_participants(cohort):
    for split in SPLITS:
        items = load_decathlon_datalist(str(cohort / "datalist.json"), data_list_key=split, base_dir=str(cohort))
        assert items
        for item in items:
            assert set(item) == {"image", "label", "atrophy_mask", "subject", "diagnosis"}
            assert os.path.isfile(item["image"]) and os.path.isfile(item["atrophy_mask"])
            assert item["label"] in (0, 1) and item["diagnosis"] == {0: "CN", 1: "AD"}[item["label"]]
            assert os.path.basename(item["image"]) == f"{item['subject']}_T1w.nii.gz"
    for entry in _entries(cohort):  # stored paths are relative
        assert not os.path.isabs(entry["image"]) and not os.path.isabs(entry["atrophy_mask"])
    with open(cohort / "participants.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["subject"] for r in rows] == [f"sub-{i:04d}" for i in range(1, 11)]
    by_subject = {e["subject"]: e for e in _entries(cohort)}
    for row in rows:
        entry = by_subject[row["subject"]]
        assert (row["diagnosis"], int(row["label"]), row["split"]) == (
            entry["diagnosis"],
            entry["label"],
            entry["split"],
        )


def test_splits_are_subject_wise_disjoint_complete_and_stratified(cohort):
    entries = _entries(cohort)
    subjects = {split: {e["subject"] for e in entries if e["split"] == split} for split in SPLITS}
    assert sum(len(s) for s in subjects.values()) == len(set().union(*subjects.values())) == 10
    labels = [e["label"] for e in entries]
    assert labels.count(1) == labels.count(0) == 5
    for split in SPLITS:
        assert {e["label"] for e in entries if e["split"] == split} == {0, 1}
    manifest = json.loads((cohort / "cohort.json").read_text())
    assert {s: manifest["n_subjects"][s]["total"] for s in SPLITS} == {s: len(subjects[s]) for s in SPLITS}


def test_atrophy_masks_only_for_ad_and_in_the_atlas_region(cohort):
    region = _region(cohort, DEFAULT_REGIONS)
    near_region = ndimage.binary_dilation(region, iterations=3)  # the warp moves the anatomy by a few mm
    ad_masks = set()
    for entry in _entries(cohort):
        mask = _array(cohort / entry["atrophy_mask"]).astype(bool)
        if entry["label"] == 0:
            assert not mask.any(), entry["subject"]
            continue
        assert 0.5 * region.sum() < mask.sum() < 1.5 * region.sum()
        assert not (mask & ~near_region).any()
        assert (mask & region).sum() / mask.sum() > 0.4
        ad_masks.add(mask.tobytes())
        # mask lies on both hemispheres, as the default regions do
        centre_x = (np.linalg.inv(nib.load(str(cohort / "template.nii.gz")).affine) @ [0, 0, 0, 1])[0]
        xs = np.nonzero(mask)[0]
        assert (xs < centre_x).any() and (xs > centre_x).any()
    assert len(ad_masks) == 5  # each mask follows its subject's own deformation


def test_atrophy_is_local_and_darkens_the_region(cohort, tmp_path):
    # same subjects with strength 0: same warps, bias and noise, no tissue loss
    twin = Path(prepare_demo_cohort(root=str(tmp_path), strength=0.0, **FAST))
    region = _region(cohort, DEFAULT_REGIONS)
    for entry in _entries(cohort):
        atrophied = _array(cohort / entry["image"])
        healthy = _array(twin / entry["image"])
        if entry["label"] == 0:
            np.testing.assert_array_equal(atrophied, healthy)
            continue
        mask = _array(cohort / entry["atrophy_mask"]).astype(bool)
        change = np.abs(atrophied - healthy)
        assert change.max() > 0.1
        far = ~ndimage.binary_dilation(mask, iterations=3)
        assert change[far].max() < 1e-3  # nothing changes away from the mask (up to float rounding of the rim)
        brain = healthy > 0
        assert abs(atrophied[brain].mean() / healthy[brain].mean() - 1) < 0.01  # global statistics barely move
        assert atrophied[mask].mean() < 0.9 * healthy[mask].mean()  # the region loses > 10 % of its intensity
    # between subjects, the region is darker relative to the rest of the brain in AD than in CN
    ratios = {0: [], 1: []}
    for entry in _entries(cohort):
        image = _array(cohort / entry["image"])
        ratios[entry["label"]].append(image[region].mean() / image[image > 0].mean())
    assert max(ratios[1]) < min(ratios[0])


def test_second_call_reuses_the_cohort(cohort, monkeypatch):
    before = _all_files(cohort)

    def fail(*args, **kwargs):
        raise AssertionError("the cohort was regenerated")

    monkeypatch.setattr(demo_module, "_generate", fail)
    monkeypatch.setattr(demo_module, "build_anatomy", fail)
    again = prepare_demo_cohort(root=str(cohort.parent), **FAST)
    assert Path(again) == cohort
    assert _all_files(cohort) == before
    assert [p.name for p in cohort.parent.iterdir()] == [cohort.name]  # no temp dirs next to it


def test_deterministic_given_the_seed_and_independent_of_cohort_size(cohort, tmp_path):
    same = Path(prepare_demo_cohort(root=str(tmp_path / "a"), **FAST))
    assert same.name == cohort.name
    assert (same / "datalist.json").read_text() == (cohort / "datalist.json").read_text()
    assert (same / "participants.tsv").read_text() == (cohort / "participants.tsv").read_text()
    for entry in _entries(cohort):
        np.testing.assert_array_equal(_array(same / entry["image"]), _array(cohort / entry["image"]))
        np.testing.assert_array_equal(_array(same / entry["atrophy_mask"]), _array(cohort / entry["atrophy_mask"]))

    # a bigger cohort with the same seed: a subject with the same diagnosis gets the same image
    bigger = Path(prepare_demo_cohort(root=str(tmp_path / "b"), **{**FAST, "n_subjects": 12}))
    assert bigger.name != cohort.name
    labels = {e["subject"]: e["label"] for e in _entries(bigger)}
    shared = [e for e in _entries(cohort) if labels[e["subject"]] == e["label"]]
    assert len(shared) >= 3
    for entry in shared:
        np.testing.assert_array_equal(_array(bigger / entry["image"]), _array(cohort / entry["image"]))

    # another seed gives other images
    other = Path(prepare_demo_cohort(root=str(tmp_path / "c"), **{**FAST, "seed": 4}))
    first = _entries(cohort)[0]["image"]
    assert not np.array_equal(_array(other / first), _array(cohort / first))


@pytest.mark.parametrize("regions", [("Left_Putamen", "Right_Putamen"), ("Left_Thalamus_Proper",)])
def test_other_regions_move_the_atrophy(tmp_path, monkeypatch, regions):
    monkeypatch.setenv("AXIAL_MONAI_CACHE", str(tmp_path / "env-cache"))
    cohort_dir = Path(prepare_demo_cohort(n_subjects=6, spacing=4.0, regions=regions))
    assert cohort_dir.parent == tmp_path / "env-cache"  # root=None uses $AXIAL_MONAI_CACHE
    manifest = json.loads((cohort_dir / "cohort.json").read_text())
    assert manifest["regions"] == list(regions)
    target = _region(cohort_dir, regions)
    hippocampi = _region(cohort_dir, DEFAULT_REGIONS[:2])
    ad = [e for e in _entries(cohort_dir) if e["label"] == 1]
    assert len(ad) == 3
    for entry in ad:
        mask = _array(cohort_dir / entry["atrophy_mask"]).astype(bool)
        assert (mask & target).sum() > 0.4 * mask.sum()
        assert not (mask & hippocampi).any()


def test_unknown_region_is_reported_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown region 'Left_Hipocampus'.*Left_Hippocampus"):
        prepare_demo_cohort(root=str(tmp_path), regions=("Left_Hipocampus",), n_subjects=6, spacing=4.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_subjects": 4}, "n_subjects=4 is too small"),
        ({"strength": 1.5}, r"strength must be a number in \[0, 1\], not 1.5"),
        ({"spacing": 0}, "spacing must be a positive"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction \\+ test_fraction must be below 1"),
        ({"test_fraction": 0.0}, r"test_fraction must be a number in \(0, 1\)"),
        ({"regions": ()}, "at least one atlas region"),
        ({"atlas": "harvard_oxford"}, "probabilistic"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prepare_demo_cohort(root=str(tmp_path), **{"n_subjects": 6, "spacing": 4.0, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_interrupted_run_leaves_no_cohort_and_a_stale_one_is_replaced(tmp_path, monkeypatch):
    real = demo_module.simulate_subject
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(demo_module, "simulate_subject", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        prepare_demo_cohort(root=str(tmp_path), n_subjects=6, spacing=4.0)
    assert list(tmp_path.iterdir()) == []  # neither a half cohort nor a temp dir
    monkeypatch.setattr(demo_module, "simulate_subject", real)

    # a directory at the target that is not complete (e.g. cut short by hand or written by a killed old version)
    cohort_dir = Path(prepare_demo_cohort(root=str(tmp_path), n_subjects=6, spacing=4.0))
    assert [p.name for p in tmp_path.iterdir()] == [cohort_dir.name]
    (cohort_dir / "cohort.json").write_text(json.dumps({"complete": False}))
    for image in list((cohort_dir / "images").iterdir())[:2]:
        image.unlink()
    result = Path(prepare_demo_cohort(root=str(tmp_path), n_subjects=6, spacing=4.0))
    assert result == cohort_dir
    assert json.loads((cohort_dir / "cohort.json").read_text())["complete"] is True
    assert len(list((cohort_dir / "images").iterdir())) == 6
    assert [p.name for p in tmp_path.iterdir()] == [cohort_dir.name]  # the stale copy was removed


def test_a_cohort_finished_first_by_another_process_is_used(tmp_path, monkeypatch):
    real_generate = demo_module._generate
    state = {"ours": None}

    def generate_while_another_process_finishes(out_dir, anatomy, params):
        if state["ours"] is None:
            state["ours"] = out_dir
            # "another process" completes the same cohort while we are still generating ours
            monkeypatch.setattr(demo_module, "_generate", real_generate)
            state["theirs"] = prepare_demo_cohort(root=str(tmp_path), n_subjects=6, spacing=4.0)
            state["mtimes"] = _all_files(Path(state["theirs"]))
        return real_generate(out_dir, anatomy, params)

    monkeypatch.setattr(demo_module, "_generate", generate_while_another_process_finishes)
    result = prepare_demo_cohort(root=str(tmp_path), n_subjects=6, spacing=4.0)
    assert result == state["theirs"]
    assert _all_files(Path(result)) == state["mtimes"]  # theirs was kept, not overwritten by ours
    assert not state["ours"].exists()
    assert [p.name for p in tmp_path.iterdir()] == [Path(result).name]


# --- morphological atrophy ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory) -> Path:
    return Path(prepare_demo_cohort(root=str(tmp_path_factory.mktemp("morph")), atrophy="morphological", **FAST))


def test_default_cohort_key_and_data_are_those_of_the_intensity_model(cohort):
    # the cache key of an intensity cohort is what it always was: no "atrophy" entry, same generator version
    params = json.loads((cohort / "cohort.json").read_text())["parameters"]
    assert "atrophy" not in params and params["generator_version"] == demo_module.GENERATOR_VERSION == 1
    assert cohort.name == "demo-" + demo_module._cache_key(params)
    assert json.loads((cohort / "cohort.json").read_text())["atrophy"] == "intensity"


def test_morphological_atrophy_shrinks_the_region_and_frees_csf(shrunk, tmp_path):
    manifest = json.loads((shrunk / "cohort.json").read_text())
    assert manifest["atrophy"] == "morphological" and manifest["parameters"]["atrophy"] == "morphological"
    twin = Path(prepare_demo_cohort(root=str(tmp_path), strength=0.0, atrophy="morphological", **FAST))
    for entry in _entries(shrunk):
        atrophied, healthy = _array(shrunk / entry["image"]), _array(twin / entry["image"])
        mask = _array(shrunk / entry["atrophy_mask"]).astype(bool)
        if entry["label"] == 0:
            np.testing.assert_array_equal(atrophied, healthy)
            assert not mask.any()
            continue
        change = np.abs(atrophied - healthy)
        # the ground truth is the region before shrinkage: every change lies in it (up to the warp's trilinear rim)
        assert change[~ndimage.binary_dilation(mask, iterations=3)].max() < 1e-3
        assert change[mask].max() > 0.2
        # freed tissue turned to CSF (the same subject without atrophy has the same bias, scaling and noise)
        assert atrophied[mask].mean() < 0.9 * healthy[mask].mean()
        assert (change[mask] > 0.05).mean() > 0.3


def test_morphological_strength_is_the_volume_loss(tmp_path):
    anatomy = phantom.build_anatomy(4.0, "neuromorphometrics", DEFAULT_REGIONS, "morphological")
    mask = anatomy.atrophy_mask
    previous = 0.0
    for loss in (0.2, 0.4, 0.6):
        image = phantom.shrink(anatomy, loss)
        assert np.array_equal(image[~mask], anatomy.template[~mask])  # nothing changes outside the region
        # voxel-wise share of CSF in the region: (template - image) / (template - csf), averaged over the region
        freed = (anatomy.template[mask] - image[mask]) / np.maximum(
            anatomy.template[mask] - anatomy.csf_intensity, 1e-6
        )
        assert freed.mean() > previous
        previous = freed.mean()
    assert 0.4 < previous < 0.8
    with pytest.raises(ValueError, match="atrophy must be one of"):
        prepare_demo_cohort(root=str(tmp_path), atrophy="cortical", **FAST)
