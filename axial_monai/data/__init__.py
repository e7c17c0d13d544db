"""Data: where scans and labels come from, and the compact volume cache.

* :mod:`.clinica`: labelled scans of a Clinica BIDS tree (AD vs CN, sMCI vs pMCI), without the QC gate's refusals;
* :mod:`.bids_check`: ``axial-monai check-bids``; :mod:`.datalist`: datalists, item checks, inference inputs;
* :mod:`.inputs`, :mod:`.dicom`: files, folders and DICOM series as scans;
* :mod:`.atlas`: label atlases and the MNI template;
* :mod:`.volume_cache`: ``VolumeCacheDataset``, each scan decoded once, keyed by the chain's ``cache_key()``;
* :mod:`.demo` and :mod:`.phantom` (imported by name: an exported bundle does not carry them): the built-in
  planted-atrophy demo cohort (:func:`axial_monai.data.demo.prepare_demo_cohort`) and one simulated subject.
"""

from .atlas import Atlas, load_atlas, region_mask, resample_atlas, template_path
from .volume_cache import VolumeCacheDataset

__all__ = ["Atlas", "load_atlas", "region_mask", "resample_atlas", "template_path", "VolumeCacheDataset"]
