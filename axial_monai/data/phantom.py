"""One phantom subject of the demo cohort: the shared anatomy, the planted atrophy, and each subject's warp, bias
field, intensity scale and noise (what each does and why: :mod:`.demo`). All arrays have shape ``(X, Y, Z)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import nibabel.processing
import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import CenterSpatialCrop, RandAffineGrid, RandBiasField, RandDeformGrid, Resample
from monai.transforms.transform import Randomizable
from scipy import ndimage

from .atlas import Atlas, load_atlas, region_indices, region_mask, resample_atlas, template_path

__all__ = ["Anatomy", "RandomWarp", "build_anatomy", "random_bias_field", "shrink", "simulate_subject"]

_ATROPHY_RIM_SIGMA_MM = 1.5
_SHRINK_SIGMA_MM = 2.0
_MAX_VOLUME_LOSS = 0.9
_SEVERITY_RANGE = (0.8, 1.2)
_CSF_PERCENTILE = 2.0
_CONTROL_SPACING_MM = 20.0
_ELASTIC_RMS_MM = 1.0
_ROTATE_RAD = float(np.deg2rad(2.0))
_SCALE = 0.03
_TRANSLATE_MM = 1.5
_BIAS_COEFF_RANGE = (0.0, 0.15)
_INTENSITY_SCALE_RANGE = (0.9, 1.1)
_NOISE_STD_RANGE = (0.01, 0.03)


@dataclass
class Anatomy:
    """The shared source anatomy on the cohort grid; arrays have shape ``(X, Y, Z)``."""

    template: np.ndarray  # float32 in [0, 1], 0 outside the brain
    brain: np.ndarray  # bool
    atlas: Atlas  # on the grid
    region_indices: list[int]
    atrophy_mask: np.ndarray  # bool, union of the regions within the brain
    atrophy_weight: np.ndarray  # float32 in [0, 1]
    csf_intensity: float
    affine: np.ndarray  # (4, 4) voxel -> RAS mm
    spacing: float
    shrink_field: np.ndarray | None = None  # (3, |M|) outward unit-max displacement at the voxels of M, in voxels


def shrink_field(mask: np.ndarray, spacing: float) -> np.ndarray:
    """``-grad(G_sigma * mask) / max|grad|`` at the voxels of ``mask``: ``(3, |mask|)`` in voxels (module docstring)."""
    smooth = ndimage.gaussian_filter(mask.astype(np.float32), sigma=_SHRINK_SIGMA_MM / spacing, mode="constant")
    inside = np.nonzero(mask)
    field = -np.stack([g[inside] for g in np.gradient(smooth)])
    peak = float(np.sqrt((field**2).sum(axis=0)).max()) if field.size else 0.0
    return (field / peak if peak > 0 else field).astype(np.float32)


def shrink(anatomy: Anatomy, loss: float) -> np.ndarray:
    """The template with the atrophy region shrunk by the volume fraction ``loss`` (morphological model)."""
    image = anatomy.template.copy()
    if loss <= 0 or anatomy.shrink_field is None:
        return image
    inside = np.nonzero(anatomy.atrophy_mask)
    points = np.stack(inside).astype(np.float64)
    region = anatomy.atrophy_mask.astype(np.float32)

    def kept(t: float) -> np.ndarray:  # share of each region voxel that still holds region tissue
        return ndimage.map_coordinates(region, points + t * anatomy.shrink_field, order=1, mode="constant")

    lo, hi = 0.0, 1.0
    while float((1 - kept(hi)).mean()) < loss and hi < max(anatomy.template.shape):
        lo, hi = hi, 2 * hi
    for _ in range(40):  # bisection of the displacement t (voxels) for the wanted volume loss
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if float((1 - kept(mid)).mean()) < loss else (lo, mid)
    t = hi
    share = kept(t)
    tissue = ndimage.map_coordinates(anatomy.template, points + t * anatomy.shrink_field, order=1, mode="constant")
    image[inside] = share * tissue + (1 - share) * anatomy.csf_intensity
    return image


def build_anatomy(spacing: float, atlas_name: str, regions: Sequence[str | int], atrophy: str = "intensity") -> Anatomy:
    """Template, brain mask and atlas on the ``spacing`` mm grid, and the atrophy mask, weights and field."""
    source = nib.load(template_path())
    data = source.get_fdata(dtype=np.float32)
    brain_1mm = nib.Nifti1Image((data > 0).astype(np.uint8), source.affine)
    voxel = np.asarray(source.header.get_zooms()[:3], dtype=float)
    fwhm = np.sqrt(np.maximum(spacing**2 - voxel**2, 0.0))  # mm, so that the output resolution is ~spacing
    if np.any(fwhm > 0):
        data = ndimage.gaussian_filter(data, sigma=fwhm / voxel / np.sqrt(8 * np.log(2)), mode="constant")
    grid = nibabel.processing.resample_to_output(
        nib.Nifti1Image(data, source.affine), voxel_sizes=(spacing,) * 3, order=1, mode="constant", cval=0.0
    )
    affine = np.array(grid.affine, dtype=np.float64)
    shape = grid.shape[:3]
    brain = np.asarray(nibabel.processing.resample_from_to(brain_1mm, (shape, affine), order=0).dataobj) > 0
    template = np.where(brain, np.clip(np.asarray(grid.dataobj, dtype=np.float32), 0, None), 0).astype(np.float32)
    template /= float(template.max())

    atlas = resample_atlas(load_atlas(atlas_name), nib.Nifti1Image(template, affine))
    indices = region_indices(atlas, regions)
    labels_on_grid = np.asanyarray(atlas.image.dataobj)
    for region in regions:
        if not region_mask(atlas, [region]).any():
            raise ValueError(
                f"Region {region!r} of atlas {atlas_name!r} has no voxel on the {spacing:g} mm grid; "
                "use a finer spacing or a larger region."
            )
    mask = np.isin(labels_on_grid, indices) & brain
    rim = ndimage.gaussian_filter(mask.astype(np.float32), sigma=_ATROPHY_RIM_SIGMA_MM / spacing, mode="constant")
    weight = (np.maximum(mask, rim) * brain).astype(np.float32)
    csf = float(np.percentile(template[brain], _CSF_PERCENTILE))
    field = shrink_field(mask, spacing) if atrophy == "morphological" else None
    return Anatomy(template, brain, atlas, indices, mask, weight, csf, affine, float(spacing), field)


class RandomWarp(Randomizable):
    """Random smooth spatial warp of an image (trilinear) and its mask (nearest), built from MONAI's elastic parts.

    As MONAI's ``Rand2DElastic`` does, random offsets on a coarse control grid (``RandDeformGrid``, one point every
    ~20 mm) are composed with a small random affine (``RandAffineGrid``), upsampled trilinearly to a dense
    sampling grid and applied with ``Resample`` (zero padding). This gives the same kind of smooth deformation as
    ``Rand3DElastic`` without smoothing a dense noise field, which costs ~0.7 s per 2 mm volume on one core.

    Args:
        spacing: voxel size of the volumes in mm; all ranges below are in mm or degrees and converted.
    """

    def __init__(self, spacing: float) -> None:
        control = int(np.ceil(_CONTROL_SPACING_MM / spacing))
        self.control = max(3, control + 1 - control % 2)  # odd: the upsampled grid is then aligned with the voxels
        # trilinear interpolation of i.i.d. control offsets keeps sqrt((2/3)^3) of their RMS
        magnitude = _ELASTIC_RMS_MM / spacing / np.sqrt((2 / 3) ** 3)
        self.deform = RandDeformGrid(spacing=(self.control,) * 3, magnitude_range=(0.75 * magnitude, 1.25 * magnitude))
        self.affine = RandAffineGrid(
            rotate_range=(_ROTATE_RAD,) * 3, scale_range=(_SCALE,) * 3, translate_range=(_TRANSLATE_MM / spacing,) * 3
        )
        self.resample = Resample(padding_mode="zeros", dtype=np.float32)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandomWarp:
        super().set_random_state(seed, state)
        self.deform.set_random_state(state=self.R)
        self.affine.set_random_state(state=self.R)
        return self

    def randomize(self, data: None = None) -> None:  # the two grid transforms draw from the shared state
        pass

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Warp ``image`` (float, ``(X, Y, Z)``) and ``mask`` (same shape) with one random deformation."""
        shape = image.shape
        grid = self.affine(grid=self.deform(spatial_size=shape))
        # upsample the 3 coordinate channels (the 4th, homogeneous one is all ones)
        coords = F.interpolate(grid[None, :3], scale_factor=(self.control,) * 3, mode="trilinear", align_corners=False)
        coords = CenterSpatialCrop(roi_size=shape)(coords[0])
        grid = torch.cat([coords, torch.ones_like(coords[:1])])
        warped = self.resample(torch.as_tensor(image[None], dtype=torch.float32), grid, mode="bilinear")
        warped_mask = self.resample(torch.as_tensor(mask[None], dtype=torch.float32), grid, mode="nearest")
        return (
            np.asarray(warped.detach().cpu().numpy()[0], dtype=np.float32),
            (np.asarray(warped_mask.detach().cpu().numpy()[0]) > 0.5).astype(np.uint8),
        )


def simulate_subject(
    anatomy: Anatomy, label: int, strength: float, seed: int, index: int, warp: RandomWarp, bias: RandBiasField
) -> tuple[np.ndarray, np.ndarray]:
    """One subject: ``(image float32, atrophy mask uint8)``, both of shape ``(X, Y, Z)``."""
    rng = np.random.default_rng([seed, index])
    severity = float(np.clip(strength * rng.uniform(*_SEVERITY_RANGE), 0.0, 1.0))
    warp_seed, bias_seed = (int(x) for x in rng.integers(0, 2**31 - 1, size=2))
    intensity_scale = rng.uniform(*_INTENSITY_SCALE_RANGE)
    noise_std = rng.uniform(*_NOISE_STD_RANGE)

    image = anatomy.template
    mask = np.zeros_like(anatomy.atrophy_mask)
    if label == 1 and anatomy.shrink_field is not None:
        image = shrink(anatomy, min(severity, _MAX_VOLUME_LOSS))
        mask = anatomy.atrophy_mask
    elif label == 1:
        blend = severity * anatomy.atrophy_weight
        image = (1.0 - blend) * image + blend * anatomy.csf_intensity
        mask = anatomy.atrophy_mask

    warp.set_random_state(seed=warp_seed)
    image, mask = warp(image.astype(np.float32), mask)

    inside = image > 0
    bias.set_random_state(seed=bias_seed)
    image = np.asarray(bias(image[None]), dtype=np.float32)[0] * np.float32(intensity_scale)
    noise = rng.normal(0.0, noise_std, size=image.shape).astype(np.float32)
    image = np.where(inside, np.maximum(image + noise, 0.0), 0.0).astype(np.float32)
    return image, mask


def random_bias_field() -> RandBiasField:
    """The subjects' smooth multiplicative bias field (degree 3), seeded per subject by :func:`simulate_subject`."""
    return RandBiasField(degree=3, coeff_range=_BIAS_COEFF_RANGE, prob=1.0)
