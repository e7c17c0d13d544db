"""Pieces for MONAI's engines: batch preparation on the device, mixed precision and deterministic algorithms."""

from .determinism import use_deterministic_algorithms
from .precision import AutocastInferer, autocast_dtype
from .prepare_batch import PrepareVolumeBatch

__all__ = ["AutocastInferer", "autocast_dtype", "PrepareVolumeBatch", "use_deterministic_algorithms"]
