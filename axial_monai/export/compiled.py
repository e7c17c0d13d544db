"""``models/model.ts``: the trained network compiled with TorchScript, shipped only when it is the eager network.

``model.ts`` is self-contained, so that MONAI Deploy's ``MonaiBundleInferenceOperator`` (or any TorchScript runtime)
needs nothing of this package: it takes the raw intensities of a brain-extracted volume on the run's grid and
normalises them itself (:class:`NormalizedInputNetwork`, the arithmetic of the bundle's ``RobustNormalizeIntensity``),
and its ``extra/inference.json`` (:func:`deploy_config`) loads and orients a volume with core MONAI transforms only,
in one flat top-level list (the SDK drops only top-level ``LoadImage`` items).

The network is scripted (``torch.jit.script``, the model zoo's ``ckpt_export`` default) from the networks of this
package, which are built locked to the run's input grid (``spatial_shape``): the compiled module raises an error
naming that grid for any other input shape, as the eager network does. Before it is written, the compiled module is
run next to the eager one on inputs on the grid (its probabilities must agree to :data:`TOLERANCE`) and off it (it
must refuse); otherwise nothing is shipped. The file carries the bundle's ``metadata.json`` and ``inference.json``
(``extra/``, as ``ckpt_export`` writes them) but none of the source-location records TorchScript keeps for
tracebacks, which name files on the exporting machine.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import save_net_with_metadata
from torch import nn

from ..errors import InputError
from ..io import atomic_path
from ..transforms.intensity import RobustNormalizeIntensity, normalize_foreground

__all__ = [
    "TOLERANCE",
    "CompiledModelError",
    "NormalizedInputNetwork",
    "compile_network",
    "deploy_config",
    "write_torchscript",
]

logger = logging.getLogger(__name__)

#: the largest difference in probability allowed between the compiled and the eager network on the input grid.
TOLERANCE = 1e-5


class CompiledModelError(RuntimeError):
    """The compiled network is not the eager one (another output on its grid, or an answer off it)."""


class NormalizedInputNetwork(nn.Module):
    """``network`` behind the intensity normalisation of its inputs: raw volumes in, logits out.

    Each volume ``(1, X, Y, Z)`` of the batch is normalised as the bundle's loading chain does it
    (:class:`~axial_monai.transforms.RobustNormalizeIntensity` with ``normalizer``'s settings, foreground = voxels
    above its threshold), then the batch goes through ``network``.

    Input ``(B, 1, X, Y, Z)`` raw intensities (brain-extracted, on the network's grid); output logits ``(B, C)``.
    """

    def __init__(self, network: nn.Module, normalizer: RobustNormalizeIntensity) -> None:
        super().__init__()
        self.network = network
        self.mode, self.lower, self.upper = normalizer.mode, float(normalizer.lower), float(normalizer.upper)
        self.threshold = float(normalizer.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        volumes = []
        for volume in x.float().unbind(0):
            if not bool(torch.isfinite(volume).all()):
                raise ValueError("the image contains NaN or infinite values")
            fg = volume > self.threshold
            if int(fg.sum()) < 2:
                raise ValueError(f"no foreground voxels above {self.threshold}; is the image empty?")
            volumes.append(normalize_foreground(volume, fg, self.mode, self.lower, self.upper))
        return self.network(torch.stack(volumes))


def _check_inputs(spatial_shape: Sequence[int], seed: int) -> torch.Tensor:
    """Two raw-like volumes ``(2, 1, X, Y, Z)``: intensities in [0, 1000) in a central box, 0 around it."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.zeros(2, 1, *spatial_shape)
    box = tuple(slice(int(s) // 6, int(s) - int(s) // 6) for s in spatial_shape)
    inputs[(slice(None), slice(None), *box)] = 1000 * torch.rand(2, 1, *inputs[0, 0][box].shape, generator=generator)
    return inputs


def compile_network(
    network: nn.Module, spatial_shape: Sequence[int], seed: int = 0, normalizer: RobustNormalizeIntensity | None = None
) -> torch.jit.ScriptModule:
    """``network`` (in eval mode) scripted, after checking that it is the same network and keeps its grid.

    Args:
        network: a network of this package built with ``spatial_shape`` (it refuses other grids), weights loaded.
        spatial_shape: its input grid ``(X, Y, Z)``.
        seed: of the random check inputs.
        normalizer: compile the network behind this normalisation (:class:`NormalizedInputNetwork`); the eager
            reference is then ``network(normalizer(volume))`` on raw volumes, volume by volume.

    Raises:
        CompiledModelError: if the scripted module's probabilities differ by more than :data:`TOLERANCE` from the
            eager network's on two inputs on the grid, or it returns anything for an input off the grid.
    """
    network = network.eval()
    module = network if normalizer is None else NormalizedInputNetwork(network, normalizer).eval()
    with warnings.catch_warnings():  # TorchScript's deprecation notice: the model zoo and MONAI Deploy still load it
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(module)
    inputs = _check_inputs(spatial_shape, seed)
    if normalizer is None:  # the network's own input range
        inputs = inputs / 1000
    with torch.no_grad():
        prepared = inputs if normalizer is None else torch.stack([normalizer(volume) for volume in inputs])
        eager = torch.softmax(network(prepared), dim=1)
        compiled = torch.softmax(scripted(inputs), dim=1)
    gap = float((eager - compiled).abs().max())
    if not gap <= TOLERANCE:
        raise CompiledModelError(f"the scripted network differs from the eager one by {gap:.2e} in probability.")
    off_grid = 1000 * torch.rand(1, 1, *[int(s) + (1 if i == 0 else 0) for i, s in enumerate(spatial_shape)])
    try:
        with torch.no_grad():
            scripted(off_grid)
    except (torch.jit.Error, InputError) as err:
        if str(list(spatial_shape)) not in str(err):
            raise CompiledModelError(
                f"the scripted network refuses other grids without naming its own: {err}"
            ) from None
        return scripted
    raise CompiledModelError(f"the scripted network answers for a volume of shape {list(off_grid.shape[2:])}.")


def _without_source_records(path: Path) -> None:
    """Drop the ``*.debug_pkl`` records (source file paths and lines) from a TorchScript archive, in place."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info.filename)) for info in archive.infolist()]
    with atomic_path(path, suffix=".ts") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for info, data in members:
            if not info.filename.endswith(".debug_pkl"):
                archive.writestr(info, data)


def deploy_config() -> dict[str, Any]:
    """The ``extra/inference.json`` of ``model.ts``: core MONAI transforms in one flat top-level list (load, channel
    first, RAS, float32), the plain inferer, and a softmax over the classes; nothing of this package."""
    image = "image"
    steps = [
        {"_target_": "LoadImaged", "keys": image, "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": image},
        {"_target_": "Orientationd", "keys": image, "axcodes": "RAS"},
        {"_target_": "EnsureTyped", "keys": image, "dtype": "$torch.float32"},
    ]
    softmax = {"_target_": "Activations", "softmax": True}  # the SDK passes the first item of the batch: (C,)
    return {
        "imports": ["$import torch"],
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "preprocessing": {"_target_": "Compose", "transforms": steps},
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {"_target_": "Compose", "transforms": [softmax]},
    }


def deploy_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle's metadata as ``model.ts`` carries it: its input is the raw intensities of a brain-extracted
    volume on the grid (the model normalises them), its output the class probabilities after ``postprocessing``."""
    out = json.loads(json.dumps(metadata))
    image = out["network_data_format"]["inputs"]["image"]
    image["value_range"] = []
    image["description"] = (
        "raw intensities of a brain-extracted T1 volume on the model's grid (RAS); the model normalises them itself"
    )
    return out


def write_torchscript(
    network: nn.Module,
    spatial_shape: Sequence[int],
    path: str | os.PathLike,
    metadata: Mapping[str, Any],
    normalizer: RobustNormalizeIntensity,
) -> Path:
    """Write ``network`` behind ``normalizer``, compiled (:func:`compile_network`), to ``path``, with
    :func:`deploy_metadata` and :func:`deploy_config` inside (``extra/metadata.json``, ``extra/inference.json``).

    Raises:
        CompiledModelError: as :func:`compile_network`; nothing is written then.
    """
    scripted = compile_network(network, spatial_shape, normalizer=normalizer)
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        save_net_with_metadata(
            scripted,
            str(path),
            include_config_vals=False,
            append_timestamp=False,
            meta_values=deploy_metadata(metadata),
            more_extra_files={"inference.json": json.dumps(deploy_config()).encode()},
        )
    _without_source_records(path)
    return path
