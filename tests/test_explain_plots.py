"""Figures: PNG files are written and valid; high-attention runs follow the documented rule exactly."""

from __future__ import annotations

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt

from axial_monai.explain import high_attention_runs, plot_attention_profiles, plot_overlay
from axial_monai.geometry import central_slice_indices

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, min_height=100, min_width=100):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.shape[0] >= min_height and image.shape[1] >= min_width
    assert image[..., :3].std() > 0  # not a blank canvas


def test_high_attention_runs_on_a_hand_made_profile():
    profile = np.zeros(20)
    profile[[0, 1, 2, 3]] = 1.0  # 4 slices: kept (touches the start)
    profile[[6, 7, 8]] = 1.0  # 3 slices: too short
    profile[[10, 11, 12, 13, 14]] = 1.0  # 5 slices: kept
    profile[[16, 17, 18, 19]] = 1.0  # 4 slices: kept (touches the end)
    assert high_attention_runs(profile) == [(0, 4), (10, 15), (16, 20)]
    assert high_attention_runs(profile, min_length=5) == [(10, 15)]
    assert high_attention_runs(profile, min_length=3) == [(0, 4), (6, 9), (10, 15), (16, 20)]


def test_high_attention_runs_threshold_is_the_percentile_inclusive():
    ramp = np.arange(10.0)
    assert high_attention_runs(ramp, percentile=50) == [(5, 10)]  # threshold 4.5
    assert high_attention_runs(ramp, percentile=60) == [(6, 10)]  # threshold 5.4
    assert high_attention_runs(ramp, percentile=70) == []  # 6.3: only 3 slices
    assert high_attention_runs(torch.arange(10.0), percentile=50, min_length=6) == []
    # >= : slices equal to the threshold count
    plateau = np.array([0.0, 2.0, 2.0, 2.0, 2.0, 0.0])
    assert high_attention_runs(plateau, percentile=100) == [(1, 5)]
    assert high_attention_runs(np.full(6, 0.3)) == [(0, 6)]
    assert high_attention_runs([]) == []
    with pytest.raises(ValueError, match="percentile"):
        high_attention_runs(ramp, percentile=120)
    with pytest.raises(ValueError, match="1-D"):
        high_attention_runs(np.ones((2, 3)))


def test_plot_attention_profiles_writes_a_png(tmp_path):
    shape = (21, 24, 19)
    n = (6, 8, 10)
    indices = {p: central_slice_indices(shape[p], n[p]) for p in range(3)}
    rng = np.random.default_rng(0)
    profiles = {p: rng.random(n[p]) for p in range(3)}
    profiles[2][2:7] += 2.0
    open_before = plt.get_fignums()
    path = plot_attention_profiles(profiles, indices, tmp_path / "sub" / "attention.png", title="scan 1")
    assert path == str(tmp_path / "sub" / "attention.png")
    _assert_png(path, min_width=500)
    assert plt.get_fignums() == open_before
    # one plane, torch input
    _assert_png(plot_attention_profiles({1: torch.rand(8)}, {1: indices[1]}, tmp_path / "one.png"))
    with pytest.raises(ValueError, match="8 attention values but 6 slice indices"):
        plot_attention_profiles({0: np.ones(8)}, indices, tmp_path / "bad.png")


def test_plot_overlay_writes_a_png_cut_at_the_map_maximum(tmp_path, monkeypatch):
    from nilearn import plotting

    affine = np.array([[2.0, 0, 0, -20.0], [0, 2.0, 0, -24.0], [0, 0, 2.0, -18.0], [0, 0, 0, 1]])
    rng = np.random.default_rng(1)
    anatomy = nib.Nifti1Image(rng.random((20, 24, 18)).astype(np.float32), affine)
    volume = np.zeros((20, 24, 18), np.float32)
    volume[4:9, 10:14, 6:10] = 0.4
    volume[6, 12, 8] = 1.0
    calls = []
    real = plotting.plot_stat_map

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(plotting, "plot_stat_map", spy)
    open_before = plt.get_fignums()
    path = plot_overlay(anatomy, nib.Nifti1Image(volume, affine), tmp_path / "overlay.png", title="map")
    _assert_png(path, min_width=300)
    assert plt.get_fignums() == open_before  # the figure was closed
    assert calls[0]["cut_coords"] == pytest.approx((-8.0, 0.0, -2.0))  # world coordinates of voxel (6, 12, 8)
    assert calls[0]["display_mode"] == "ortho"
    # an all-zero map and a 4-D map with one volume still give a figure
    _assert_png(plot_overlay(anatomy, nib.Nifti1Image(np.zeros((20, 24, 18, 1), np.float32), affine),
                             tmp_path / "zero.png", threshold=0.5))  # fmt: skip
    with pytest.raises(ValueError, match="3-D"):
        plot_overlay(anatomy, nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), affine), tmp_path / "bad.png")
