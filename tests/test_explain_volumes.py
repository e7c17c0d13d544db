"""Geometry of the voxel maps: every value lands in exactly the slab (and in-plane place) it was computed for."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from axial_monai.explain import (
    attention_volume,
    attention_weighted_cam,
    cam_volume,
    cohort_attention_map,
    combine_planes,
    explainable_mri,
    mean_map,
    minmax,
    place_profile,
    split_cams,
)
from axial_monai.geometry import central_slice_indices
from axial_monai.networks import SliceStack

# odd and even grid sizes, odd and even slice counts
GRIDS = [((11, 12, 13), 4), ((12, 13, 11), 5), ((10, 9, 14), 7)]
CASES = [(shape, n, plane) for shape, n in GRIDS for plane in (0, 1, 2)]


def _slab(shape, plane, index):
    """Boolean mask of the slab ``index`` along axis ``plane``."""
    mask = np.zeros(shape, bool)
    np.moveaxis(mask, plane, 0)[index] = True
    return mask


@pytest.mark.parametrize("shape, n, plane", CASES)
def test_single_attention_peak_lands_in_its_slab(shape, n, plane):
    indices = central_slice_indices(shape[plane], n)
    for peak in range(n):
        profile = np.zeros(n, np.float32)
        profile[peak] = 0.7
        for vol in (
            place_profile(profile, plane, indices, shape),
            attention_volume({plane: profile}, indices={plane: indices}, spatial_shape=shape),
        ):
            assert vol.shape == shape and vol.dtype == np.float32
            expected = _slab(shape, plane, indices[peak])
            np.testing.assert_array_equal(vol > 0, expected)
            np.testing.assert_array_equal(vol[expected], np.float32(0.7))


@pytest.mark.parametrize("shape, n, plane", CASES)
def test_profile_round_trips_through_the_network_slicer(shape, n, plane):
    """Slices cut by SliceStack carry their slab number; placing the per-slice values gives it back in place."""
    coords = np.indices(shape)[plane].astype(np.float32) + 1.0  # voxel value = its slab index + 1
    stack = SliceStack(plane, n, image_size=16, normalize="none")
    slices = stack(torch.from_numpy(coords)[None, None])[0, :, 0]  # (N, 16, 16)
    profile = slices.mean(dim=(1, 2)).numpy()
    indices = stack.indices(shape)
    vol = place_profile(profile, plane, indices, shape)
    inside = np.isin(np.indices(shape)[plane], list(indices))
    np.testing.assert_allclose(vol[inside], coords[inside], rtol=1e-6)
    assert (vol[~inside] == 0).all()


def test_place_profile_rejects_bad_geometry():
    with pytest.raises(ValueError, match=r"The profile \(5 values\) has 5 slices but 4 slice indices"):
        place_profile(np.ones(5), 0, range(2, 6), (10, 10, 10))
    with pytest.raises(ValueError, match=r"8\.\.11 .* axis of 10 slices"):
        place_profile(np.ones(4), 1, range(8, 12), (10, 10, 10))
    with pytest.raises(ValueError, match="plane"):
        place_profile(np.ones(4), 3, range(4), (10, 10, 10))
    with pytest.raises(ValueError, match="distinct"):
        place_profile(np.ones(2), 0, [3, 3], (10, 10, 10))


@pytest.mark.parametrize("shape", [(11, 12, 13), (12, 10, 9)])
def test_three_plane_attention_is_the_outer_product_inside_the_box(shape):
    rng = np.random.default_rng(0)
    n = (4, 5, 6)
    indices = {p: central_slice_indices(shape[p], n[p]) for p in range(3)}
    att = {p: rng.random(n[p]).astype(np.float32) for p in range(3)}
    vol = attention_volume(att, indices, shape)
    box = np.ix_(*(list(indices[p]) for p in range(3)))
    np.testing.assert_allclose(vol[box], np.einsum("i,j,k->ijk", att[0], att[1], att[2]), rtol=1e-6)
    outside = np.ones(shape, bool)
    outside[box] = False
    assert (vol[outside] == 0).all()
    peak = tuple(indices[p][int(np.argmax(att[p]))] for p in range(3))
    assert np.unravel_index(np.argmax(vol), shape) == peak
    # raw values are kept unless asked; normalize gives [0, 1]
    assert vol.max() < 1.0
    normed = attention_volume({p: torch.from_numpy(a) for p, a in att.items()}, indices, shape, normalize=True)
    assert normed.max() == pytest.approx(1.0) and normed.min() == 0.0
    # a (1, N) batch of one is accepted
    np.testing.assert_array_equal(
        attention_volume({0: att[0][None]}, indices, shape), place_profile(att[0], 0, indices[0], shape)
    )


@pytest.mark.parametrize("shape", [(11, 12, 13), (12, 13, 10)])
def test_cohort_attention_map_peaks_at_the_exact_voxel(shape):
    rng = np.random.default_rng(1)
    n = (5, 4, 6)
    indices = {p: central_slice_indices(shape[p], n[p]) for p in range(3)}
    peaks = (1, 2, 4)
    profiles = {}
    for p in range(3):
        scans = rng.random((3, n[p])) * 0.1
        scans[:, peaks[p]] += 1.0
        profiles[p] = scans
    cmap = cohort_attention_map(profiles, indices, shape)
    expected = tuple(indices[p][peaks[p]] for p in range(3))
    assert np.unravel_index(np.argmax(cmap), shape) == expected  # not one voxel off
    assert cmap[expected] == pytest.approx(1.0)
    assert cmap.min() == 0.0 and cmap.dtype == np.float32
    # value = min-max of the outer product of the scan means, in the box
    means = [profiles[p].mean(0) for p in range(3)]
    box = np.ix_(*(list(indices[p]) for p in range(3)))
    np.testing.assert_allclose(cmap[box], minmax(np.einsum("i,j,k->ijk", *means)), atol=1e-6)
    # a list of per-scan vectors gives the same map
    as_lists = {p: list(v) for p, v in profiles.items()}
    np.testing.assert_array_equal(cohort_attention_map(as_lists, indices, shape), cmap)


def test_cohort_map_with_missing_planes_is_constant_along_them():
    shape = (10, 11, 12)
    indices = {p: central_slice_indices(shape[p], 4) for p in range(3)}
    profiles = {2: np.array([[0.1, 0.2, 0.6, 0.1], [0.1, 0.4, 0.4, 0.1]])}
    single = cohort_attention_map(profiles, indices, shape)
    z = list(indices[2])
    # slabs: constant along x and y, mean profile [0.1, 0.3, 0.5, 0.1] min-maxed along z
    np.testing.assert_allclose(single[3, 5, z], [0.0, 0.5, 1.0, 0.0], atol=1e-6)
    assert (single == single[:1, :1, :]).all()
    two = cohort_attention_map({0: np.eye(4)[1][None], 2: profiles[2]}, indices, shape)
    assert np.unravel_index(np.argmax(two), shape)[::2] == (indices[0][1], indices[2][2])
    assert (two == two[:, :1, :]).all()  # bars: constant along y
    with pytest.raises(ValueError, match=r"The profiles of plane 0 \(2, 4\) has 4 slices but 3 slice indices"):
        cohort_attention_map({0: np.ones((2, 4))}, {0: range(3, 6)}, shape)


def test_explainable_mri_and_mean_map(tmp_path):
    template = np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 5 + 7
    cmap = np.zeros((2, 3, 4), np.float32)
    cmap[1, 2, 3] = 0.5
    mri = explainable_mri(template, cmap)
    assert mri.min() == 0.0 and mri[1, 2, 3] == pytest.approx(1.0 + 10 * 0.5)
    assert explainable_mri(template, cmap, scale=2.0)[1, 2, 3] == pytest.approx(2.0)
    maps = [np.full((2, 3, 4), v, np.float32) for v in (1.0, 2.0, 6.0)]
    path = tmp_path / "m.nii.gz"
    nib.save(nib.Nifti1Image(maps[2], np.eye(4)), path)
    mixed = iter([maps[0], nib.Nifti1Image(maps[1], np.eye(4)), path])  # a generator is consumed once
    np.testing.assert_allclose(mean_map(mixed), 3.0)
    with pytest.raises(ValueError, match="at least one"):
        mean_map([])
    with pytest.raises(ValueError, match="shape"):
        mean_map([maps[0], np.zeros((2, 3, 5))])


@pytest.mark.parametrize("shape, n, plane", CASES)
def test_hot_cam_pixel_lands_in_its_slice_and_place(shape, n, plane):
    indices = central_slice_indices(shape[plane], n)
    native = [s for a, s in enumerate(shape) if a != plane]
    h, w = 5, 4  # an interior cell: at the border bilinear resizing makes a plateau up to the edge
    s, r, c = n - 2, 1, 2
    cams = np.zeros((n, 1, h, w), np.float32)
    cams[s, 0, r, c] = 5.0
    for given in (cams, torch.from_numpy(cams[:, 0])):
        vol = cam_volume(given, plane, indices, shape)
        assert vol.shape == shape and vol.max() == pytest.approx(1.0)
        peak = np.unravel_index(np.argmax(vol), shape)
        assert peak[plane] == indices[s]
        assert (np.moveaxis(vol, plane, 0)[[i for i in indices if i != indices[s]]] == 0).all()
        in_plane = [peak[a] for a in range(3) if a != plane]
        # centre of CAM cell (r, c) in native pixels, align_corners=False geometry
        expected = [(r + 0.5) * native[0] / h - 0.5, (c + 0.5) * native[1] / w - 0.5]
        assert abs(in_plane[0] - expected[0]) <= 1.0 and abs(in_plane[1] - expected[1]) <= 1.0


@pytest.mark.parametrize("shape, n, plane", CASES)
def test_cam_of_sliced_input_round_trips_to_the_voxel(shape, n, plane):
    """A 'CAM' equal to the resized slice itself is put back where the hot voxel was (axis order, aspect)."""
    indices = central_slice_indices(shape[plane], n)
    hot = [4, 5, 6]
    hot[plane] = indices[1]
    vol = np.zeros(shape, np.float32)
    vol[tuple(hot)] = 1.0
    slices = SliceStack(plane, n, image_size=24, normalize="none")(torch.from_numpy(vol)[None, None])[0, :, 0]
    back = cam_volume(slices, plane, indices, shape, normalization="volume")
    assert np.unravel_index(np.argmax(back), shape) == tuple(hot)


@pytest.mark.parametrize("shape, n, plane", CASES)
def test_resizing_back_inverts_the_slicer_resize(shape, n, plane):
    """A linear ramp survives slicer resize + CAM resize exactly away from the borders (same pixel geometry)."""
    i, j, k = np.indices(shape).astype(np.float32)
    ramp = 0.5 + 0.03 * i + 0.02 * j + 0.01 * k
    indices = central_slice_indices(shape[plane], n)
    slices = SliceStack(plane, n, image_size=32, normalize="none")(torch.from_numpy(ramp)[None, None])[0, :, 0]
    back = cam_volume(slices, plane, indices, shape, normalization="volume")
    inside = np.moveaxis(ramp, plane, 0)[list(indices)][:, 1:-1, 1:-1].ravel()
    back = np.moveaxis(back, plane, 0)[list(indices)][:, 1:-1, 1:-1].ravel()
    # the min-max scale and offset are unknown (borders are clamped): fit them, then the fit must be exact
    scale, offset = np.polyfit(inside, back, 1)
    np.testing.assert_allclose(scale * inside + offset, back, atol=1e-5)


def test_slice_and_volume_normalisation_differ_as_documented():
    shape, plane = (6, 8, 9), 0
    indices = range(2, 4)
    cams = np.zeros((2, 8, 9), np.float32)
    cams[0, 2, 3], cams[1, 5, 5] = 10.0, 1.0  # slice 1 is ten times weaker
    by_volume = cam_volume(cams, plane, indices, shape, "volume")
    by_slice = cam_volume(cams, plane, indices, shape, "slice")
    assert by_volume[2].max() == pytest.approx(1.0) and by_volume[3].max() == pytest.approx(0.1)
    assert by_slice[2].max() == pytest.approx(1.0) and by_slice[3].max() == pytest.approx(1.0)
    # constant maps give zeros, not NaN
    for norm in ("volume", "slice"):
        flat = cam_volume(np.full((2, 8, 9), 3.0), plane, indices, shape, norm)
        assert np.isfinite(flat).all() and (flat == 0).all()
    mixed = cam_volume(np.stack([np.full((8, 9), 3.0), cams[1]]), plane, indices, shape, "slice")
    assert (mixed[2] == 0).all() and mixed[3].max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="normalization"):
        cam_volume(cams, plane, indices, shape, "global")
    with pytest.raises(ValueError, match=r"The CAM stack \(2, 1, 8, 9\) has 2 slices but 3 slice indices"):
        cam_volume(cams, plane, range(3), shape)


def test_combine_planes_and_attention_weighting():
    a = np.zeros((2, 2, 2), np.float32)
    a[0, 0, 0], a[1, 1, 1], a[0, 1, 0] = 1.0, 0.5, 0.2
    b = np.full((2, 2, 2), 2.0, np.float32)
    b[1, 1, 1] = 4.0
    out = combine_planes([a, b])  # product: 2, 2, 0.4 -> /2
    assert out[0, 0, 0] == pytest.approx(1.0) and out[1, 1, 1] == pytest.approx(1.0)
    assert out[0, 1, 0] == pytest.approx(0.2) and out[1, 0, 0] == 0.0
    assert (combine_planes([b * 0 + 1]) == 0).all()
    with pytest.raises(ValueError, match="same shape"):
        combine_planes([a, np.zeros((2, 2, 3))])

    shape, plane, indices = (5, 6, 7), 2, range(2, 5)
    rng = np.random.default_rng(2)
    cams = rng.random((3, 1, 3, 3)).astype(np.float32)
    att = np.array([0.2, 0.5, 0.3], np.float32)
    weighted = attention_weighted_cam(cams, att, plane, indices, shape, "slice")
    cam = cam_volume(cams, plane, indices, shape, "slice")
    for s, k in enumerate(indices):
        np.testing.assert_allclose(weighted[..., k], att[s] * cam[..., k], rtol=1e-6)
        assert weighted[..., k].max() == pytest.approx(att[s])


def test_split_cams():
    cams = torch.arange(12.0).reshape(12, 1, 1, 1)
    parts = split_cams(cams, [3, 4, 5])
    assert [p.shape[0] for p in parts] == [3, 4, 5] and torch.equal(parts[2][:, 0, 0, 0], torch.arange(7.0, 12.0))
    assert [p.shape[0] for p in split_cams(cams.numpy(), [12])] == [12]
    with pytest.raises(ValueError, match=r"sum 11.*12"):
        split_cams(cams, [3, 4, 4])


def test_minmax_constant_and_nan():
    assert (minmax(np.full((3, 3), 7.0)) == 0).all()
    np.testing.assert_allclose(minmax(torch.tensor([1.0, 2.0, 3.0])), [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        minmax(np.array([0.0, np.nan]))


def test_maps_written_to_nifti_keep_the_affine(tmp_path):
    shape = (9, 10, 11)
    affine = np.array([[-1.5, 0.1, 0.0, 90.0], [0.0, 1.5, 0.2, -126.0], [0.0, 0.0, 2.0, -72.0], [0, 0, 0, 1]])
    indices = {p: central_slice_indices(shape[p], 4) for p in range(3)}
    vol = attention_volume({p: np.arange(1.0, 5.0) for p in range(3)}, indices, shape, normalize=True)
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "attention.nii.gz")
    back = nib.load(tmp_path / "attention.nii.gz")
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(back.dataobj), vol)


def test_tri_planar_gradcam_maps_to_the_box():
    """MONAI GradCAM on a tiny tri-planar net -> split -> per-plane volumes -> one map, zero outside the box."""
    from monai.visualize import GradCAM

    from axial_monai.networks import TriPlanarAxialNet

    torch.manual_seed(0)
    shape = (21, 24, 19)
    net = TriPlanarAxialNet(num_slices=(3, 4, 5), backbone="resnet18", image_size=64, pretrained="none").eval()
    x = torch.rand(1, 1, *shape)
    raw = GradCAM(nn_module=net, target_layers=net.cam_layer).compute_map(x, class_idx=0, layer_idx=-1)
    indices = net.slice_indices(shape)
    per_plane = split_cams(raw, [len(indices[p]) for p in range(3)])
    vols = [cam_volume(c, p, indices[p], shape) for p, c in enumerate(per_plane)]
    out = combine_planes(vols)
    assert out.shape == shape and np.isfinite(out).all()
    box = np.zeros(shape, bool)
    box[np.ix_(*(list(indices[p]) for p in range(3)))] = True
    assert (out[~box] == 0).all()


def test_slice_positions_cover_the_whole_axis_and_nothing_past_it():
    """Index 0 and index ``depth - 1`` are valid slabs; ``depth`` is refused; an axis of one voxel is a volume."""
    whole = place_profile(np.arange(1.0, 5.0), 0, range(4), (4, 2, 3))  # every slab 0..3 of a 4-voxel axis
    np.testing.assert_array_equal(whole, np.broadcast_to(np.arange(1.0, 5.0)[:, None, None], (4, 2, 3)))
    assert whole.dtype == np.float32
    thin = place_profile(np.array([0.25]), 0, [0], (1, 3, 4))  # a single-slice volume
    assert thin.shape == (1, 3, 4) and (thin == np.float32(0.25)).all()
    with pytest.raises(ValueError, match=r"7\.\.10 .* axis of 10 slices"):
        place_profile(np.ones(4), 1, range(7, 11), (10, 10, 10))  # one past the end
    # no slices at all: a zero map, not an indexing error
    empty = place_profile(np.zeros(0), 2, [], (3, 4, 5))
    assert empty.shape == (3, 4, 5) and empty.dtype == np.float32 and not empty.any()


@pytest.mark.parametrize("bad", [(10, 10), (10, 0, 10), (10, 10, 10, 1)])
def test_spatial_shape_must_be_three_positive_sizes(bad):
    with pytest.raises(ValueError, match=r"three positive sizes"):
        place_profile(np.ones(2), 0, [3, 4], bad)


@pytest.mark.parametrize("profile", [np.ones((2, 4)), np.ones((1, 1, 4)), np.ones((4, 1))])
def test_a_profile_is_one_vector_or_a_batch_of_one(profile):
    """Two scans' profiles (or a profile with extra axes) are refused, not flattened into one long profile."""
    with pytest.raises(ValueError, match=r"must have shape \(N,\) or \(1, N\)"):
        place_profile(profile, 0, range(3, 7), (10, 10, 10))


def test_integer_cams_are_resized_as_floats_and_placed_in_float32():
    """A (2, 2) CAM of columns 0 and 4, resized bilinearly (align_corners=False) to (4, 4), gives 0, 1, 3, 4."""
    cams = np.zeros((2, 2, 2), np.int64)
    cams[0, :, 1] = 4  # slice 0: left column 0, right column 4; slice 1: all zero
    vol = cam_volume(cams, 0, [0, 2], (3, 4, 4))  # slices at x = 0 (the first slab) and x = 2
    assert vol.dtype == np.float32 and vol.shape == (3, 4, 4)
    # output pixel centres map to input columns -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
    np.testing.assert_array_equal(vol[0], np.tile(np.array([0.0, 0.25, 0.75, 1.0], np.float32), (4, 1)))
    assert not vol[1].any() and not vol[2].any()
    same_size = cam_volume(np.ones((1, 1, 3, 4), np.float64) * np.arange(4.0), 2, [1], (3, 4, 2), "slice")
    assert same_size.dtype == np.float32
    np.testing.assert_array_equal(same_size[:, :, 1], np.tile(np.array([0, 1 / 3, 2 / 3, 1], np.float32), (3, 1)))
    assert not same_size[:, :, 0].any()


def test_cams_with_channels_are_refused():
    with pytest.raises(ValueError, match=r"cams must have shape \(N, h, w\) or \(N, 1, h, w\), not \(2, 2, 3, 3\)"):
        cam_volume(np.ones((2, 2, 3, 3)), 0, [1, 2], (4, 5, 5))


def test_attention_weighted_cam_normalises_over_the_volume_by_default():
    shape, plane, indices = (6, 8, 9), 0, range(2, 4)
    cams = np.zeros((2, 8, 9), np.float32)
    cams[0, 2, 3], cams[1, 5, 5] = 10.0, 1.0  # slice 1 is ten times weaker
    weighted = attention_weighted_cam(cams, np.array([0.5, 0.8]), plane, indices, shape)
    assert weighted.dtype == np.float32
    assert weighted[2, 2, 3] == np.float32(0.5) and weighted[3, 5, 5] == np.float32(0.1) * np.float32(0.8)
    assert np.count_nonzero(weighted) == 2


def test_split_cams_allows_an_empty_plane_and_refuses_a_negative_count():
    cams = torch.arange(6.0).reshape(6, 1, 1, 1)
    parts = split_cams(cams, [0, 2, 4])
    assert [tuple(p.shape) for p in parts] == [(0, 1, 1, 1), (2, 1, 1, 1), (4, 1, 1, 1)]
    assert parts[1].ravel().tolist() == [0.0, 1.0] and parts[2].ravel().tolist() == [2.0, 3.0, 4.0, 5.0]
    with pytest.raises(ValueError, match=r"num_slices \[-1, 3, 4\] \(sum 6\)"):
        split_cams(cams, [-1, 3, 4])


def test_minmax_works_in_float64_and_returns_float32():
    # half precision input (e.g. AMP CAMs): 1/3 in float16 arithmetic would be 0.33325
    half = minmax(np.array([0.0, 1.0, 3.0], np.float16))
    assert half.dtype == np.float32
    np.testing.assert_array_equal(half, np.array([0.0, 1 / 3, 1.0], np.float32))
    # a float64 input is not rounded to float32 first (that would make it constant)
    fine = minmax(np.array([1.0, 1.0 + 2.0**-30, 1.0 + 2.0**-29]))
    np.testing.assert_array_equal(fine, np.array([0.0, 0.5, 1.0], np.float32))
    assert fine.dtype == np.float32
    for constant in (np.array([5.0]), np.full((2, 3), 7.0)):  # one value, many equal values: zeros
        out = minmax(constant)
        assert out.dtype == np.float32 and out.shape == constant.shape and not out.any()
    empty = minmax(np.zeros((0, 3)))
    assert empty.shape == (0, 3) and empty.dtype == np.float32


def test_cohort_map_accepts_a_vector_a_batch_list_and_half_precision():
    shape, indices = (6, 5, 7), {2: [2, 3, 4]}
    one_scan = cohort_attention_map({2: np.array([0.2, 0.6, 0.4])}, indices, shape)  # one (N,) vector = one scan
    assert one_scan.dtype == np.float32
    np.testing.assert_allclose(one_scan[:, :, 2:5], np.broadcast_to([0.0, 1.0, 0.5], (6, 5, 3)), atol=1e-6)
    assert not one_scan[:, :, [0, 1, 5, 6]].any()
    # a list of (1, N) outputs, as ``net.plane_attention`` returns them: mean [0.3, 0.7, 0.3]
    batches = [torch.tensor([[0.2, 0.6, 0.4]]), torch.tensor([[0.4, 0.8, 0.2]])]
    np.testing.assert_allclose(cohort_attention_map({2: batches}, indices, shape)[0, 0, 2:5], [0, 1, 0], atol=1e-6)
    # float16 scans are averaged in float64: mean [0, 1.5, 1024.5] (1024.5 is not a float16)
    scans = np.array([[0.0, 1.0, 1024.0], [0.0, 2.0, 1025.0]], np.float16)
    expected = np.array([0.0, 1.5 / 1024.5, 1.0], np.float32)
    for given in (scans, list(scans)):
        np.testing.assert_array_equal(cohort_attention_map({2: given}, indices, shape)[3, 1, 2:5], expected)


@pytest.mark.parametrize("profile", [[], np.zeros((0, 3)), np.ones((2, 3, 1))])
def test_cohort_map_refuses_profiles_without_scans_or_of_the_wrong_rank(profile):
    with pytest.raises(ValueError, match=r"profiles\[1\] must have shape \(S, N\) with at least one scan"):
        cohort_attention_map({1: profile}, {1: [1, 2, 3]}, (4, 5, 6))


def test_mean_map_accumulates_in_float64_without_touching_its_inputs(tmp_path):
    big = np.full((2, 2, 2), 2.0**24 + 1)  # float64; 2**24 + 1 is not a float32
    minus = torch.full((2, 2, 2), -(2.0**24), dtype=torch.float64)
    kept = big.copy()
    mean = mean_map([big, minus])
    assert mean.dtype == np.float32
    np.testing.assert_array_equal(mean, np.float32(0.5))  # float32 accumulation would give 0
    np.testing.assert_array_equal(big, kept)  # the running sum is a copy, not the caller's first map
    # a scaled integer NIfTI on disk is read with its scaling: raw * 0.5 + 1
    raw = np.arange(8, dtype=np.int16).reshape(2, 2, 2)
    image = nib.Nifti1Image(raw, np.eye(4))
    image.header.set_slope_inter(0.5, 1.0)
    nib.save(image, tmp_path / "scaled.nii")
    np.testing.assert_array_equal(mean_map([tmp_path / "scaled.nii", np.zeros((2, 2, 2))]), (raw * 0.5 + 1.0) / 2)


def test_explainable_mri_is_float32_template_plus_scaled_map():
    template = np.array([0.0, 2.0, 4.0]).reshape(1, 1, 3)  # float64 anatomy -> [0, 0.5, 1]
    cmap = np.array([0.1, 0.0, 0.0]).reshape(1, 1, 3)
    mri = explainable_mri(template, cmap)
    assert mri.dtype == np.float32
    np.testing.assert_allclose(mri.ravel(), [1.0, 0.5, 1.0], rtol=1e-6)


def test_bfloat16_maps_are_accepted():
    """A map computed under bf16 autocast (numpy has no bfloat16): rescaled like its float32 copy."""
    values = torch.tensor([[0.0, 2.0], [4.0, 8.0]], dtype=torch.bfloat16)
    np.testing.assert_array_equal(minmax(values), [[0.0, 0.25], [0.5, 1.0]])
    assert minmax(values).dtype == np.float32
