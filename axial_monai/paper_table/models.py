"""The models of the AXIAL paper's tables, as settings of the bundle's training config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..crossval.runner import bundle_config

__all__ = ["MODELS", "REFERENCE", "STARTS", "Model", "model_overrides"]


@dataclass(frozen=True)
class Model:
    """One model of the table: how the bundle's training config becomes it.

    Attributes:
        label: its name in the table.
        configs: shipped configs merged after ``train.json`` (e.g. ``("triplanar",)``).
        overrides: bundle settings that select the network.
        slice_training: train on single slices (the 2D majority-vote baseline): a slice sampler is appended to
            ``train#augmentation``.
    """

    label: str
    configs: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)
    slice_training: bool = False


#: the models of the AXIAL paper's tables, by the name used for their folders.
MODELS: dict[str, Model] = {
    "axial": Model("AXIAL (slice attention)"),
    "majority_vote_2d": Model(
        "2D slices, majority vote",
        overrides={"network_spec#_target_": "axial_monai.networks.SliceClassifier2D"},
        slice_training=True,
    ),
    "mean_pool": Model(
        "mean pooling of slices", overrides={"network_spec#_target_": "axial_monai.networks.MeanPoolNet"}
    ),
    "slice_transformer": Model(
        "slice transformer", overrides={"network_spec#_target_": "axial_monai.networks.SliceTransformerNet"}
    ),
    "densenet3d": Model(
        "3D DenseNet121",
        overrides={
            "network_spec": {
                "_target_": "DenseNet121",
                "_mode_": "callable",
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": "$len(@class_names)",
            }
        },
    ),
    "triplanar": Model("tri-planar AXIAL", configs=("triplanar",)),
}
#: the model every other one is compared with.
REFERENCE = "axial"
_SLICE_SAMPLER = {
    "_target_": "axial_monai.transforms.RandSliceSampled",
    "keys": "image",
    "plane": "@plane",
    "num_slices": "@num_slices",
}
STARTS = {
    "imagenet": "ImageNet only (the backbone's `pretrained` setting)",
    "double_transfer": "double transfer (from the main task's same fold)",
}
_LEVEL = "subject"  # one scan per subject: the pairs of the tests are independent


def model_overrides(model: Model, config_files: Sequence[str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle settings of ``model``: ``overrides``, then the model's own; for slice training, the config's
    ``train#augmentation`` (after both) with the slice sampler appended."""
    settings = {**overrides, **model.overrides}
    if model.slice_training:
        augmentation = bundle_config(config_files, settings)["train"]["augmentation"]
        settings["train#augmentation"] = [*augmentation, _SLICE_SAMPLER]
    return settings
