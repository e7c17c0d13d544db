"""Attribution methods on the input volume (captum) and the per-scan explanation, on a network with a known answer.

``BlockNet`` reads 6 central coronal slices of a 16 x 12 x 16 volume (no resizing: slices are 16 x 16, the backbone
input size) and its class-1 logit depends only on the voxels of one block inside them: ``sum((w * x)^2)`` over
the block. Every method must put its maximum inside that block, and nothing outside the voxels the network reads.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage
from torch import nn

from axial_monai.errors import SettingsError
from axial_monai.explain import (
    METHODS,
    VOXEL_METHODS,
    ExplainSettings,
    ExplanationWriter,
    antialias,
    explain_scan,
    gradient_map,
    integrated_gradients_map,
    make_baseline,
    map_spearman,
    mean_scan,
    normalized_antialias,
    occlusion_map,
    pointing_game,
    read_mask,
    read_weight,
    sampling_sigma,
    smoothgrad_map,
)
from axial_monai.handlers import InterpretabilityHandler
from axial_monai.networks import AxialNet, TriPlanarAxialNet
from axial_monai.networks.slicing import SliceStack

SHAPE = (16, 12, 16)
PLANE = 1
NUM_SLICES = 6  # central coronal slices 3..8
BLOCK = (slice(5, 9), slice(5, 7), slice(9, 13))  # x, y (inside the slab), z
AFFINE = np.array([[2.0, 0, 0, -16], [0, 2.0, 0, -12], [0, 0, 2.0, -16], [0, 0, 0, 1]])
#: a stand-in for a run's mean control scan, the default Integrated Gradients baseline: an empty volume
CONTROL_MEAN = np.zeros(SHAPE, np.float32)


class _InPlaneMask(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class BlockNet(nn.Module):
    """AXIAL-shaped test network: ``plane_attention``, ``slice_indices``, ``cam_layer``; logit 1 sees only BLOCK."""

    def __init__(self) -> None:
        super().__init__()
        self.stack = SliceStack(PLANE, NUM_SLICES, image_size=SHAPE[0], normalize="none")
        inplane = torch.zeros(SHAPE[0], SHAPE[2])
        inplane[BLOCK[0], BLOCK[2]] = 1
        conv = nn.Conv2d(3, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[1.0, 0.5, 0.5], [0.2, 0.2, 0.2]]).view(2, 3, 1, 1))
        self.features = nn.Sequential(conv, _InPlaneMask(inplane))  # the CAM layer: zero outside the block
        slabs = torch.zeros(NUM_SLICES)
        indices = self.stack.indices(SHAPE)
        slabs[[i - indices.start for i in range(BLOCK[1].start, BLOCK[1].stop)]] = 1
        self.register_buffer("slabs", slabs)

    @property
    def cam_layer(self) -> str:
        return "features"

    def slice_indices(self, shape):
        return {PLANE: self.stack.indices(shape)}

    def plane_attention(self, x):
        slices = self.stack(x)  # (B, N, 3, X, Z)
        b, n = slices.shape[:2]
        feats = self.features(slices.flatten(0, 1))  # (B*N, 2, X, Z): zero outside the block
        feats = feats.view(b, n, 2, *feats.shape[-2:]) * self.slabs.view(1, n, 1, 1, 1)
        energy = (feats**2).sum(dim=(1, 3, 4))  # (B, 2)
        logits = torch.stack([torch.full_like(energy[:, 0], 1.0), energy.sum(dim=1)], dim=1)
        attention = torch.softmax(4 * self.slabs, dim=0).expand(b, -1)
        return logits, {PLANE: attention}

    def forward(self, x):
        return self.plane_attention(x)[0]


def _volume(seed: int = 0) -> torch.Tensor:
    """A positive 'brain' filling the grid but for a zero border, shape (1, 1, X, Y, Z)."""
    rng = np.random.default_rng(seed)
    vol = np.zeros(SHAPE, np.float32)
    vol[1:-1, 1:-1, 1:-1] = rng.uniform(0.2, 1.0, size=tuple(s - 2 for s in SHAPE))
    return torch.from_numpy(vol)[None, None]


def _block_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[BLOCK] = True
    return mask


RAW = {
    "gradient": lambda net, x: gradient_map(net, x, 1),
    "smoothgrad": lambda net, x: smoothgrad_map(net, x, 1, samples=6, noise=0.1, batch_size=4),
    "integrated_gradients": lambda net, x: integrated_gradients_map(net, x, 1, steps=6, batch_size=4),
    "occlusion": lambda net, x: occlusion_map(net, x, 1, window=2, stride=1, batch_size=16),
}


@pytest.mark.parametrize("method", VOXEL_METHODS)
def test_attribution_peaks_in_the_block_and_is_zero_where_nothing_is_read(method):
    net = BlockNet().eval()
    x = _volume()
    torch.manual_seed(0)
    raw = RAW[method](net, x)
    assert raw.shape == SHAPE and raw.dtype == np.float32 and (raw >= 0).all()
    block = _block_mask()
    assert pointing_game(raw, block) == 1.0
    peak = np.unravel_index(np.argmax(raw), SHAPE)
    assert block[peak]
    if method == "occlusion":
        # a window touching the block changes the logit: spill-over of at most one window (2 voxels) around it
        near = np.zeros(SHAPE, bool)
        near[4:10, 4:8, 8:14] = True
        assert np.all(raw[~near] == 0)
    else:
        # exactly zero wherever the logit does not depend on the voxel: outside the block, a fortiori outside the slab
        assert np.all(raw[~block] == 0)
        assert raw[block].min() > 0


def test_read_mask_is_the_union_of_the_extracted_slabs():
    mask = read_mask(BlockNet(), SHAPE)
    expected = np.zeros(SHAPE, bool)
    expected[:, 3:9, :] = True
    np.testing.assert_array_equal(mask, expected)
    tri = read_mask(_TriPlanar(), (10, 12, 14))
    assert tri[0, 0, 0] == False and tri[5, 0, 0] and tri[0, 6, 0] and tri[0, 0, 7]  # noqa: E712


class _TriPlanar(nn.Module):
    def slice_indices(self, shape):
        return {0: range(4, 6), 1: range(5, 7), 2: range(6, 8)}


@pytest.mark.parametrize("method", METHODS)
def test_explain_scan_keeps_shape_and_affine_and_stays_in_the_support(method, tmp_path):
    net = BlockNet().eval()
    image = MetaTensor(_volume(1)[0], affine=torch.as_tensor(AFFINE), meta={"filename_or_obj": "/d/sub-01_T1w.nii.gz"})
    settings = ExplainSettings(
        methods=[method],
        occlusion_window_mm=4.0,
        occlusion_stride_mm=2.0,
        smoothgrad_samples=4,
        control_mean=CONTROL_MEAN,
    )
    result = explain_scan(net, image, settings, label=1)
    assert result.scan_id == "sub-01_T1w"
    assert list(result.maps) == [method]
    volume = result.maps[method]
    assert volume.shape == SHAPE and volume.dtype == np.float32
    assert volume.max() == pytest.approx(1.0) and volume.min() == 0
    np.testing.assert_array_equal(result.affine, AFFINE)
    assert np.all(volume[~result.support] == 0)
    assert not result.support[:, :3, :].any() and not result.support[:, 9:, :].any()
    if method != "attention":  # the attention of one plane is constant over a slice: it cannot point in-plane
        assert pointing_game(volume, _block_mask()) == 1.0
    else:
        slab = np.unravel_index(np.argmax(volume), SHAPE)[1]
        assert BLOCK[1].start <= slab < BLOCK[1].stop
    ExplanationWriter(tmp_path, ["CN", "AD"], atlas=None, plots=False).write_scan(result)
    written = nib.load(tmp_path / "sub-01_T1w" / f"{method}.nii.gz")
    np.testing.assert_array_equal(written.affine, AFFINE)
    np.testing.assert_allclose(written.get_fdata(), volume, atol=1e-6)


def test_smoothgrad_is_seeded_and_batching_does_not_change_the_map():
    net = BlockNet().eval()
    x = _volume()
    maps = []
    for batch in (1, 3, 6):
        torch.manual_seed(5)
        maps.append(smoothgrad_map(net, x, 1, samples=6, noise=0.2, batch_size=batch))
    np.testing.assert_allclose(maps[0], maps[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps[0], maps[2], rtol=1e-5, atol=1e-6)
    image = MetaTensor(_volume()[0], affine=torch.as_tensor(AFFINE))
    settings = ExplainSettings(methods=["smoothgrad"], smoothgrad_samples=4, smoothgrad_noise=0.2, seed=3)
    first, second = (explain_scan(net, image, settings).maps["smoothgrad"] for _ in range(2))
    np.testing.assert_array_equal(first, second)
    other = explain_scan(net, image, ExplainSettings(methods=["smoothgrad"], smoothgrad_noise=0.2, seed=4))
    assert not np.array_equal(first, other.maps["smoothgrad"])


def test_integrated_gradients_batching_and_baselines(tmp_path):
    net = BlockNet().eval()
    x = _volume()
    one = integrated_gradients_map(net, x, 1, steps=6, batch_size=1)
    six = integrated_gradients_map(net, x, 1, steps=6, batch_size=6)
    np.testing.assert_allclose(one, six, rtol=1e-4, atol=1e-6)
    # completeness: for a baseline of zeros the attributions add up to logit(x) - logit(0) (signed; here all >= 0)
    with torch.no_grad():
        delta = float(net(x)[0, 1] - net(torch.zeros_like(x))[0, 1])
    assert one.sum() == pytest.approx(delta, rel=0.02)
    # baselines: the input itself gives zero attributions; a NIfTI path on the grid is read
    path = tmp_path / "baseline.nii.gz"
    nib.save(nib.Nifti1Image(x[0, 0].numpy(), AFFINE), str(path))
    assert integrated_gradients_map(net, x, 1, steps=4, baseline=str(path)).max() == 0
    blurred = make_baseline(x, "blur")
    assert blurred.shape == x.shape and 0 < float(blurred.std()) < float(x.std())
    with pytest.raises(ValueError, match="shape"):
        make_baseline(x, np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="zeros"):
        make_baseline(x, "gray")


def test_positive_integrated_gradients_keeps_only_the_evidence_for_the_class():
    net = BlockNet().eval()
    x = _volume()
    block = _block_mask()
    # a baseline brighter than the scan in the block's first x rows and darker in the others: the class-1 logit
    # grows with intensity there, so only the darker-baseline voxels moved it towards the class
    brighter = np.zeros(SHAPE, bool)
    brighter[BLOCK[0].start : BLOCK[0].start + 2] = True
    reference = np.where(brighter, x[0, 0].numpy() + 0.5, x[0, 0].numpy() * 0.5).astype(np.float32)
    positive = integrated_gradients_map(net, x, 1, steps=6, baseline=reference, sign="positive")
    magnitude = integrated_gradients_map(net, x, 1, steps=6, baseline=reference)
    assert positive.shape == SHAPE and (positive >= 0).all()
    assert np.all(positive[brighter] == 0) and magnitude[brighter & block].min() > 0
    np.testing.assert_array_equal(positive[~brighter], magnitude[~brighter])  # same attributions where positive
    assert positive[block & ~brighter].min() > 0 and np.all(positive[~block] == 0)
    # completeness of the signed attributions: positive part - negative part = logit(x) - logit(baseline)
    with torch.no_grad():
        delta = float(net(x)[0, 1] - net(torch.from_numpy(reference)[None, None])[0, 1])
    assert positive.sum() - magnitude[brighter].sum() == pytest.approx(delta, rel=0.02)
    with pytest.raises(ValueError, match="sign must be one of"):
        integrated_gradients_map(net, x, 1, sign="negative")
    # the setting reaches explain_scan
    image = MetaTensor(x[0], affine=torch.as_tensor(AFFINE))
    settings = {"methods": ["integrated_gradients"], "ig_baseline": reference, "antialias": False}
    scan = explain_scan(net, image, ExplainSettings(**settings, ig_sign="positive"))
    assert np.all(scan.maps["integrated_gradients"][brighter] == 0)
    magnitude_map = explain_scan(net, image, ExplainSettings(**settings, ig_sign="absolute")).maps[
        "integrated_gradients"
    ]
    assert magnitude_map[brighter & block].min() > 0


def test_mean_scan_is_the_mean_of_the_loaded_scans_and_refuses_another_grid(tmp_path):
    from monai.transforms import LoadImaged

    load = LoadImaged(keys="image", ensure_channel_first=True, image_only=True)
    rng = np.random.default_rng(0)
    volumes = [rng.uniform(0, 1, SHAPE).astype(np.float32) for _ in range(3)]
    paths = []
    for n, volume in enumerate(volumes):
        paths.append(tmp_path / f"sub-{n}.nii.gz")
        nib.save(nib.Nifti1Image(volume, AFFINE), str(paths[-1]))
    out = mean_scan(paths, load, tmp_path / "baseline" / "control_mean.nii.gz")
    saved = nib.load(out)
    np.testing.assert_allclose(saved.get_fdata(), np.mean(volumes, axis=0), atol=1e-6)
    np.testing.assert_allclose(saved.affine, AFFINE)
    assert sorted(p.name for p in (tmp_path / "baseline").iterdir()) == ["control_mean.nii.gz"]  # no temp file left
    # it is a valid Integrated Gradients baseline on the grid
    x = torch.from_numpy(volumes[0])[None, None]
    assert integrated_gradients_map(BlockNet().eval(), x, 1, steps=4, baseline=out).max() > 0
    odd = tmp_path / "sub-odd.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), AFFINE), str(odd))
    with pytest.raises(ValueError, match="sub-odd.nii.gz: grid"):
        mean_scan([*paths, odd], load, tmp_path / "bad.nii.gz")
    assert not (tmp_path / "bad.nii.gz").exists()
    with pytest.raises(ValueError, match="No scan to average"):
        mean_scan([], load, tmp_path / "none.nii.gz")


def test_occlusion_only_tries_windows_in_the_support():
    net = BlockNet().eval()
    x = _volume()
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    support = read_mask(net, SHAPE)
    occlusion_map(net, x, 1, window=2, stride=2, batch_size=1, support=support)
    with_support = len(calls)
    calls.clear()
    occlusion_map(net, x, 1, window=2, stride=2, batch_size=1)
    # the slab is 6 of 12 coronal slices: half the windows, plus the unoccluded reference pass
    assert with_support - 1 == (len(calls) - 1) // 2
    with pytest.raises(ValueError, match="stride"):
        occlusion_map(net, x, 1, window=2, stride=3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"methods": []}, "at least one"),
        ({"methods": ["gradcam", "lime"]}, r"Unknown explanation method\(s\) \['lime'\]"),
        ({"smoothgrad_samples": 0}, "smoothgrad_samples must be a positive integer"),
        ({"occlusion_window_mm": -1.0}, "occlusion_window_mm must be a positive"),
        ({"occlusion_window_mm": 4.0, "occlusion_stride_mm": 8.0}, "must not exceed"),
        ({"ig_baseline": "grey"}, "ig_baseline must be one of"),
        ({"ig_sign": "negative"}, "ig_sign must be one of"),
        # the default Integrated Gradients (and a "controls" occlusion) without the run's mean control scan: a model
        # trained before axial-monai 0.2.5; the message says how to add it and what else to choose
        ({}, r"ig_baseline='controls' \(the default\) is the mean control scan .*attach_control_mean"),
        ({"methods": ["occlusion"], "occlusion_baseline": "controls"}, "occlusion_baseline='controls'"),
        ({"methods": ["integrated_gradients"], "control_mean": "/no/such/mean.nii.gz"}, "is not a file"),
        ({"cam_normalization": "global"}, "cam_normalization"),
        ({"antialias": "yes"}, "antialias must be true, false or 'normalized'"),
    ],
)
def test_bad_settings_are_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):  # explain.json builds them before the handler sees any scan
        ExplainSettings(**kwargs)


def test_the_template_stands_in_for_a_missing_mean_control_scan_and_the_record_says_so(tmp_path):
    """A model without a mean control scan (an exported bundle, by default) explains from its template's brain; the
    maps are those of Integrated Gradients from that volume, and explanation.json says which baseline it was."""
    net = BlockNet().eval()
    image = MetaTensor(_volume(1)[0], affine=torch.as_tensor(AFFINE), meta={"filename_or_obj": "/d/s01.nii"})
    template = CONTROL_MEAN * 0.5
    fallback = ExplainSettings(methods=["integrated_gradients"], template_baseline=template)
    assert fallback.baseline("ig_baseline") is template
    explicit = ExplainSettings(methods=["integrated_gradients"], control_mean=template)
    result = explain_scan(net, image, fallback, label=1)
    np.testing.assert_array_equal(
        result.maps["integrated_gradients"], explain_scan(net, image, explicit).maps["integrated_gradients"]
    )
    assert (
        "template" in result.baselines["ig_baseline"]
        and "controls" in explain_scan(net, image, explicit).baselines["ig_baseline"]
    )
    # the mean control scan wins when both are there
    both = ExplainSettings(methods=["integrated_gradients"], control_mean=CONTROL_MEAN, template_baseline=template)
    assert both.baseline("ig_baseline") is CONTROL_MEAN
    handler = InterpretabilityHandler(str(tmp_path), net, ["CN", "AD"], settings=fallback, atlas=None, plots=False)
    handler.explain(image, 1)
    record = json.loads((tmp_path / "s01" / "explanation.json").read_text())
    assert record["baselines"]["ig_baseline"].startswith("template: the model carries no mean control scan")


def test_the_handler_refuses_anything_but_explain_settings(tmp_path):
    with pytest.raises(SettingsError, match="settings must be an ExplainSettings"):
        InterpretabilityHandler(str(tmp_path), BlockNet(), ["CN", "AD"], settings={"methods": ["gradient"]})


def test_real_network_gradient_reaches_only_the_slices_it_reads():
    """AxialNet (coronal, 4 slices, 32 px: downsampled by 2 without antialiasing): zero outside its slab."""
    torch.manual_seed(0)
    net = AxialNet(backbone="resnet18", num_slices=4, image_size=32, freeze=0.0).eval()
    x = torch.rand(1, 1, 64, 20, 64)
    grad = gradient_map(net, x, 1)
    read = read_mask(net, x.shape[2:])
    assert read.sum() == 64 * 4 * 64
    assert np.all(grad[~read] == 0) and grad[read].max() > 0


def test_antialias_removes_the_resampling_pattern_that_any_weights_share():
    """Two random networks that shrink 40-voxel slices to 16 px: their raw gradient maps agree through the resize
    weights alone; smoothing by half the sampling step (1.25 voxels) removes most of that agreement."""
    shape = (40, 12, 40)
    volume = ndimage.gaussian_filter(np.random.default_rng(0).random(shape), 3).astype(np.float32)
    x = torch.from_numpy((volume - volume.min()) / np.ptp(volume))[None, None]
    maps = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = AxialNet(backbone="resnet18", num_slices=4, image_size=16, freeze=0.0).eval()
        maps.append(gradient_map(net, x, 1))
    sigma = sampling_sigma(net, shape)
    assert sigma == (1.25, 0.0, 1.25)  # in-plane axes only; the slice axis is not resampled
    read = read_mask(net, shape)
    raw = map_spearman(maps[0], maps[1], read)
    smoothed = map_spearman(antialias(maps[0], sigma), antialias(maps[1], sigma), read)
    assert raw > 0.7 and smoothed < raw - 0.2, (raw, smoothed)
    assert np.all(antialias(maps[0], sigma)[~read] == 0)  # in-plane smoothing stays in the slabs
    # normalised: divides the read weight out, at half the smoothing
    weight, half = read_weight(net, shape), tuple(s / 2 for s in sigma)
    normalized = [normalized_antialias(m, weight, half) for m in maps]
    divided = map_spearman(*normalized, read)
    assert divided < raw - 0.2, (raw, divided)
    assert np.all(normalized[0][~read] == 0)
    # no downsampling, nothing to smooth: BlockNet reads 16 x 16 slices at 16 px; upsampled axes neither
    assert sampling_sigma(BlockNet(), SHAPE) == (0.0, 0.0, 0.0)
    assert sampling_sigma(TriPlanarAxialNet(num_slices=4, image_size=16), shape) == (1.25, 0.0, 1.25)


class _SumOfPixels(nn.Module):
    """Logit 1 = sum of every backbone input pixel: each pixel's gradient is the same, so the voxel gradient is the
    read weight times a constant (the ImageNet 1/std of the three channels)."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.stack = SliceStack(1, 4, image_size=image_size)

    def forward(self, x):
        total = self.stack(x).sum(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(total), total], dim=1)


def test_read_weight_counts_the_backbone_pixels_that_read_each_voxel():
    # no resize (BlockNet: 16 x 16 slices at 16 px): every voxel of the slab is read by exactly one pixel
    weight = read_weight(BlockNet(), SHAPE)
    np.testing.assert_allclose(weight, read_mask(BlockNet(), SHAPE).astype(float), atol=1e-6)
    # 40 x 40 slices at 16 px: 4 slices x 256 pixels, each of total weight 1; 0 outside the slab; the same
    # in-plane pattern in every slice; and some voxels skipped by the 2.5x bilinear downsampling
    shape = (40, 12, 40)
    net = _SumOfPixels(16)
    weight = read_weight(net, shape)
    slab = np.zeros(shape, bool)
    slab[:, 4:8] = True  # the 4 central coronal slices of 12
    assert weight.sum() == pytest.approx(4 * 16 * 16) and np.all(weight[~slab] == 0)
    np.testing.assert_allclose(weight[:, 4], weight[:, 7])
    assert (weight[:, 4] == 0).any() and weight.max() > 2 * weight[slab].mean()
    tri = TriPlanarAxialNet(num_slices=4, image_size=16)
    assert read_weight(tri, shape).sum() == pytest.approx(3 * 4 * 16 * 16)


def test_normalized_antialias_divides_the_resampling_pattern_out():
    """A logit that weighs every pixel alike: the true relevance is uniform over the voxels read. The raw gradient is
    the read-weight pattern; the Gaussian leaves ripples of it; the normalised map is flat."""
    shape = (40, 12, 40)
    net = _SumOfPixels(16).eval()
    x = torch.rand(1, 1, *shape)
    raw = gradient_map(net, x, 1)
    sigma = (1.25, 0.0, 1.25)
    inner = np.zeros(shape, bool)
    inner[4:-4, 4:8, 4:-4] = True  # the slab (slices 4-7), away from the in-plane border

    def spread(volume):
        return float(volume[inner].std() / volume[inner].mean())

    gaussian = antialias(raw, sigma)
    normalized = normalized_antialias(raw, read_weight(net, shape), (0.625, 0.0, 0.625))
    assert spread(raw) > 0.5 and spread(gaussian) > 0.01
    assert spread(normalized) < 1e-4, spread(normalized)
    assert np.all(normalized[:, :4] == 0) and np.all(normalized[:, 8:] == 0)
    # no smoothing asked for: the map is returned unchanged
    np.testing.assert_array_equal(normalized_antialias(raw, read_weight(net, shape), (0, 0, 0)), raw)


def test_explain_scan_and_the_handler_accept_normalized_antialiasing(tmp_path):
    net = BlockNet().eval()
    image = MetaTensor(_volume(1)[0], affine=torch.as_tensor(AFFINE))
    settings = ExplainSettings(methods=["gradient", "smoothgrad"], antialias="normalized", smoothgrad_samples=4)
    result = explain_scan(net, image, settings, label=1)
    for volume in result.maps.values():  # BlockNet does not resample: nothing to divide out, the peak stays
        assert pointing_game(volume, _block_mask()) == 1.0 and np.all(volume[~result.support] == 0)
    assert ExplainSettings(control_mean=CONTROL_MEAN).antialias == "normalized"


def test_explain_scan_applies_the_chosen_antialiasing_to_a_resampling_network():
    """40-voxel slices read at 16 px: the default divides the read weight out of the raw map, True blurs it."""
    shape = (40, 12, 40)
    torch.manual_seed(0)
    net = AxialNet(backbone="resnet18", num_slices=4, image_size=16, freeze=0.0).eval()
    volume = ndimage.gaussian_filter(np.random.default_rng(0).random(shape), 3).astype(np.float32)
    image = MetaTensor(torch.from_numpy(volume)[None] + 0.1, affine=torch.eye(4, dtype=torch.float64))

    def gradient(antialias=None):
        kwargs = {} if antialias is None else {"antialias": antialias}
        return explain_scan(net, image, ExplainSettings(methods=["gradient"], **kwargs), label=1)

    raw = gradient(False)
    default, normalized, gaussian = gradient(), gradient("normalized"), gradient(True)
    np.testing.assert_array_equal(default.maps["gradient"], normalized.maps["gradient"])
    sigma = sampling_sigma(net, shape)
    weight, half = read_weight(net, shape), tuple(s / 2 for s in sigma)
    expected = {
        "normalized": normalized_antialias(raw.maps["gradient"], weight, half),
        "gaussian": antialias(raw.maps["gradient"], sigma),
    }
    for name, result in (("normalized", normalized), ("gaussian", gaussian)):
        got = result.maps["gradient"]
        assert map_spearman(got, expected[name], raw.support) > 0.99, name
        assert map_spearman(got, raw.maps["gradient"], raw.support) < 0.95, name  # it did change the map
    assert map_spearman(normalized.maps["gradient"], gaussian.maps["gradient"], raw.support) < 0.99
