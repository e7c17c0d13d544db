"""Slice geometry (axial_monai.geometry) and the slicing module (SliceStack) against values worked out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from axial_monai.errors import InputError, SettingsError
from axial_monai.geometry import IMAGENET_MEAN, IMAGENET_STD, PLANE_NAMES, PLANES, central_slice_indices, plane_index
from axial_monai.networks import SliceStack


def test_plane_tables():
    assert PLANES == {"sagittal": 0, "coronal": 1, "axial": 2}
    assert PLANE_NAMES == {0: "sagittal (x)", 1: "coronal (y)", 2: "axial (z)"}
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)


@pytest.mark.parametrize(
    "plane, axis", [("sagittal", 0), ("coronal", 1), ("axial", 2), ("Axial", 2), ("CORONAL", 1), (0, 0), (1, 1), (2, 2)]
)
def test_plane_index(plane, axis):
    assert plane_index(plane) == axis and type(plane_index(plane)) is int


@pytest.mark.parametrize("plane", ["transverse", "", 3, -1, True, False, 1.5, None])
def test_plane_index_refuses_other_values(plane):
    with pytest.raises(SettingsError, match=f"not {plane!r}"):
        plane_index(plane)


@pytest.mark.parametrize(
    "depth, num, start",
    [
        (10, 4, 3),  # int(5 - 2)
        (11, 4, 3),  # int(5.5 - 2) = int(3.5)
        (11, 5, 3),  # int(5.5 - 2.5)
        (10, 5, 2),  # int(5 - 2.5) = int(2.5)
        (10, 1, 4),  # int(5 - 0.5)
        (1, 1, 0),
        (7, 7, 0),  # all slices
        (8, 7, 0),  # int(4 - 3.5) = int(0.5)
    ],
)
def test_central_slice_indices_by_hand(depth, num, start):
    assert central_slice_indices(depth, num) == range(start, start + num)


@pytest.mark.parametrize("depth, num", [(10, 0), (10, 11), (1, 2), (5, -1)])
def test_central_slice_indices_refuses_impossible_counts(depth, num):
    with pytest.raises(SettingsError, match=rf"Cannot take {num} central slices from an axis with {depth} slices"):
        central_slice_indices(depth, num)


def _ramp(shape, plane):
    """(1, 1, X, Y, Z) volume whose value is the voxel's index along ``plane``."""
    ramp = torch.arange(shape[plane], dtype=torch.float32)
    view = [1, 1, 1, 1, 1]
    view[plane + 2] = -1
    return ramp.view(view).expand(1, 1, *shape).contiguous()


@pytest.mark.parametrize("plane, expected", [(0, [4, 5, 6]), (1, [3, 4, 5]), (2, [2, 3, 4])])
def test_slice_stack_cuts_the_central_slices_in_place(plane, expected):
    """Shape (11, 9, 7); 3 slices: x from int(5.5 - 1.5) = 4, y from int(4.5 - 1.5) = 3, z from int(3.5 - 1.5) = 2.
    With ``image_size`` = the in-plane size of a square slice there is no resize: values come through unchanged."""
    shape = (11, 9, 7)
    stack = SliceStack(plane, num_slices=3, image_size=8, normalize="none")
    assert stack.indices(shape) == range(expected[0], expected[0] + 3)
    x = torch.rand(2, 1, *shape)
    out = stack(x)
    assert out.shape == (2, 3, 3, 8, 8)
    native = x[:, 0].movedim(plane + 1, 1)[:, expected]  # (2, 3, a, b)
    resized = F.interpolate(native.reshape(6, 1, *native.shape[2:]), size=(8, 8), mode="bilinear", align_corners=False)
    for channel in range(3):  # the slice repeated to 3 channels
        torch.testing.assert_close(out[:, :, channel], resized.reshape(2, 3, 8, 8), rtol=0, atol=0)
    ramp = stack(_ramp(shape, plane))
    assert ramp[0, :, 0].amin(dim=(1, 2)).tolist() == expected == ramp[0, :, 0].amax(dim=(1, 2)).tolist()


def test_slice_stack_without_resize_is_the_slice_itself():
    x = torch.rand(1, 1, 10, 8, 8)
    out = SliceStack("sagittal", num_slices=2, image_size=8, normalize="none")(x)  # slices 4, 5 of x, each (8, 8)
    assert torch.equal(out[0, :, 1], x[0, 0, 4:6])


def test_imagenet_normalisation_per_channel():
    x = torch.full((1, 1, 9, 9, 9), 0.5)
    out = SliceStack(2, num_slices=1, image_size=8, normalize="imagenet")(x)
    for channel, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)):
        torch.testing.assert_close(out[0, 0, channel], torch.full((8, 8), (0.5 - mean) / std))
    plain = SliceStack(2, num_slices=1, image_size=8, normalize="none")(x)
    assert torch.equal(plain, torch.full((1, 1, 3, 8, 8), 0.5))


def test_slice_stack_has_no_parameters_or_saved_state():
    stack = SliceStack(1, num_slices=4, image_size=16)
    assert list(stack.parameters()) == [] and stack.state_dict() == {}
    assert (stack.plane, stack.num_slices, stack.image_size, stack.normalize) == (1, 4, 16, "imagenet")
    assert SliceStack("axial", 2, 8).plane == 2
    defaults = SliceStack()  # the paper's coronal 80 slices of 224 px, ImageNet-standardised
    assert (defaults.plane, defaults.num_slices, defaults.image_size, defaults.normalize) == (1, 80, 224, "imagenet")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"normalize": "zscore"}, "normalize must be 'imagenet' or 'none', not 'zscore'"),
        ({"image_size": 7}, "image_size must be at least 8 pixels, not 7"),
        ({"plane": "oblique"}, "plane must be one of"),
    ],
)
def test_slice_stack_refuses_bad_settings(kwargs, match):
    with pytest.raises(SettingsError, match=match):
        SliceStack(**{"plane": 1, "num_slices": 2, "image_size": 8, **kwargs})


@pytest.mark.parametrize("shape", [(1, 9, 9, 9), (1, 2, 9, 9, 9), (9, 9, 9)])
def test_slice_stack_refuses_other_input_shapes(shape):
    with pytest.raises(InputError, match=r"Expected a volume batch of shape \(B, 1, X, Y, Z\), got"):
        SliceStack(1, num_slices=2, image_size=8)(torch.rand(*shape))


def test_to_backbone_input_resizes_bilinear_without_corner_alignment():
    slices = torch.rand(5, 1, 6, 10)
    out = SliceStack(0, num_slices=1, image_size=12, normalize="none").to_backbone_input(slices)
    expected = F.interpolate(slices, size=(12, 12), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    assert out.shape == (5, 3, 12, 12)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("size", [(12, 7), (7, 12)])
def test_a_slice_with_one_side_of_the_right_size_is_still_resized(size):
    """Either side off ``image_size`` means a resize: a 12 x 7 slice for 12 x 12 comes out 12 x 12."""
    slices = torch.rand(2, 1, *size)
    out = SliceStack(0, num_slices=1, image_size=12, normalize="none").to_backbone_input(slices)
    expected = F.interpolate(slices, size=(12, 12), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_a_slice_stack_locked_to_a_grid_refuses_any_other_and_a_bad_lock():
    """``spatial_shape`` locks the stack to one ``(X, Y, Z)``: the same grid passes, a grid off by one voxel along any
    axis is refused naming both shapes; a lock that is not 3D, or too thin for the slices, is refused when built."""
    stack = SliceStack(1, num_slices=3, image_size=8, spatial_shape=(9, 10, 11))
    assert stack(torch.rand(2, 1, 9, 10, 11)).shape == (2, 3, 3, 8, 8)
    for shape in ((10, 10, 11), (9, 11, 11), (9, 10, 12)):
        with pytest.raises(InputError, match=r"spatial shape \[9, 10, 11\].*\[" + ", ".join(map(str, shape))):
            stack(torch.rand(1, 1, *shape))
    with pytest.raises(SettingsError, match=r"spatial_shape must be \(X, Y, Z\)"):
        SliceStack(1, num_slices=3, image_size=8, spatial_shape=(9, 10))
    with pytest.raises(SettingsError, match="Cannot take 12 central slices from an axis with 10 slices"):
        SliceStack(1, num_slices=12, image_size=8, spatial_shape=(9, 10, 11))
    assert SliceStack(1, num_slices=3, image_size=8).spatial_shape == []  # no lock: any grid
