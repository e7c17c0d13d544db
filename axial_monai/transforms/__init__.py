from .intensity import RobustNormalizeIntensity, RobustNormalizeIntensityd, source_name
from .slicing import RandSliceSample, RandSliceSampled
from .validation import CheckVolume, CheckVolumed

__all__ = [
    "RobustNormalizeIntensity",
    "RobustNormalizeIntensityd",
    "source_name",
    "RandSliceSample",
    "RandSliceSampled",
    "CheckVolume",
    "CheckVolumed",
]
