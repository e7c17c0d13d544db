"""Batch preparation for MONAI's engines: compact volumes go to the device as they are and are restored there."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines import PrepareBatch
from monai.transforms import Randomizable

from ..data.volume_cache import box_keys
from ..transforms.compact import restore_volume

__all__ = ["PrepareVolumeBatch"]


class PrepareVolumeBatch(PrepareBatch):
    """Move a batch to the device, restore compact volumes there, then optionally augment them there.

    A batch from :class:`~axial_monai.data.VolumeCacheDataset` holds ``(B, 1, bx, by, bz)`` crops in the storage
    dtype (uint8: a quarter of float32, and only the brain box) and their box corner, grid and scale; they are
    copied as they are (``non_blocking`` from pinned memory), then cast to float32, rescaled and zero-padded to
    ``(B, 1, X, Y, Z)`` on the device. A batch of plain volumes (``cache="none"``, inference) is moved and cast.

    Random augmentation (MONAI dictionary transforms on ``image_key``) runs after the restore, on the device,
    on each volume of the batch: a new draw every epoch, as with augmentation in the dataset.

    Args:
        image_key: key of the image in the batch.
        label_key: key of the label (None or absent: no label, e.g. inference).
        augmentation: a callable on ``{image_key: (1, X, Y, Z)}`` dictionaries, e.g. a ``Compose`` of
            ``RandAffined``/``RandGaussianNoised``; None for evaluation.
        seed: seed of the augmentation's random state (its transforms are re-seeded from it).

    Returns (``__call__``):
        ``(image, label)``: float32 ``(B, 1, X, Y, Z)`` on ``device`` (a MetaTensor with the batch's meta) and the
        labels on ``device`` (or None).
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str | None = "label",
        augmentation: Callable | None = None,
        seed: int | None = None,
    ) -> None:
        if augmentation is not None and not callable(augmentation):
            raise ValueError(f"augmentation must be callable or None, not {type(augmentation).__name__}.")
        self.image_key, self.label_key, self.augmentation = image_key, label_key, augmentation
        if seed is not None and isinstance(augmentation, Randomizable):
            augmentation.set_random_state(seed=int(seed))

    def restore(self, batchdata: Mapping, device: torch.device | str | None = None, non_blocking: bool = False):
        """The batch's images as float32 ``(B, 1, X, Y, Z)`` on ``device``, before augmentation."""
        # MetaTensor operations carry the batch's meta (file names, affines) through the restore
        image = torch.as_tensor(batchdata[self.image_key]).to(device=device, non_blocking=non_blocking)
        start_key, shape_key, scale_key = box_keys(self.image_key)
        if scale_key not in batchdata:
            return image.float()
        start, shape = torch.as_tensor(batchdata[start_key]), torch.as_tensor(batchdata[shape_key])
        if start.ndim == 2 and not (start == start[:1]).all() or shape.ndim == 2 and not (shape == shape[:1]).all():
            raise ValueError("All volumes of a batch must share the cache box and grid (same image grid).")
        scale = torch.as_tensor(batchdata[scale_key]).to(device=image.device, non_blocking=non_blocking)
        compact = image.as_tensor() if isinstance(image, MetaTensor) else image
        restored = restore_volume(compact, start.view(-1, 3)[0], shape.view(-1, 3)[0], scale)
        if isinstance(image, MetaTensor):
            restored = MetaTensor(restored)
            restored.copy_meta_from(image)
        return restored

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: torch.device | str | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        image = self.restore(batchdata, device, non_blocking)
        if self.augmentation is not None:
            image = torch.stack([self.augmentation({self.image_key: v})[self.image_key] for v in image])
        label = batchdata.get(self.label_key) if self.label_key else None
        if label is not None:
            label = torch.as_tensor(label).to(device=device, non_blocking=non_blocking)
        return image, label
