"""MONAI-style transforms, each in an array and a dictionary form.

* :mod:`.pipeline`: ``load_volume`` (``VolumeLoader``), the deterministic loading chain every config shares, with
  the cache key of its settings;
* :mod:`.validation`: ``CheckVolume(d)``, one usable 3D volume on the expected grid;
* :mod:`.intensity`: ``RobustNormalizeIntensity(d)`` and the on-device noise of the augmentation;
* :mod:`.slicing`: ``RandSliceSample(d)``, the slice sampler of the 2D baseline;
* :mod:`.compact`: the compact storage dtypes of the volume cache.
"""

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
