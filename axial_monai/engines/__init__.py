"""Pieces for MONAI's engines: batch preparation on the device and mixed precision."""

from .precision import AutocastInferer, autocast_dtype
from .prepare_batch import PrepareVolumeBatch

__all__ = ["AutocastInferer", "autocast_dtype", "PrepareVolumeBatch"]
