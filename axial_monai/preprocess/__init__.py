"""Preprocessing of raw T1w MRI onto an MNI152 template grid: bias field, registration, brain extraction.

Two profiles (:data:`PROFILES`): ``fast`` (deepbet, N4 on 2 mm, greedy: :mod:`.fast`) and ``paper`` (N4, ANTs
SyNQuick: :func:`preprocess_t1w`); every result goes through the QC gate (:mod:`.gate`). Use
:func:`preprocess_bids` for a Clinica BIDS tree (and :func:`axial_monai.preprocess_scans.preprocess_scans` for
files, folders and DICOM series) from Python, or ``axial-monai preprocess`` from a shell.

The path helpers (:mod:`.bids`) and the QC table (:mod:`.qc`) are imported eagerly; the ANTs-based parts
(:mod:`.pipeline`, :mod:`.batch`, :mod:`.templates`) are imported on first use. The output layout itself is
:mod:`axial_monai.derivatives`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .bids import Scan, derivative_path, find_t1w_scans, parse_shard, pipeline_dir, select_shard
from .gate import DEFAULT_GATE, QCGate
from .qc import collect_qc

_LAZY = {
    "TRANSFORMS": "pipeline",
    "PreprocessSummary": "batch",
    "preprocess_bids": "batch",
    "preprocess_t1w": "pipeline",
    "preprocess_scan": "pipeline",
    "PROFILES": "pipeline",
    "read_t1w": "pipeline",
    "ants_environment": "pipeline",
    "resolve_transform": "pipeline",
    "DEFAULT_TEMPLATE": "templates",
    "TEMPLATES": "templates",
    "Template": "templates",
    "load_template": "templates",
}

__all__ = [
    "DEFAULT_GATE",
    "QCGate",
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
