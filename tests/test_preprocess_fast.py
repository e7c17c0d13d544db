"""The fast preprocessing profile (deepbet, N4 in the brain, greedy) on a real head, and where the profile is recorded.

The head is Colin27 with skull (Debian ``mricron-data``), downsampled to 4 mm for speed and moved off the template by
a rigid transform; its brain (``ch2bet``) moved the same way is the reference brain mask.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import ants
import nibabel as nib
import numpy as np
import pytest
from test_predict import COLIN, moved_head

from axial_monai import cli
from axial_monai.errors import SettingsError
from axial_monai.predict import _profile
from axial_monai.preprocess import fast, pipeline_dir
from axial_monai.preprocess.pipeline import preprocess_scan
from axial_monai.preprocess.templates import DEFAULT_TEMPLATE, load_template
from axial_monai.run.training import preprocessing_profile

COLIN_BRAIN = COLIN.with_name("ch2bet.nii.gz")


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The moved 4 mm head and its reference brain mask (the moved ch2bet, on the head's grid)."""
    root = tmp_path_factory.mktemp("head")
    path = moved_head(root / "sub-colin_ses-M000_T1w.nii.gz", voxel=4.0)
    reference = moved_head(root / "brain.nii.gz", voxel=4.0, source=COLIN_BRAIN)
    return path, np.asarray(nib.load(reference).dataobj) > 1


def test_fast_profile_extracts_registers_and_resamples_once(head):
    path, reference = head
    template = load_template(DEFAULT_TEMPLATE, resolution=3.0)
    result = preprocess_scan(path, template, "fast")
    dice = 2 * (result.native_mask & reference).sum() / (result.native_mask.sum() + reference.sum())
    assert dice >= 0.9, dice  # the template's brain carried back, against ch2bet (0.97 at 1 mm: the benchmark)
    metrics = result.metrics
    assert metrics["similarity_cc"] >= 0.6 and metrics["mask_dice"] >= 0.9, metrics
    assert 0 < metrics["jacobian_min"] < 1 < metrics["jacobian_max"] < 10, metrics  # deformable, and no folding
    brain = result.brain
    assert brain.shape == template.image.shape and np.allclose(brain.origin, template.image.origin)
    values = brain.numpy()
    inside = template.brain_mask.numpy() > 0
    assert values[~inside].max() == 0 and (values[inside] > 0).mean() > 0.95  # the head, in the template's brain
    assert np.corrcoef(values[inside], template.image.numpy()[inside])[0, 1] > 0.75


def test_the_profile_is_recorded_by_the_preprocessing_and_read_by_training(head, tmp_path):
    path, _ = head
    bids = tmp_path / "bids" / "sub-colin" / "ses-M000" / "anat"
    bids.mkdir(parents=True)
    shutil.copy(path, bids / path.name)
    assert cli.main(["preprocess", str(tmp_path / "bids"), "--out", str(tmp_path / "out"), "--resolution", "3"]) == 0
    (record_path,) = (pipeline_dir(tmp_path / "out") / "qc").glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["settings"]["profile"] == "fast" and record["mask_dice"] >= 0.9
    (output,) = pipeline_dir(tmp_path / "out").rglob("*_desc-preproc_T1w.nii.gz")
    assert preprocessing_profile(str(output)) == "fast"  # what training stores in the run settings
    assert preprocessing_profile(str(path)) is None  # a scan without a record
    with pytest.raises(SettingsError, match="one BIDS tree alone"):
        cli.preprocess(str(tmp_path / "bids"), str(path), out=str(tmp_path / "mixed"))


@pytest.mark.parametrize(
    "given, recorded, expected, said",
    [
        (None, None, "fast", "the model does not record its preprocessing"),
        (None, "paper", "paper", "as the model's training scans"),
        ("fast", "paper", "fast", "the model's training scans used paper"),
    ],
)
def test_predict_takes_the_model_s_profile_unless_told_and_says_so(given, recorded, expected, said):
    lines = []
    assert _profile(given, SimpleNamespace(profile=recorded), lines.append) == expected
    assert said in lines[0] and expected in lines[0]


def test_no_brain_is_one_clear_line(tmp_path):
    empty = ants.from_numpy(np.zeros((48, 48, 48), np.float32) + np.random.default_rng(0).random((48, 48, 48)) * 1e-3)
    ants.image_write(empty, str(tmp_path / "noise.nii.gz"))
    template = load_template(DEFAULT_TEMPLATE, resolution=4.0)
    with pytest.raises(ValueError, match="no brain found"):
        preprocess_scan(tmp_path / "noise.nii.gz", template, "fast")


class _CountingExtractor:
    """Stands in for deepbet's ``BrainExtraction``: the voxels above their mean are the brain; counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, image: nib.Nifti1Image):
        self.runs += 1
        data = image.get_fdata()
        mask = nib.Nifti1Image((data > data.mean()).astype(np.uint8), image.affine)
        return image, mask, 0.0


def test_brain_masks_are_kept_by_content(head, tmp_path, monkeypatch):
    """A mask is extracted once per content (voxels, affine, deepbet): the same voxels under another name are taken
    from the cache; another voxel value, affine or deepbet extracts again; a damaged entry is replaced; a cache that
    cannot be written costs only the next extraction."""
    extractor = _CountingExtractor()
    monkeypatch.setattr(fast, "_extractor", lambda: extractor)
    monkeypatch.setenv("AXIAL_MONAI_CACHE", str(tmp_path / "cache"))
    path, _ = head
    image = nib.load(path)
    expected = np.asarray(extractor.run(image)[1].dataobj) > 0
    extractor.runs = 0

    first = fast.cached_brain_mask(image)
    assert extractor.runs == 1 and first.dtype == bool and np.array_equal(first, expected)
    copy = tmp_path / "copy.nii.gz"
    shutil.copy(path, copy)
    assert np.array_equal(fast.cached_brain_mask(nib.load(copy)), expected) and extractor.runs == 1  # a hit
    (entry,) = (tmp_path / "cache" / fast.MASK_CACHE).iterdir()

    data = np.asanyarray(image.dataobj).copy()
    data[tuple(np.array(data.shape) // 2)] += 1
    fast.cached_brain_mask(nib.Nifti1Image(data, image.affine, image.header))
    assert extractor.runs == 2  # one voxel changed
    moved = image.affine.copy()
    moved[0, 3] += 1.0
    fast.cached_brain_mask(nib.Nifti1Image(np.asanyarray(image.dataobj), moved, image.header))
    assert extractor.runs == 3  # the same voxels elsewhere
    with monkeypatch.context() as patch:
        patch.setattr(fast, "_deepbet_digest", lambda: "another deepbet")
        fast.cached_brain_mask(image)
    assert extractor.runs == 4

    entry.write_bytes(b"not a mask")
    assert np.array_equal(fast.cached_brain_mask(image), expected) and extractor.runs == 5  # damaged: extracted again
    assert np.array_equal(fast.cached_brain_mask(image), expected) and extractor.runs == 5  # ... and replaced

    (tmp_path / "file").write_text("a file where the cache folder should be")
    monkeypatch.setenv("AXIAL_MONAI_CACHE", str(tmp_path / "file"))
    assert np.array_equal(fast.cached_brain_mask(image), expected) and extractor.runs == 6
