"""One exception type per kind of problem (axial_monai.errors): bad input data, bad settings, missing files."""

import json

import pytest
import torch
from monai.data import MetaTensor

from axial_monai.data.datalist import load_split
from axial_monai.errors import InputError, SettingsError
from axial_monai.geometry import central_slice_indices, plane_index
from axial_monai.networks import AxialNet
from axial_monai.transforms import CheckVolume


def test_both_kinds_are_value_errors():
    assert issubclass(InputError, ValueError) and issubclass(SettingsError, ValueError)
    assert not issubclass(InputError, SettingsError) and not issubclass(SettingsError, InputError)


def test_a_bad_setting_is_a_settings_error():
    with pytest.raises(SettingsError, match="plane must be one of"):
        plane_index("oblique")
    with pytest.raises(SettingsError, match="not True"):
        plane_index(True)
    with pytest.raises(SettingsError, match="between 1 and 10"):
        central_slice_indices(10, 11)
    with pytest.raises(SettingsError, match="Unknown backbone"):
        AxialNet(backbone="resnet7")


def test_a_bad_input_file_is_an_input_error_naming_it():
    image = MetaTensor(torch.zeros(2, 4, 4, 4), meta={"filename_or_obj": "/data/sub-01_bold.nii.gz"})
    with pytest.raises(InputError, match=r"sub-01_bold\.nii\.gz.*single 3D volume"):
        CheckVolume()(image)
    with pytest.raises(InputError, match=r"\(B, 1, X, Y, Z\)"):
        AxialNet(backbone="resnet18", num_slices=2, image_size=32)(torch.zeros(1, 2, 8, 8, 8))


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"datalist\.json does not exist"):
        load_split(str(tmp_path), "training")
    (tmp_path / "datalist.json").write_text(json.dumps({"training": []}))
    with pytest.raises(InputError, match="no split 'test'"):
        load_split(str(tmp_path), "test")
