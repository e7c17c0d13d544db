"""Preprocessing of raw T1w MRI (Clinica BIDS) with ANTsPy: N4 -> MNI152 registration -> brain extraction.

Use :func:`preprocess_bids` from Python or ``python -m axial_monai.preprocess BIDS_DIR OUT_DIR`` from a shell.

The path helpers (:mod:`.bids`) and the QC table (:mod:`.qc`) are imported eagerly; the ANTs-based parts
(:mod:`.pipeline`, :mod:`.templates`) are imported on first use. The output layout itself is
:mod:`axial_monai.derivatives`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .bids import Scan, derivative_path, find_t1w_scans, parse_shard, pipeline_dir, select_shard
from .qc import collect_qc

_LAZY = {
    "TRANSFORMS": "pipeline",
    "PreprocessSummary": "pipeline",
    "preprocess_bids": "pipeline",
    "preprocess_t1w": "pipeline",
    "read_t1w": "pipeline",
    "ants_environment": "pipeline",
    "resolve_transform": "pipeline",
    "DEFAULT_TEMPLATE": "templates",
    "TEMPLATES": "templates",
    "Template": "templates",
    "load_template": "templates",
}

__all__ = [
    "Scan",
    "collect_qc",
    "derivative_path",
    "find_t1w_scans",
    "parse_shard",
    "pipeline_dir",
    "select_shard",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
