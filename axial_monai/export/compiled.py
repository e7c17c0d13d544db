"""``models/model.ts``: the trained network compiled with TorchScript, shipped only when it is the eager network.

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

__all__ = ["TOLERANCE", "CompiledModelError", "compile_network", "write_torchscript"]

logger = logging.getLogger(__name__)

#: the largest difference in probability allowed between the compiled and the eager network on the input grid.
TOLERANCE = 1e-5


class CompiledModelError(RuntimeError):
    """The compiled network is not the eager one (another output on its grid, or an answer off it)."""


def compile_network(network: nn.Module, spatial_shape: Sequence[int], seed: int = 0) -> torch.jit.ScriptModule:
    """``network`` (in eval mode) scripted, after checking that it is the same network and keeps its grid.

    Args:
        network: a network of this package built with ``spatial_shape`` (it refuses other grids), weights loaded.
        spatial_shape: its input grid ``(X, Y, Z)``.
        seed: of the random check inputs.

    Raises:
        CompiledModelError: if the scripted module's probabilities differ by more than :data:`TOLERANCE` from the
            eager network's on two inputs on the grid, or it returns anything for an input off the grid.
    """
    network = network.eval()
    with warnings.catch_warnings():  # TorchScript's deprecation notice: the model zoo and MONAI Deploy still load it
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(network)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(2, 1, *spatial_shape, generator=generator)
    with torch.no_grad():
        eager = torch.softmax(network(inputs), dim=1)
        compiled = torch.softmax(scripted(inputs), dim=1)
    gap = float((eager - compiled).abs().max())
    if not gap <= TOLERANCE:
        raise CompiledModelError(f"the scripted network differs from the eager one by {gap:.2e} in probability.")
    off_grid = torch.rand(1, 1, *[int(s) + (1 if i == 0 else 0) for i, s in enumerate(spatial_shape)])
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


def write_torchscript(
    network: nn.Module,
    spatial_shape: Sequence[int],
    path: str | os.PathLike,
    metadata: Mapping[str, Any],
    configs: Mapping[str, Mapping[str, Any]],
) -> Path:
    """Write ``network`` compiled (:func:`compile_network`) to ``path``, with ``metadata`` and ``configs``
    (``{name: config}``, stored as ``extra/<name>.json``) inside.

    Raises:
        CompiledModelError: as :func:`compile_network`; nothing is written then.
    """
    scripted = compile_network(network, spatial_shape)
    path = Path(path)
    extra = {f"{name}.json": json.dumps(config).encode() for name, config in configs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        save_net_with_metadata(
            scripted,
            str(path),
            include_config_vals=False,
            append_timestamp=False,
            meta_values=dict(metadata),
            more_extra_files=extra,
        )
    _without_source_records(path)
    return path
