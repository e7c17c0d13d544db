"""The configs of an exported bundle: the shipped ones, with the bundle's overrides and its own code.

Each exported config is the shipped config of the same name (``bundle/configs``) with a few top-level settings
overridden: paths relative to ``bundle_root``, the bundle's checkpoint, and for fine-tuning the run's network and
classes. Every component whose ``_target_`` is in this package is then pointed at the bundle's copy of the code
(``scripts.<module>``, :mod:`.vendor`) and ``_requires_`` the item that puts ``bundle_root`` first on ``sys.path``,
so the configs run from any folder (``--bundle_root``), also under ``verify_net_in_out`` and ``ckpt_export``, which
add no path themselves.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from ..configs import config_path
from ..run import RunSettings
from .vendor import OWN, PACKAGE

__all__ = ["CONFIG_NAMES", "ON_PATH", "bundle_configs", "retarget"]

#: the configs a bundle carries (``configs/<name>.json``).
CONFIG_NAMES = ("inference", "explain", "train", "evaluate", "multi_gpu_train")
#: the item that puts the bundle's folder first on ``sys.path`` (required by every component using its code).
ON_PATH = "scripts_on_path"
_IMPORTS = ["$import os", "$import sys", "$import torch", "$import monai"]
_BUNDLE_MODEL = "$os.path.join(@bundle_root, 'models', 'model.pt')"
#: network arguments that are top-level settings of train.json (overridable by name when fine-tuning).
_TOP_LEVEL = ("backbone", "plane", "num_slices", "image_size", "dropout", "freeze")


def _shipped(name: str) -> dict[str, Any]:
    return json.loads(config_path(name).read_text())


def retarget(config: Any) -> Any:
    """``config`` with every ``_target_`` of this package in the bundle's ``scripts`` package, requiring
    :data:`ON_PATH` (a copy; other items unchanged)."""
    if isinstance(config, list):
        return [retarget(value) for value in config]
    if not isinstance(config, Mapping):
        return config
    out = {key: retarget(value) for key, value in config.items()}
    target = out.get("_target_")
    if isinstance(target, str) and target.split(".")[0] == OWN:
        rest = {key: value for key, value in out.items() if key != "_target_"}
        out = {"_target_": PACKAGE + target[len(OWN) :], "_requires_": f"@{ON_PATH}", **rest}
    return out


def _header(config: dict[str, Any], description: str) -> dict[str, Any]:
    """``config`` with the bundle's description, ``bundle_root`` and the item that puts it on ``sys.path``."""
    imports = list(config.get("imports", []))
    imports += [line for line in _IMPORTS if line not in imports]
    config.update(
        {
            "_desc_": description,
            "imports": imports,
            "bundle_root": ".",
            ON_PATH: "$sys.path.insert(0, os.path.abspath(@bundle_root))",
        }
    )
    return config


def _inference() -> dict[str, Any]:
    config = _header(
        _shipped("inference"),
        "Predictions for brain-extracted T1 scans registered to models/template.nii.gz: python -m monai.bundle run "
        "inferring --config_file configs/inference.json --input SCANS (a folder, NIfTI files or a datalist JSON). "
        "Results in <output_dir>/inference/predictions.csv; scans off the model's grid or not brain-extracted are "
        "skipped (skipped.csv) and the run then ends with exit status 1.",
    )
    config.update({"output_dir": "$os.path.join(@bundle_root, 'eval')", "ckpt_path": _BUNDLE_MODEL})
    return config


def _explain() -> dict[str, Any]:
    return _shipped("explain")


def _fine_tuning(settings: RunSettings) -> dict[str, Any]:
    """train.json for training further from ``models/model.pt`` on the receiver's data, with the run's network."""
    config = _header(
        _shipped("train"),
        "Training further from this bundle's model on your data (fine-tuning): python -m monai.bundle run training "
        "--config_file configs/train.json --dataset_dir DATA [--datalist DATA/datalist.json] --output_dir RUN. The "
        "network, input grid, template and intensity mode are the model's (scans must be registered to "
        "models/template.nii.gz); the head is trained anew for class_names.",
    )
    kwargs = {k: v for k, v in settings.network_kwargs.items() if k not in ("pretrained", "num_classes")}
    top = {k: kwargs[k] for k in _TOP_LEVEL if k in kwargs}
    spec: dict[str, Any] = {"_target_": settings.network, "_mode_": "callable", "num_classes": "$len(@class_names)"}
    spec.update({k: (f"@{k}" if k in top else v) for k, v in kwargs.items()})
    if "pretrained" in settings.network_kwargs:
        spec["pretrained"] = "none"  # every weight comes from models/model.pt
    config.update(
        {
            "output_dir": "$os.path.join(@bundle_root, 'runs', 'fine_tune')",
            "dataset_dir": None,
            "datalist": None,
            "bundle_ckpt": _BUNDLE_MODEL,
            "init_ckpt": "@bundle_ckpt",
            "class_names": list(settings.class_names),
            "positive_class": settings.positive_class,
            "intensity": settings.intensity,
            **top,
            "network_spec": spec,
            # a DataLoader cannot shuffle nothing: the config must resolve before the receiver names the data
            "train#dataloader#shuffle": "$len(@train#dataset) > 0",
            "run_settings": {
                "_target_": f"{OWN}.run.RunSettings.for_fine_tuning",
                "ckpt_path": "@bundle_ckpt",
                "network": "@network_spec",
                "class_names": "@class_names",
                "positive_class": "@positive_class",
                "dataset_dir": "@dataset_dir",
                "datalist": "@datalist",
            },
        }
    )
    for key in ("template", "template_mask"):
        config.pop(key, None)
    return config


def _described(name: str, description: str) -> dict[str, Any]:
    """The shipped config ``name`` with the bundle's description."""
    return {**_shipped(name), "_desc_": description}


def _evaluate() -> dict[str, Any]:
    description = (
        "Merged over train.json: the metrics of this bundle's model (or --ckpt_path) on your labelled data: python "
        "-m monai.bundle run evaluating --config_file \"['configs/train.json','configs/evaluate.json']\" "
        "--dataset_dir DATA [--datalist ...] [--eval_split test] --output_dir OUT"
    )
    return {**_described("evaluate", description), "ckpt_path": "@bundle_ckpt"}


def _multi_gpu() -> dict[str, Any]:
    description = (
        "Merged over train.json: fine-tuning on N GPUs (DDP): torchrun --nproc_per_node=N -m monai.bundle run "
        "training --config_file \"['configs/train.json','configs/multi_gpu_train.json']\" --dataset_dir DATA "
        "--output_dir RUN"
    )
    return _described("multi_gpu_train", description)


def bundle_configs(settings: RunSettings) -> dict[str, dict[str, Any]]:
    """``{name: config}`` of the bundle (:data:`CONFIG_NAMES`), with this package's targets (:func:`retarget` points
    them at the bundle's code)."""
    configs = {
        "inference": _inference(),
        "explain": _explain(),
        "train": _fine_tuning(settings),
        "evaluate": _evaluate(),
        "multi_gpu_train": _multi_gpu(),
    }
    return copy.deepcopy(configs)
