"""Input checks: one clear message naming the file and the problem instead of a deep traceback."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from ..errors import InputError
from ..input_check import InputCheck, affine_problem, volume_problem
from .intensity import source_name

__all__ = ["CheckVolume", "CheckVolumed"]


class CheckVolume(Transform):
    """Check that an image is one 3D volume ``(1, X, Y, Z)`` with a non-singular affine and usable voxels (finite,
    not all 0), optionally on an expected grid.

    Args:
        spatial_shape: expected ``(X, Y, Z)`` in voxels, or None to accept any.
        pixdim: expected voxel size ``(sx, sy, sz)`` in mm (from the MetaTensor affine), or None.
        atol: tolerance on the voxel size, in mm.
        check: a model's :class:`~axial_monai.input_check.InputCheck` (its grid, and "brain-extracted" when it has
            a brain mask), applied to the RAS volume; the way the configs check scans against the trained run.

    Raises:
        InputError: naming the source file and what is wrong with it.
    """

    def __init__(
        self,
        spatial_shape: Sequence[int] | None = None,
        pixdim: Sequence[float] | None = None,
        atol: float = 1e-2,
        check: InputCheck | None = None,
    ) -> None:
        self.spatial_shape = None if spatial_shape is None else tuple(int(s) for s in spatial_shape)
        self.pixdim = None if pixdim is None else tuple(float(p) for p in pixdim)
        self.atol = atol
        self.check = check

    def cache_key(self) -> dict[str, Any]:
        """Every setting that decides which volumes pass (a cached volume passed these checks)."""
        check = None if self.check is None else self.check.cache_key()
        return {"spatial_shape": self.spatial_shape, "pixdim": self.pixdim, "atol": self.atol, "check": check}

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        name = source_name(img)
        if img.ndim != 4 or img.shape[0] != 1:
            raise InputError(
                f"{name}: expected a single 3D volume with shape (1, X, Y, Z) after channel-first loading, "
                f"got {tuple(img.shape)}; 4D (time series) and multi-channel images are not supported."
            )
        if self.spatial_shape is not None and tuple(img.shape[1:]) != self.spatial_shape:
            raise InputError(
                f"{name}: expected a volume on the {self.spatial_shape} grid, got {tuple(img.shape[1:])}; "
                f"preprocess it to the template space first (python -m axial_monai.preprocess)."
            )
        if self.pixdim is not None and isinstance(img, MetaTensor):
            spacing = np.sqrt((np.asarray(img.affine, dtype=float)[:3, :3] ** 2).sum(0))
            if not np.allclose(spacing, self.pixdim, atol=self.atol):
                raise InputError(f"{name}: expected voxel size {self.pixdim} mm, got {tuple(spacing.round(3))} mm.")
        affine = np.asarray(img.affine, dtype=float) if isinstance(img, MetaTensor) else np.eye(4)
        volume = np.asarray(img[0].detach().cpu())
        if self.check is not None:
            problem = self.check.check_volume(volume, affine, name)
        else:
            problem = affine_problem(affine) or volume_problem(volume)
        if problem:
            raise InputError(f"{name} {problem}.")
        return img


class CheckVolumed(MapTransform):
    """Dictionary version of ``CheckVolume``."""

    def __init__(
        self,
        keys: KeysCollection,
        spatial_shape: Sequence[int] | None = None,
        pixdim: Sequence[float] | None = None,
        atol: float = 1e-2,
        check: InputCheck | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckVolume(spatial_shape=spatial_shape, pixdim=pixdim, atol=atol, check=check)

    def cache_key(self) -> dict[str, Any]:
        """The keys and the checker's settings."""
        return {"keys": list(self.keys), **self.checker.cache_key()}

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.checker(d[key])
        return d
