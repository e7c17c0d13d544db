"""File output of axial-monai: atomic writers, NaN-safe JSON and the NIfTI file stem.

Every writer here goes through :func:`atomic_path`: the content is written to a hidden temporary file in the
target's folder (``.<name>.<random>.tmp<suffix>``) and then moved onto the target with ``os.replace``, which is
atomic on POSIX. A killed process therefore leaves either the old file or the new one under the target name,
never a half-written file, and readers (a resumed run, another shard, another rank) never see a partial file.
Parent folders are created.

Example:
    >>> write_json("out/metrics.json", {"auc": float("nan")})   # written as {"auc": null}
    >>> write_csv("out/predictions.csv", frame)
    >>> nifti_stem("/data/sub-01_T1w.nii.gz")
    'sub-01_T1w'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "NIFTI_SUFFIXES",
    "atomic_path",
    "file_digest",
    "json_safe",
    "json_text",
    "nifti_stem",
    "save_checkpoint",
    "write_csv",
    "write_json",
    "write_nifti",
    "write_png",
    "write_text",
]

#: file endings of NIfTI images, longest first.
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def nifti_stem(path: str | os.PathLike) -> str:
    """File name of ``path`` without its ``.nii.gz`` / ``.nii`` ending (other names are returned unchanged)."""
    name = os.path.basename(os.fspath(path))
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", clean_stale: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, move it onto ``path``.

    Args:
        path: the target file.
        suffix: ending of the temporary file, for writers that choose the format by extension
            (e.g. ``".nii.gz"``, ``".png"``).
        clean_stale: first delete temporary files of ``path`` left by a killed writer. Only for targets that a
            single process writes (else it could delete another writer's file in progress).

    Yields:
        the temporary path: an empty file, created so that its name is reserved; write over it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if clean_stale:
        for stale in target.parent.glob(f".{target.name}.*.tmp{suffix}"):
            stale.unlink(missing_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(handle)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (0600); outputs get the usual mode
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of the content of the file ``path`` (read in 1 MiB blocks), ``algorithm`` of :mod:`hashlib`."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def json_safe(value: Any) -> Any:
    """``value`` with every float NaN (also inside dicts, lists and tuples) replaced by ``None``.

    JSON has no NaN: ``json.dumps`` would write the non-standard token ``NaN``, which strict readers reject. A NaN
    here means "not defined" (e.g. the AUC of a split with one class), which is what ``null`` says.
    """
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def json_text(value: Any, indent: int | None = 2) -> str:
    """NaN-safe JSON text of ``value`` (see :func:`json_safe`), ending with a newline; other objects via ``str``."""
    return json.dumps(json_safe(value), indent=indent, default=str) + "\n"


def write_json(path: str | os.PathLike, value: Any, indent: int | None = 2) -> None:
    """Write ``value`` as NaN-safe JSON (:func:`json_text`) to ``path`` atomically."""
    write_text(path, json_text(value, indent=indent))


def write_csv(path: str | os.PathLike, frame: Any, index: bool = False, **kwargs: Any) -> None:
    """Write a pandas ``DataFrame`` with ``frame.to_csv`` to ``path`` atomically (no index column by default).

    Args:
        path: target file.
        frame: the table.
        index: write the index as a column.
        kwargs: more ``DataFrame.to_csv`` arguments, e.g. ``sep="\\t"``, ``na_rep="n/a"``.
    """
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index, **kwargs)


def write_nifti(path: str | os.PathLike, image: Any) -> None:
    """Save a nibabel image to ``path`` (``.nii`` or ``.nii.gz``, chosen by the name) atomically."""
    import nibabel as nib  # imported here: most users of this module write no images

    suffix = next((s for s in NIFTI_SUFFIXES if os.fspath(path).endswith(s)), ".nii.gz")
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(image, tmp)


def write_png(path: str | os.PathLike, figure: Any, **kwargs: Any) -> None:
    """Save a figure as PNG to ``path`` atomically.

    Args:
        path: target file.
        figure: anything with a matplotlib-style ``savefig(filename, **kwargs)``: a ``matplotlib.figure.Figure`` or a
            nilearn display (which adds its own background colour).
        kwargs: more ``savefig`` arguments (e.g. ``dpi``).
    """
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, **kwargs)


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Save a checkpoint (a state dict, or a dict of state dicts) with ``torch.save`` to ``path`` atomically.

    Read it back with :func:`axial_monai.networks.checkpoints.load_checkpoint` (``weights_only=True``): only
    tensors and plain containers are stored.
    """
    import torch  # imported here: preprocessing and table code need no torch

    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
