"""Data: where scans and labels come from, and the compact volume cache.

* :mod:`.clinica`: labelled scans of a Clinica BIDS tree (AD vs CN, sMCI vs pMCI), without the QC gate's refusals;
* :mod:`.bids_check`: ``axial-monai check-bids``; :mod:`.datalist`: datalists, item checks, inference inputs;
* :mod:`.inputs`, :mod:`.dicom`: files, folders and DICOM series as scans;
* :mod:`.atlas`: label atlases and the MNI template;
* :mod:`.volume_cache`: ``VolumeCacheDataset``, each scan decoded once, keyed by the chain's ``cache_key()``;
* :mod:`.demo` and :mod:`.phantom` (imported by name: an exported bundle does not carry them): the built-in
  planted-atrophy demo cohort (:func:`axial_monai.data.demo.prepare_demo_cohort`) and one simulated subject.

The names below are imported on first use: ``axial-monai check-bids`` and the datalist tools need neither MONAI nor
torch, which the volume cache imports (several seconds of start-up).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Atlas": "atlas",
    "load_atlas": "atlas",
    "region_mask": "atlas",
    "resample_atlas": "atlas",
    "template_path": "atlas",
    "VolumeCacheDataset": "volume_cache",
}

__all__ = [*_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
