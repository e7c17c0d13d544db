"""A scan stored in another voxel order (LPS, or axes permuted) is the same scan to the bundle: the loading chain
(``transforms.load_volume``) gives the same tensor, so the network cuts the same slices and gives the same logits.
(The preprocessing's twin check is in ``test_preprocess_mechanisms.py``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from axial_monai.networks import AxialNet, TriPlanarAxialNet
from axial_monai.transforms import load_volume


@pytest.fixture(scope="module")
def ras_scan(tiny_cohort) -> Path:
    """A demo-cohort scan (stored RAS)."""
    items = json.loads((Path(tiny_cohort) / "datalist.json").read_text())["test"]
    path = Path(tiny_cohort) / items[0]["image"]
    assert nib.aff2axcodes(nib.load(path).affine) == ("R", "A", "S")
    return path


@pytest.mark.parametrize("codes", [("L", "P", "S"), ("P", "S", "L")], ids=["LPS", "PSL"])
def test_reoriented_copy_gives_the_same_tensor_slices_and_logits(ras_scan, tmp_path, codes):
    ras = nib.load(ras_scan)
    copy = ras.as_reoriented(
        nib.orientations.ornt_transform(nib.io_orientation(ras.affine), nib.orientations.axcodes2ornt(codes))
    )
    assert nib.aff2axcodes(copy.affine) == codes
    stored = np.asanyarray(copy.dataobj)
    assert stored.shape != ras.shape or not np.array_equal(stored, np.asanyarray(ras.dataobj))  # other voxel order
    path = tmp_path / f"copy_{''.join(codes)}.nii.gz"
    nib.save(copy, path)

    load = load_volume(keys="image", intensity="percentile")
    twin = load({"image": str(ras_scan)})["image"]
    other = load({"image": str(path)})["image"]
    assert torch.equal(torch.as_tensor(other), torch.as_tensor(twin))
    np.testing.assert_allclose(np.asarray(other.affine), np.asarray(twin.affine), atol=1e-5)

    torch.manual_seed(0)
    nets = [
        AxialNet(backbone="resnet18", pretrained="none", plane=1, num_slices=6, image_size=32).eval(),
        TriPlanarAxialNet(backbone="resnet18", pretrained="none", num_slices=4, image_size=32).eval(),
    ]
    for net in nets:
        assert net.slice_indices(other.shape[1:]) == net.slice_indices(twin.shape[1:])
        with torch.no_grad():
            assert torch.equal(net(torch.as_tensor(other)[None]), net(torch.as_tensor(twin)[None]))
