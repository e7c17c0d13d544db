import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImage, LoadImaged
from nibabel.testing import data_path

from axial_monai.geometry import central_slice_indices
from axial_monai.transforms import (
    CheckVolume,
    CheckVolumed,
    RandGaussianNoiseTorchd,
    RandSliceSample,
    RandSliceSampled,
    RobustNormalizeIntensity,
    RobustNormalizeIntensityd,
)

ANAT = f"{data_path}/anatomical.nii"  # a tiny real T1 shipped with nibabel (33 x 41 x 25)


@pytest.fixture
def t1():
    return LoadImage(ensure_channel_first=True)(ANAT)


def test_percentile_normalisation_inside_foreground(t1):
    fg = t1 > 0
    original = t1.clone()
    out = RobustNormalizeIntensity(mode="percentile", lower=1, upper=99)(t1)
    assert torch.equal(t1, original)  # input left unchanged
    assert out.min() >= 0 and out.max() <= 1
    assert torch.all(out[~fg] == 0)
    inside = out[fg]
    assert 0.005 < (inside == 1).float().mean() < 0.03  # ~1 % of brain voxels clipped at the top
    assert out.meta["filename_or_obj"] == t1.meta["filename_or_obj"]
    # scale invariance: a rescaled scan normalises to the same values
    torch.testing.assert_close(RobustNormalizeIntensity(lower=1, upper=99)(t1 * 7.5), out)


def test_zscore_with_mask_and_dict_twin(t1):
    mask = torch.zeros_like(t1, dtype=torch.bool)
    mask[:, 5:25, 5:30, 5:20] = True
    out = RobustNormalizeIntensity(mode="zscore")(t1, mask=mask)
    inside = out[mask]
    assert abs(inside.mean().item()) < 1e-4 and abs(inside.std().item() - 1) < 1e-3
    assert torch.all(out[~mask] == 0)
    d = RobustNormalizeIntensityd("image", mode="zscore", mask_key="mask")({"image": t1, "mask": mask})
    torch.testing.assert_close(d["image"], out)


@pytest.mark.parametrize("value, message", [(float("nan"), "NaN or infinite"), (0.0, "no foreground voxels")])
def test_normalisation_errors_name_the_file(t1, value, message):
    bad = t1.clone()
    bad[:] = 0
    bad[0, 0, 0, 0] = value
    with pytest.raises(ValueError, match=message) as info:
        RobustNormalizeIntensity()(bad)
    assert "anatomical.nii" in str(info.value)


def test_check_volume_accepts_and_rejects(tmp_path, t1):
    assert CheckVolume(spatial_shape=(33, 41, 25), pixdim=t1.pixdim.tolist())(t1) is t1
    with pytest.raises(ValueError, match=r"anatomical\.nii.*\(40, 41, 25\).*\(33, 41, 25\)"):
        CheckVolume(spatial_shape=(40, 41, 25))(t1)
    with pytest.raises(ValueError, match="voxel size"):
        CheckVolume(pixdim=(1.0, 1.0, 1.0))(t1)
    # a 4D (time-series) NIfTI on disk
    path = tmp_path / "sub-01_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), path)
    data = LoadImaged("image", ensure_channel_first=True)({"image": str(path)})
    with pytest.raises(ValueError, match=r"sub-01_bold\.nii\.gz.*single 3D volume"):
        CheckVolumed("image")(data)


def test_rand_slice_sample_is_central_consistent_and_replayable(t1):
    sampler = RandSliceSample(plane=2, num_slices=9)
    sampler.set_random_state(0)
    seen = set()
    for _ in range(30):
        out = sampler(t1)
        assert out.shape == (1, 33, 41)
        assert sampler.index in central_slice_indices(25, 9)
        assert torch.equal(out, t1[..., sampler.index])
        seen.add(sampler.index)
    assert len(seen) > 3
    d = {"image": t1, "mask": t1 > 100}
    first = RandSliceSampled(["image", "mask"], plane="sagittal", num_slices=5).set_random_state(3)(d)
    again = RandSliceSampled(["image", "mask"], plane="sagittal", num_slices=5).set_random_state(3)(d)
    assert first["image"].shape == (1, 41, 25)
    assert torch.equal(first["mask"], first["image"] > 100)  # same slice for every key
    assert torch.equal(first["image"], again["image"])


def test_torch_gaussian_noise_is_reproducible_and_drawn_on_the_image_device(t1):
    image = RobustNormalizeIntensity()(t1)
    original = image.clone()
    first = RandGaussianNoiseTorchd("image", prob=1.0, std=0.1, sample_std=False).set_random_state(7)({"image": image})
    again = RandGaussianNoiseTorchd("image", prob=1.0, std=0.1, sample_std=False).set_random_state(7)({"image": image})
    noise = first["image"] - image
    assert torch.equal(image, original)  # input left unchanged
    assert torch.equal(first["image"], again["image"])  # seeded
    assert noise.dtype == torch.float32 and abs(float(noise.std()) - 0.1) < 0.005 and abs(float(noise.mean())) < 0.005
    skipped = RandGaussianNoiseTorchd("image", prob=0.0, std=0.1)({"image": image})
    assert torch.equal(skipped["image"], image)  # p = 0 is the identity
