"""Data: brain template and label atlases, and the built-in planted-atrophy demo cohort."""

from axial_monai.data.atlas import Atlas, load_atlas, region_mask, resample_atlas, template_path
from axial_monai.data.demo import prepare_demo_cohort
from axial_monai.data.volume_cache import VolumeCacheDataset

__all__ = [
    "Atlas",
    "load_atlas",
    "prepare_demo_cohort",
    "region_mask",
    "resample_atlas",
    "template_path",
    "VolumeCacheDataset",
]
