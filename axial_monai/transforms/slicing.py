"""Random 2D slice sampling from volumes, to train the 2D majority-voting baseline."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable, Transform

from ..errors import InputError
from ..geometry import central_slice_indices, plane_index

__all__ = ["RandSliceSample", "RandSliceSampled"]


class RandSliceSample(Randomizable, Transform):
    """Take one random slice among the ``num_slices`` central slices of ``plane``.

    Input ``(C, X, Y, Z)``; output ``(C, h, w)`` (e.g. ``(C, X, Z)`` for the coronal plane). The chosen index
    is kept in ``self.index``.
    """

    def __init__(self, plane: int | str = 1, num_slices: int = 80) -> None:
        self.plane = plane_index(plane)
        self.num_slices = int(num_slices)
        self.index = 0

    def randomize(self, depth: int) -> None:
        r = central_slice_indices(depth, self.num_slices)
        self.index = int(self.R.randint(r.start, r.stop))

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        if img.ndim != 4:
            raise InputError(f"Expected a channel-first volume (C, X, Y, Z), got shape {tuple(img.shape)}.")
        if randomize:
            self.randomize(img.shape[self.plane + 1])
        return img.select(self.plane + 1, self.index)


class RandSliceSampled(Randomizable, MapTransform):
    """Dictionary version of ``RandSliceSample``; all ``keys`` get the same slice index."""

    def __init__(
        self, keys: KeysCollection, plane: int | str = 1, num_slices: int = 80, allow_missing_keys: bool = False
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.sampler = RandSliceSample(plane=plane, num_slices=num_slices)

    def set_random_state(self, seed: int | None = None, state=None) -> RandSliceSampled:
        super().set_random_state(seed, state)
        self.sampler.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        pass  # the sampler draws its own index from the first key's depth

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        first = True
        for key in self.key_iterator(d):
            d[key] = self.sampler(d[key], randomize=first)
            first = False
        return d
