from .intensity import (
    RandGaussianNoiseTorch,
    RandGaussianNoiseTorchd,
    RobustNormalizeIntensity,
    RobustNormalizeIntensityd,
    source_name,
)
from .pipeline import load_volume
from .slicing import RandSliceSample, RandSliceSampled
from .validation import CheckVolume, CheckVolumed

__all__ = [
    "load_volume",
    "RandGaussianNoiseTorch",
    "RandGaussianNoiseTorchd",
    "RobustNormalizeIntensity",
    "RobustNormalizeIntensityd",
    "source_name",
    "RandSliceSample",
    "RandSliceSampled",
    "CheckVolume",
    "CheckVolumed",
]
