"""Pieces for MONAI's engines: batch preparation on the device, mixed precision, deterministic algorithms and the
handlers of each DDP process."""

from .determinism import use_deterministic_algorithms
from .distributed import RankHandlers
from .precision import AutocastInferer, autocast_dtype
from .prepare_batch import PrepareVolumeBatch

__all__ = ["AutocastInferer", "autocast_dtype", "PrepareVolumeBatch", "RankHandlers", "use_deterministic_algorithms"]
