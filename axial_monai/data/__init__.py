"""Data: datalists, the compact volume cache, brain template and label atlases.

The built-in planted-atrophy demo cohort is :func:`axial_monai.data.demo.prepare_demo_cohort` (imported by name:
an exported bundle does not carry it).
"""

from .atlas import Atlas, load_atlas, region_mask, resample_atlas, template_path
from .volume_cache import VolumeCacheDataset

__all__ = ["Atlas", "load_atlas", "region_mask", "resample_atlas", "template_path", "VolumeCacheDataset"]
