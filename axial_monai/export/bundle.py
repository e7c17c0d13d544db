"""``export_bundle``: a trained run written as a model-zoo bundle (see :mod:`axial_monai.export` for the layout)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..configs import config_path
from ..errors import SettingsError
from ..io import atomic_path, save_checkpoint, write_json, write_text
from ..layout import RunLayout, default_cache_root
from ..run import RunSettings, check_weights, load_weights
from ..run.layout import BundleLayout
from ..run.received import sign_manifest, write_manifest
from ..transforms.intensity import RobustNormalizeIntensity
from .compiled import CompiledModelError, write_torchscript
from .configs import bundle_configs, retarget
from .documents import (
    LARGE_FILE_BYTES,
    LICENSE_TEXT,
    MIN_CONTROLS,
    data_license,
    large_files,
    large_files_yaml,
    readme,
    requirements_txt,
)
from .metadata import bundle_metadata, name_problem, required_packages
from .vendor import config_modules, vendored_modules, write_package

__all__ = ["ExportedBundle", "export_bundle", "shared_settings"]

logger = logging.getLogger(__name__)


@dataclass
class ExportedBundle:
    """Where :func:`export_bundle` wrote the bundle.

    Attributes:
        folder: the bundle folder.
        archive: the zip of the folder (``None`` without ``make_zip``).
        large_files: bundle-relative paths listed in ``large_files.yml``.
        compiled: whether ``models/model.ts`` was written.
    """

    folder: Path
    archive: Path | None
    large_files: list[str]
    compiled: bool


def shared_settings(settings: RunSettings, with_control_mean: bool = False) -> RunSettings:
    """The run settings as a bundle carries them: no path of the training machine (data, template, local
    ``pretrained`` weights) and, unless ``with_control_mean``, no mean control scan (it is derived from subjects).

    Raises:
        SettingsError: for ``with_control_mean`` when the run has no mean, or one of fewer than
            :data:`~axial_monai.export.documents.MIN_CONTROLS` scans (too close to single subjects to share).
    """
    if with_control_mean and settings.control_count < MIN_CONTROLS:
        raise SettingsError(
            f"with_control_mean: the run's mean control scan averages {settings.control_count} scans, fewer than "
            f"{MIN_CONTROLS}: too close to single subjects to share. Export without it (the explanations then start "
            "from the template)."
        )
    kwargs = {k: ("none" if k == "pretrained" else v) for k, v in settings.network_kwargs.items()}
    return dataclasses.replace(
        settings,
        network_kwargs=kwargs,
        template_source=Path(settings.template_source).name,
        control_mean=settings.control_mean if with_control_mean else None,
        control_count=settings.control_count if with_control_mean else 0,
        dataset_dir=None,
        datalist=None,
        source=None,
        recipe=None,
    )


def _read_report(run_dir: str | None) -> dict[str, Any]:
    path = RunLayout(run_dir or "").metrics()
    return json.loads(path.read_text()) if path.is_file() else {}


def _local_traces(folder: Path, paths: list[str]) -> list[str]:
    """``"<file>: <path>"`` for every file of ``folder`` (gzip files aside) that names one of ``paths``."""
    needles = {p: p.encode() for p in paths if p and len(p) > 1}
    found = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".gz"):
        data = file.read_bytes()
        found += [f"{file.relative_to(folder)}: {p}" for p, needle in needles.items() if needle in data]
    return found


def _sender_paths(settings: RunSettings) -> list[str]:
    """Folders of the exporting machine that must not appear in a bundle."""
    candidates = [settings.run_dir, settings.dataset_dir, str(Path.home()), str(default_cache_root())]
    candidates += [str(Path(p).parent) for p in (settings.datalist, settings.template_source) if p]
    return sorted({str(Path(p).resolve()) for p in candidates if p and Path(p).resolve() != Path("/")})


def export_bundle(
    run: str | os.PathLike,
    out: str | os.PathLike,
    name: str | None = None,
    version: str = "0.1.0",
    changelog: str | None = None,
    make_zip: bool = True,
    torchscript: bool = True,
    overwrite: bool = False,
    with_control_mean: bool = False,
    url_base: str | None = None,
    large_file_bytes: int = LARGE_FILE_BYTES,
    sign_key: str | os.PathLike | None = None,
) -> ExportedBundle:
    """Write the model-zoo bundle of a trained run (see :mod:`axial_monai.export` for its layout).

    Args:
        run: the run folder (training ``output_dir``) or its ``models/model.pt``.
        out: the bundle folder to write; its name is the bundle's name unless ``name`` is given. Written in a
            temporary folder beside it and renamed when complete.
        name: bundle name, ``<data>_<modality>_<task>`` in the model zoo (default: the folder name of ``out``; another
            form is written with a warning).
        version: bundle version (metadata ``version``).
        changelog: the changelog entry of ``version`` (default: the export date and the run's task).
        make_zip: also write ``<out>.zip`` (the folder inside, as the model zoo distributes bundles).
        torchscript: also write ``models/model.ts`` (scripted; shipped only if it equals the eager network).
        overwrite: replace an existing ``out``.
        with_control_mean: ship the run's mean control scan (derived from training subjects: see the data licence;
            at least 20 scans), the explanations' default baseline; without it they start from the template.
        url_base: where the bundle's large files will be hosted (``large_files.yml`` gives ``<url_base>/<path>``).
        large_file_bytes: files larger than this are listed in ``large_files.yml`` (the zoo's 1024 KB).
        sign_key: an Ed25519 private key (PEM): sign ``manifest.json`` (``manifest.sig``).

    Returns:
        the :class:`ExportedBundle`.

    Raises:
        FileExistsError: if ``out`` exists and ``overwrite`` is false.
        SettingsError: for a bad version, or ``with_control_mean`` without a mean of enough scans.
        InputError: if the run's checkpoint has no run settings or its weights do not fit them.
        RuntimeError: if a file of the bundle would name a folder of this machine (nothing is written then).
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
    problem = name_problem(name)
    if problem:
        logger.warning(
            f"The bundle name {name!r} does not follow the model zoo's <data>_<modality>_<task> naming "
            f"(e.g. adni_mri_classification): {problem}."
        )
    shared = shared_settings(settings, with_control_mean)
    report = _read_report(settings.run_dir)
    configs = bundle_configs(shared)
    modules, imports = vendored_modules(config_modules(configs.values()))
    packages = required_packages(imports)
    created = datetime.date.today().isoformat()
    entry = changelog or f"exported on {created} from a {settings.task} training run (axial-monai {__version__})"
    metadata = bundle_metadata(shared, name, version, entry, report.get("metrics") or {}, packages)
    shipped = {key: retarget(config) for key, config in configs.items()}
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write_package(modules, work)
        save_checkpoint(work / BundleLayout.MODEL, weights)  # a plain state dict, as the model zoo loads it
        shared.write_json(work / BundleLayout.MODELS)  # run_settings.json, template, brain mask (+ mean control scan)
        for key, config in shipped.items():
            write_json(work / "configs" / f"{key}.json", config, indent=4)
        write_json(work / BundleLayout.METADATA, metadata, indent=4)
        shutil.copyfile(config_path("logging.conf"), work / "configs" / "logging.conf")
        write_text(work / "docs" / "data_license.txt", data_license(shared, settings.datalist))
        write_text(work / "docs" / "requirements.txt", requirements_txt(packages))
        write_text(work / "LICENSE", LICENSE_TEXT)
        compiled = torchscript and _compile(shared, weights, work / BundleLayout.TORCHSCRIPT, metadata)
        write_text(work / "docs" / "README.md", readme(name, shared, report, version, compiled, settings.datalist))
        large = large_files(work, url_base, large_file_bytes)
        if large and not url_base:
            logger.warning(
                f"{', '.join(e['path'] for e in large)} exceed the model zoo's {large_file_bytes // 1024} KB: "
                "large_files.yml lists them without a url. They are in the bundle, which works as it is; to publish "
                "it in the model zoo, export again with --url_base <where the files will be hosted>."
            )
        write_text(work / "large_files.yml", large_files_yaml(large))
        traces = _local_traces(work, _sender_paths(settings))
        if traces:
            raise RuntimeError(f"The bundle would name folders of this machine: {'; '.join(traces[:5])}.")
        write_manifest(work)  # every file's size and SHA-256: what the receiver checks first
        if sign_key is not None:
            sign_manifest(work, sign_key)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    archive = _zip(folder) if make_zip else None
    logger.info(f"bundle written to {folder}" + (f" and {archive}" if archive else ""))
    return ExportedBundle(folder, archive, [e["path"] for e in large], compiled)


def _compile(shared: RunSettings, weights: dict[str, Any], path: Path, metadata: dict[str, Any]) -> bool:
    """Write the TorchScript module if the network compiles into one that equals it; False (with a warning) if not."""
    network = shared.saved_network()
    network.load_state_dict(weights)
    try:
        write_torchscript(network, shared.grid.shape, path, metadata, RobustNormalizeIntensity(shared.intensity))
    except Exception as err:  # noqa: BLE001 - a network that does not compile (or not to itself) is not shipped
        reason = str(err) if isinstance(err, CompiledModelError) else f"it does not compile ({type(err).__name__})"
        logger.warning(f"No {path.name}: {reason}")
        return False
    return True


def _zip(folder: Path) -> Path:
    """``<folder>.zip`` holding ``<folder name>/...``, written atomically."""
    target = folder.with_suffix(".zip")
    with atomic_path(target, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, Path(folder.name) / path.relative_to(folder))
    return target
