"""Where the files of a trained model are: in a run folder, and in an exported bundle."""

from __future__ import annotations

from .json_settings import FILES

__all__ = ["BundleLayout"]


class BundleLayout:
    """File names of an exported bundle, relative to its folder.

    The weights are a plain state dict (``models/model.pt``, what the model zoo's ``ckpt_export`` loads as it is);
    the run settings are JSON beside them, and the volumes they refer to (template, brain mask, the mean control
    scan when it is shared) are NIfTI files: a bundle holds data only, nothing that unpickles into code.
    """

    MODELS = "models"
    MODEL = f"{MODELS}/model.pt"
    SETTINGS = f"{MODELS}/run_settings.json"
    TEMPLATE = f"{MODELS}/{FILES['template']}"
    BRAIN_MASK = f"{MODELS}/{FILES['mask']}"
    CONTROL_MEAN = f"{MODELS}/{FILES['controls']}"
    TORCHSCRIPT = "models/model.ts"
    METADATA = "configs/metadata.json"
