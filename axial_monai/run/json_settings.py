"""The run settings as an exported bundle carries them: ``models/run_settings.json`` and NIfTI volumes beside it.

A bundle is meant to be received, often on a machine with patient data, so it holds data only: the weights are a
plain state dict, and the settings are JSON checked against :data:`SCHEMA` (known keys, types and ranges; file names
without folders) before anything is built from them. The volumes it names (template, brain mask, mean control scan)
must lie beside it, on the settings' grid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import nibabel as nib
import numpy as np

from ..errors import InputError, one_line
from ..input_check import Grid
from ..layout import SETTINGS_FILES

__all__ = ["SCHEMA", "FILES", "MAX_VOXELS", "write_json_settings", "read_json_settings"]

#: the largest ``run_settings.json`` read (a real one is about 2 KB).
MAX_JSON_BYTES = 2**20
#: the most voxels of an input grid (0.5 mm over a whole head stays below it).
MAX_VOXELS = 512**3
#: the volumes of the settings, as the files beside ``run_settings.json``.
FILES = SETTINGS_FILES
_FILE = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+\.nii(\.gz)?$", "not": {"pattern": r"^\.\.?$"}}
_VALUE = {"type": ["string", "number", "boolean", "null", "array"], "items": {"type": ["string", "number", "boolean"]}}
_TRIPLE = {"type": "array", "minItems": 3, "maxItems": 3}
#: the JSON schema of ``run_settings.json``: anything else is refused before it is used.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["format", "network", "class_names", "positive_class", "intensity", "grid", "template"],
    "properties": {
        "format": {"type": "integer", "minimum": 1},
        "network": {
            "type": "object",
            "additionalProperties": False,
            "required": ["class", "kwargs"],
            "properties": {
                "class": {"type": "string", "pattern": r"^(axial_monai|monai)\.networks(\.[A-Za-z_][A-Za-z0-9_]*)+$"},
                "kwargs": {"type": "object", "additionalProperties": _VALUE},
            },
        },
        "class_names": {
            "type": "array",
            "minItems": 2,
            "maxItems": 1000,
            "uniqueItems": True,
            "items": {"type": "string", "minLength": 1, "maxLength": 200},
        },
        "positive_class": {"type": "integer", "minimum": 0},
        "task": {"type": "string", "maxLength": 1000},
        "intensity": {"enum": ["percentile", "zscore"]},
        "grid": {
            "type": "object",
            "additionalProperties": False,
            "required": ["shape", "affine"],
            "properties": {
                "shape": {**_TRIPLE, "items": {"type": "integer", "minimum": 1, "maximum": 1024}},
                "spacing": {**_TRIPLE, "items": {"type": "number", "exclusiveMinimum": 0}},
                "orientation": {"type": "string", "pattern": "^[RLAPSI]{3}$"},
                "affine": {
                    "type": "array",
                    "minItems": 4,
                    "maxItems": 4,
                    "items": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"}},
                },
            },
        },
        "template": {
            "type": "object",
            "additionalProperties": False,
            "required": ["image", "mask"],
            "properties": {"source": {"type": "string", "maxLength": 1000}, "image": _FILE, "mask": _FILE},
        },
        "controls": {
            "type": "object",
            "additionalProperties": False,
            "required": ["mean", "count"],
            "properties": {"mean": _FILE, "count": {"type": "integer", "minimum": 1}},
        },
        "preprocessing": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"profile": {"enum": ["fast", "paper", None]}},
        },
        "versions": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 100}},
        "created": {"type": "string", "maxLength": 100},
    },
}


def write_json_settings(state: Mapping[str, Any], volumes: Mapping[str, nib.Nifti1Image], folder: Path) -> Path:
    """Write ``run_settings.json`` (``state``: :meth:`~axial_monai.run.RunSettings.state_dict` without its arrays and
    data paths) and the ``volumes`` (keys of :data:`FILES`) into ``folder``; returns the JSON's path."""
    from ..io import write_json, write_nifti

    for key, image in volumes.items():
        write_nifti(folder / FILES[key], image)
    path = folder / "run_settings.json"
    write_json(path, dict(state), indent=4)
    return path


def _volume(folder: Path, name: str, grid: Grid, source: Path) -> np.ndarray:
    """The voxels of ``folder/name``, after its header (read alone) proved it is on ``grid``: a file cannot make
    this read more than the grid's voxels."""
    path = folder / name
    try:
        image = nib.load(path)
        shape, affine = tuple(image.shape), image.affine
    except Exception as err:  # noqa: BLE001 - any unreadable file is one line naming it
        raise InputError(f"{path}, named by {source}, cannot be read as NIfTI ({one_line(err)}).") from None
    problem = grid.mismatch(Grid.from_affine(shape, affine)) if len(shape) == 3 else f"is not 3D ({shape})"
    if problem:
        raise InputError(f"{path}, named by {source}, is not on the settings' {grid.describe()}: {problem}.")
    try:
        return np.asarray(image.dataobj, dtype=np.float32)
    except Exception as err:  # noqa: BLE001 - damaged voxel data
        raise InputError(f"{path}, named by {source}, cannot be read ({one_line(err)}).") from None


def read_json_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The run settings of ``run_settings.json`` as :meth:`~axial_monai.run.RunSettings.load_state_dict` takes them,
    after checking the JSON against :data:`SCHEMA` and reading the volumes it names.

    Raises:
        InputError: one line naming the file: not JSON, not valid against the schema, a positive class out of range,
            or a volume that is missing, unreadable or off the grid.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:  # refused before it is read
            raise ValueError(f"{path.stat().st_size} bytes, more than settings ever need ({MAX_JSON_BYTES})")
        state = json.loads(path.read_text())
        jsonschema.validate(state, SCHEMA)
    except (OSError, ValueError, jsonschema.ValidationError) as err:
        detail = err.message if isinstance(err, jsonschema.ValidationError) else one_line(err)
        where = "/".join(str(p) for p in getattr(err, "absolute_path", []))
        raise InputError(f"{path} is not valid run settings{f' at {where}' if where else ''}: {detail}.") from None
    if int(np.prod(state["grid"]["shape"])) > MAX_VOXELS:
        raise InputError(f"{path}: the grid {state['grid']['shape']} has more than {MAX_VOXELS} voxels.")
    if state["positive_class"] >= len(state["class_names"]):
        raise InputError(f"{path}: positive_class {state['positive_class']} is not a class of {state['class_names']}.")
    grid = Grid.from_dict(state["grid"])
    template = _volume(path.parent, state["template"]["image"], grid, path)
    mask = _volume(path.parent, state["template"]["mask"], grid, path)
    out = {**state, "template": {**state["template"], "image": np.round(template * 255).clip(0, 255).astype(np.uint8)}}
    out["template"]["mask"] = mask > 0.5
    if "controls" in state:
        mean = _volume(path.parent, state["controls"]["mean"], grid, path).astype(np.float16)
        out["controls"] = {"mean": mean, "count": state["controls"]["count"]}
    out["data"] = {"dataset_dir": None, "datalist": None}
    return out
