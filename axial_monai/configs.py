"""Where the bundle's shipped configs are: ``bundle/configs`` of the repository, or their installed copy.

The repository keeps the MONAI model-zoo layout (``bundle/configs/*.json``). ``setup.cfg`` also installs those
files as the package data ``axial_monai/_bundle_configs`` (the same files, mapped, not copied in the repository),
so a regular ``pip install`` finds them too. A source checkout or an editable install uses the repository folder.

Example:
    >>> from monai.bundle import ConfigWorkflow
    >>> ConfigWorkflow(config_file=str(config_path("train")), meta_file=str(config_path("metadata")), ...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CONFIG_DIR", "config_path", "flag"]

_INSTALLED = Path(__file__).resolve().parent / "_bundle_configs"
_REPOSITORY = Path(__file__).resolve().parents[1] / "bundle" / "configs"
#: the folder of the shipped configs (``train.json``, ``inference.json``, ``metadata.json``, ``logging.conf``, ...).
CONFIG_DIR = _INSTALLED if _INSTALLED.is_dir() else _REPOSITORY


def config_path(name: str) -> Path:
    """Path of a shipped config file.

    Args:
        name: file name in :data:`CONFIG_DIR`; without an ending, ``.json`` is added (``"train"`` ->
            ``train.json``, ``"logging.conf"`` stays).

    Raises:
        FileNotFoundError: if there is no such file (the message lists the available ones).
    """
    file_name = name if Path(name).suffix else f"{name}.json"
    path = CONFIG_DIR / file_name
    if not path.is_file():
        available = sorted(p.name for p in CONFIG_DIR.glob("*")) if CONFIG_DIR.is_dir() else []
        raise FileNotFoundError(f"No shipped config {file_name!r} in {CONFIG_DIR}; available: {available}.")
    return path


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def flag(value: Any, name: str) -> bool:
    """A yes/no bundle setting as a bool: ``python -m monai.bundle run ... --resume true`` passes the string
    ``"true"`` (python-fire keeps lower-case words as strings), and ``bool("false")`` would be True.

    Raises:
        SettingsError: for anything but a bool, 0/1 or true/false/yes/no (any case).
    """
    from .errors import SettingsError

    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise SettingsError(f"{name} must be true or false, not {value!r}.")
