"""Predictions (and explanations) for raw T1 scans in one call: preprocess what needs it, then run the bundle.

:func:`predict_scans` is what ``axial-monai predict SCAN... --model RUN_OR_BUNDLE`` does:

1. The model is a trained run (its folder or ``models/model.pt``) or an exported bundle (its ``models/model.pt``):
   the run settings in the checkpoint give the network, input grid, template and brain mask.
2. Each scan (NIfTI files, folders of them, folders of DICOM files: one scan per usable T1 series, see
   :mod:`axial_monai.data.inputs`) is checked with the model's :class:`~axial_monai.input_check.InputCheck`. A scan
   that passes (already on the model's grid and brain-extracted) is used as it is. Any other is preprocessed by
   :func:`~axial_monai.preprocess.pipeline.preprocess_scan` with the model's preprocessing profile (the one its
   training scans used; ``fast`` when it records none; ``profile`` overrides it), straight onto the model's grid.
   Results are cached by the SHA-256 of the input file and of the preprocessing settings (template and profile
   included) in ``<cache>/predict/``, so a second call reuses them, with a QC picture each. A scan whose
   registration fails the QC gate (:mod:`axial_monai.preprocess.gate`) is refused, in one line naming the figure,
   what to try and the picture.
3. The bundle's inference config (with ``explain=True``, inference + explain) runs once on all usable scans through
   ``monai.bundle.ConfigWorkflow``; the equivalent ``python -m monai.bundle run`` line is printed first.
4. Per scan, in ``<out>/<scan id>/``: ``prediction.json`` (probabilities per class, predicted class, input and
   preprocessed file, preprocessing metrics), ``overview.png`` (the scan, with the Integrated Gradients map when
   explained: the default voxel map), ``preprocessing_qc.png`` (a preprocessed scan's QC picture) and, with
   ``explain``, the maps and region tables of
   :class:`~axial_monai.handlers.InterpretabilityHandler`. ``<out>/predictions.csv`` has every scan,
   ``<out>/skipped.csv`` those that could not be used, one line each saying why.

An exported bundle is read as data (its ``models/model.pt``: weights and run settings); its configs and code are
never run: every model runs with this installation's code and shipped configs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

import axial_monai

from .configs import config_path, flag
from .data.datalist import SKIPPED_COLUMNS, check_nifti_header
from .data.inputs import ScanInput, gather_scans
from .errors import InputError, SettingsError
from .input_check import InputCheck
from .io import atomic_path, file_digest, write_csv, write_json, write_nifti
from .layout import BundleLayout, RunLayout
from .preprocess.gate import DEFAULT_GATE, QCRefusedError
from .run import RunSettings
from .run.received import open_bundle

__all__ = ["PredictModel", "Prediction", "resolve_model", "prepare_scan", "predict_scans"]

logger = logging.getLogger(__name__)

#: below this similarity to the template (squared correlation in the brain) the registration likely failed.
MIN_SIMILARITY_CC = 0.3


@dataclass
class PredictModel:
    """A model to predict with, and what its inputs must be.

    Attributes:
        kind: ``"run"`` or ``"bundle"``.
        path: the run's checkpoint or the bundle folder.
        check: the model's input check.
        template, brain_mask: NIfTI files of the registration template and its brain mask on the input grid.
        class_names: class names in label order.
        config_files: the inference config (the explain config is added for explanations).
        explain_config: the explain config merged over it.
        overrides: bundle settings that point the configs at this model.
        meta_file, logging_file: the bundle's metadata and logging config.
        profile: the preprocessing profile of the model's training scans, when its settings record it.
    """

    kind: str
    path: Path
    check: InputCheck
    template: Path
    brain_mask: Path
    class_names: list[str]
    config_files: list[str]
    explain_config: str
    overrides: dict[str, Any] = field(default_factory=dict)
    meta_file: str | None = None
    logging_file: str | None = None
    profile: str | None = None

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the template and brain mask (voxels and affines): what the preprocessing depends on."""
        digest = hashlib.sha256()
        for path in (self.template, self.brain_mask):
            digest.update(np.asarray(nib.load(path).dataobj).tobytes())
            digest.update(np.asarray(nib.load(path).affine).tobytes())
        return digest.hexdigest()


@dataclass
class Prediction(ScanInput):
    """The outcome for one scan (:class:`~axial_monai.data.inputs.ScanInput`): its prediction, or why it was skipped.

    ``image`` is the file the model took (the scan itself, or its preprocessed copy); ``qc_picture`` the QC picture
    of a scan the QC gate refused.
    """

    image: str | None = None
    preprocessed: bool = False
    cached: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    probabilities: dict[str, float] = field(default_factory=dict)
    predicted: str | None = None
    warning: str | None = None
    qc_picture: str | None = None


#: set to 1/true to run the configs and code of received bundles (as ``--trust_bundle_code``).
TRUST_ENV = "AXIAL_MONAI_TRUST_BUNDLE_CODE"


def _is_bundle(path: Path) -> bool:
    """An exported bundle: its folder, or its ``.zip`` (a checkpoint is a zip too, but not named so)."""
    zipped = path.suffix.lower() == ".zip" and path.is_file() and zipfile.is_zipfile(path)
    return zipped or (path / "configs" / "metadata.json").is_file()


def resolve_model(
    model: str | os.PathLike,
    cache_dir: Path,
    trust_bundle_code: bool = False,
    trusted_key: str | os.PathLike | None = None,
) -> PredictModel:
    """The :class:`PredictModel` of a run folder, a checkpoint, or an exported bundle (its folder or zip).

    A bundle is received data: its zip is unpacked safely and every file checked against its manifest (and with
    ``trusted_key`` the manifest's signature) first (:func:`axial_monai.run.received.open_bundle`). Then only its
    weights (``weights_only``), JSON settings (schema-checked) and NIfTI volumes are read: its configs and its
    ``scripts/`` are not used, so receiving a model runs none of the sender's code; the model runs with this
    installation's code and shipped configs. ``trust_bundle_code`` runs the bundle's own configs (and through them
    its ``scripts/``) instead, with a warning naming them.

    Raises:
        FileNotFoundError: if ``model`` is none of them.
        InputError: for a bundle that fails its checks, a checkpoint without run settings, one that carries pickled
            objects or cannot be read (one line each).
    """
    path = Path(model).resolve()
    bundle = _is_bundle(path)
    if bundle:
        path = open_bundle(path, cache_dir, trusted_key)
    settings = RunSettings.load(path / BundleLayout.MODEL if bundle else path)
    # the template and mask as NIfTI files for ANTs, once per model (keyed by their content)
    template, mask = settings.template_image(), settings.mask_image()
    key = hashlib.sha256(np.asarray(settings.template).tobytes() + np.asarray(settings.brain_mask).tobytes())
    folder = cache_dir / "templates" / key.hexdigest()[:16]
    for name, image in (("template.nii.gz", template), ("brain_mask.nii.gz", mask)):
        if not (folder / name).is_file():
            write_nifti(folder / name, image)
    configs = {
        "config_files": [str(config_path("inference"))],
        "explain_config": str(config_path("explain")),
        "overrides": {"ckpt_path": str(settings.source)},
        "meta_file": str(config_path("metadata")),
        "logging_file": str(config_path("logging.conf")),
    }
    if bundle and (trust_bundle_code or flag(os.environ.get(TRUST_ENV, "false"), TRUST_ENV)):
        configs = _bundle_configs(path)
    return PredictModel(
        kind="bundle" if bundle else "run",
        path=path if bundle else Path(settings.source),
        check=settings.input_check(model=str(model)),
        template=folder / "template.nii.gz",
        brain_mask=folder / "brain_mask.nii.gz",
        class_names=list(settings.class_names),
        profile=settings.preprocessing,
        **configs,
    )


def _bundle_configs(path: Path) -> dict[str, Any]:
    """The bundle's own configs, for a receiver who trusts its code (a warning says what will run)."""
    scripts = sorted(p.relative_to(path).as_posix() for p in (path / "scripts").rglob("*.py"))
    logger.warning(
        f"Running the code of the bundle {path} (trust_bundle_code): the $ expressions and _target_ components of "
        f"configs/inference.json and configs/explain.json, and the {len(scripts)} modules of scripts/ they import, "
        "with your rights."
    )
    configs = path / "configs"
    return {
        "config_files": [str(configs / "inference.json")],
        "explain_config": str(configs / "explain.json"),
        "overrides": {"bundle_root": str(path)},
        "meta_file": str(configs / "metadata.json"),
        "logging_file": str(configs / "logging.conf"),
    }


def prepare_scan(
    path: str,
    model: PredictModel,
    cache_dir: Path,
    transform: str = "SyNQuick",
    n4: bool = True,
    registration_kwargs: Mapping[str, Any] | None = None,
    n4_kwargs: Mapping[str, Any] | None = None,
    resolution: float | None = 1.0,
    seed: int = 42,
    profile: str = "fast",
) -> tuple[str, bool, bool, dict[str, float]]:
    """The file to feed the model for the scan ``path``: itself if the model accepts it, else its preprocessed copy.

    Preprocessing is :func:`~axial_monai.preprocess.pipeline.preprocess_scan` with the model's template and
    ``profile``. The fast profile registers at 2 mm (or the model's coarser grid) and resamples once onto the
    model's grid. The paper profile (``transform``, ``n4`` and the keyword arguments are its own) registers, on a
    model grid coarser than ``resolution`` mm, to the template resampled to ``resolution``, then resamples the result
    to the model's grid and masks it by its brain mask: the registration types of ANTs (their shrink factors, up to
    8) are made for about 1 mm voxels, and fail on a 2-3 mm template.

    Returns:
        ``(image path, preprocessed, taken from the cache, preprocessing metrics)``.

    Raises:
        InputError: if the scan cannot be read or its preprocessed copy is still not usable.
    """
    unreadable = check_nifti_header(path)
    if unreadable:
        raise InputError(f"{path}: {unreadable}")
    problem = model.check(path)
    if problem is None:
        return path, False, False, {}
    paper = profile == "paper"
    coarse = paper and resolution is not None and min(model.check.grid.spacing) > 1.01 * float(resolution)
    settings = {
        "template": model.fingerprint,
        "profile": profile,
        "resolution": float(resolution) if coarse else None,
        **({"transform": transform, "n4": bool(n4)} if paper else {}),
        "registration_kwargs": dict(registration_kwargs or {}) if paper else {},
        "n4_kwargs": dict(n4_kwargs or {}) if paper else {},
        "seed": seed,
        "axial_monai": axial_monai.__version__,
    }
    key = hashlib.sha256((file_digest(path) + json.dumps(settings, sort_keys=True, default=str)).encode()).hexdigest()
    target = cache_dir / "predict" / f"{key[:32]}.nii.gz"
    record = target.with_suffix("").with_suffix(".json")
    if target.is_file() and record.is_file():
        metrics = json.loads(record.read_text())["metrics"]
        DEFAULT_GATE.check(path, metrics, _picture(target))
        return str(target), True, True, metrics

    import ants

    from .preprocess.pipeline import ants_environment, preprocess_scan
    from .preprocess.templates import load_template

    steps = f"N4, {transform} registration, brain mask" if paper else "brain mask, N4, greedy registration"
    logger.info(f"{path}: {problem.split(';')[0]}; preprocessing it ({profile} profile: {steps})")
    start = time.perf_counter()
    template = load_template(
        str(model.template), mask=str(model.brain_mask), space="model", resolution=settings["resolution"]
    )
    with ants_environment(None, seed):
        options = {"transform": transform, "n4": n4} if paper else {}
        options.update(registration_kwargs=dict(registration_kwargs or {}), n4_kwargs=dict(n4_kwargs or {}))
        done = preprocess_scan(path, template, profile, **(options if paper else {}))
        brain, metrics = done.brain, done.metrics
    from .preprocess.qc_figure import qc_title, write_qc_figure

    write_qc_figure(_picture(target), done, template, path, qc_title(Path(path).name, metrics))
    if coarse:  # back onto the model's grid; the background stays exactly 0
        grid = ants.image_read(str(model.brain_mask), pixeltype="float")
        brain = ants.resample_image_to_target(brain, grid, interp_type="linear") * grid
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    DEFAULT_GATE.check(path, metrics, _picture(target))
    with atomic_path(target, suffix=".nii.gz") as tmp:
        ants.image_write(brain, str(tmp))
    write_json(record, {"source": str(path), "settings": settings, "metrics": metrics})
    still = model.check(str(target))
    if still:
        raise InputError(f"{path}: after preprocessing, the scan {still.split(';')[0]}")
    return str(target), True, False, metrics


def _picture(preprocessed: str | os.PathLike) -> Path:
    """The QC picture of a preprocessed scan in the cache: ``<key>.png`` beside ``<key>.nii.gz``."""
    return Path(preprocessed).with_suffix("").with_suffix(".png")


def _overview(prediction: Prediction, folder: Path, explained: bool) -> None:
    from .explain import DEFAULT_METHOD
    from .explain.plots import plot_overlay

    anatomy = nib.load(prediction.image)
    cam = folder / f"{DEFAULT_METHOD}.nii.gz"  # the default voxel map of explain.json
    empty = nib.Nifti1Image(np.zeros(anatomy.shape[:3], np.float32), anatomy.affine)
    overlay = nib.load(cam) if explained and cam.is_file() else empty
    probability = prediction.probabilities.get(prediction.predicted or "", float("nan"))
    title = f"{prediction.scan_id}: {prediction.predicted} ({probability:.2f})"
    plot_overlay(anatomy, overlay, folder / "overview.png", title=title)


def predict_scans(
    scans: Sequence[str | os.PathLike],
    model: str | os.PathLike,
    out: str | os.PathLike = "predictions",
    explain: bool = False,
    transform: str = "SyNQuick",
    n4: bool = True,
    registration_kwargs: Mapping[str, Any] | None = None,
    n4_kwargs: Mapping[str, Any] | None = None,
    resolution: float | None = 1.0,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    bundle_overrides: Mapping[str, Any] | None = None,
    echo: Any = print,
    trust_bundle_code: bool = False,
    trusted_key: str | os.PathLike | None = None,
    profile: str | None = None,
) -> list[Prediction]:
    """Predict (and with ``explain``, explain) raw or preprocessed T1 scans with a run or an exported bundle.

    Args:
        scans: NIfTI files or folders of them (searched recursively).
        model: a run folder, its ``models/model.pt``, or an exported bundle (its folder or zip: checked against its
            manifest before anything in it is read, and run as data: :func:`resolve_model`).
        out: output folder (see the module docstring).
        explain: also write the maps and region tables.
        transform: registration of the preprocessing (``SyNQuick``, ``SyN``, ``Affine``, ``Rigid`` or an ANTsPy
            type).
        n4: N4 bias-field correction before registration.
        registration_kwargs, n4_kwargs: more ANTsPy arguments (e.g. fewer iterations for a quick look).
        resolution: voxel size in mm the registration runs at on a coarser model grid (:func:`prepare_scan`);
            ``None``: on the model's grid.
        cache_dir: where preprocessed scans are kept (default ``$AXIAL_MONAI_CACHE`` or ``~/.cache/axial_monai``).
        num_workers: data loader workers of the bundle run.
        bundle_overrides: more bundle settings (e.g. ``{"atlas": ..., "methods": ["attention", "gradcam"]}``).
        echo: where the one-line messages go (``print``).
        trust_bundle_code: run a bundle's own configs and ``scripts/`` (the sender's code) instead of this
            installation's (also ``AXIAL_MONAI_TRUST_BUNDLE_CODE=1``).
        trusted_key: an Ed25519 public key (PEM): the bundle's manifest must be signed by its private key.
        profile: preprocessing profile of raw scans, ``"fast"`` or ``"paper"``; default: the one the model's training
            scans used, when its settings record it, else ``"fast"`` (which is said on ``echo``).

    Returns:
        one :class:`Prediction` per scan, in input order.

    Raises:
        SettingsError: if no scan is given.
        FileNotFoundError: if the model cannot be found.
    """
    from .layout import default_cache_root

    if not scans:
        raise SettingsError("Give at least one scan: a NIfTI file or a folder of them.")
    out = Path(out).resolve()
    cache = Path(cache_dir).resolve() if cache_dir else default_cache_root()
    resolved = resolve_model(model, cache, trust_bundle_code, trusted_key)
    profile = _profile(profile, resolved, echo)
    results = [Prediction(**asdict(item)) for item in gather_scans(scans, cache, echo)]
    for result in results:
        if result.problem:
            continue
        if not os.path.isfile(result.file):
            result.problem = "does not exist"
            continue
        try:
            image, preprocessed, cached, metrics = prepare_scan(
                result.file, resolved, cache, transform, n4, registration_kwargs, n4_kwargs, resolution, 42, profile
            )
        except (InputError, RuntimeError, ValueError) as err:  # one scan's failure; the others go on
            result.problem = str(err).removeprefix(f"{result.file}: ")
            if isinstance(err, QCRefusedError) and err.picture is not None:
                result.qc_picture = str(err.picture)
            echo(f"skipped {result.scan}: {result.problem}")
            continue
        result.image, result.preprocessed, result.cached, result.metrics = image, preprocessed, cached, metrics
        if metrics.get("similarity_cc", 1.0) < MIN_SIMILARITY_CC:
            result.warning = (
                f"low similarity to the template after registration (cc {metrics['similarity_cc']:.2f} < "
                f"{MIN_SIMILARITY_CC}): check {image}"
            )
        if not preprocessed:
            echo(f"{result.scan}: already on the model's grid and brain-extracted, used as it is")
        else:
            echo(f"{result.scan}: preprocessed " + ("(from the cache)" if cached else f"in {metrics['seconds']} s"))

    usable = [r for r in results if r.image is not None]
    if usable:
        _run_bundle(resolved, usable, out, explain, num_workers, bundle_overrides or {}, echo)
        predictions = pd.read_csv(out / RunLayout.PREDICTIONS).set_index("file")
        for result in usable:
            if result.image not in predictions.index:
                result.problem = "not predicted (see skipped.csv)"
                continue
            row = predictions.loc[result.image]
            result.probabilities = {c: float(row[f"prob_{c}"]) for c in resolved.class_names}
            result.predicted = str(row["pred_label"])
            folder = out / result.scan_id
            write_json(
                folder / "prediction.json",
                {
                    "scan": result.scan,
                    **({"series": result.series} if result.series is not None else {}),
                    "input": result.image,
                    "preprocessed": result.preprocessed,
                    "preprocessing": result.metrics,
                    "model": str(resolved.path),
                    "class_names": resolved.class_names,
                    "probabilities": result.probabilities,
                    "prediction": result.predicted,
                    "warning": result.warning,
                },
            )
            _overview(result, folder, explain)
            if result.preprocessed and _picture(result.image).is_file():
                shutil.copyfile(_picture(result.image), folder / "preprocessing_qc.png")
            echo(f"{result.scan_id}: {result.predicted} ({result.probabilities[result.predicted]:.3f}) -> {folder}")
    skipped = pd.DataFrame(
        [{"file": r.scan, "problem": r.problem} for r in results if r.problem], columns=list(SKIPPED_COLUMNS)
    )
    write_csv(out / RunLayout.SKIPPED, skipped)
    return results


def _profile(given: str | None, model: PredictModel, echo: Any) -> str:
    """The preprocessing profile of raw scans: ``given``, else the model's, else the default (said on ``echo``)."""
    from .preprocess.pipeline import DEFAULT_PROFILE, check_profile

    if given is not None:
        if model.profile and given != model.profile:
            echo(f"preprocessing raw scans with the {given} profile; the model's training scans used {model.profile}")
        return check_profile(given)
    if model.profile:
        echo(f"preprocessing raw scans with the {model.profile} profile, as the model's training scans")
        return check_profile(model.profile)
    echo(f"preprocessing raw scans with the {DEFAULT_PROFILE} profile (the model does not record its preprocessing)")
    return DEFAULT_PROFILE


def _run_bundle(
    model: PredictModel,
    usable: Sequence[Prediction],
    out: Path,
    explain: bool,
    num_workers: int,
    extra: Mapping[str, Any],
    echo: Any,
) -> None:
    from monai.bundle import ConfigWorkflow

    from .commandline import bundle_command

    datalist = out / "predict_datalist.json"
    items = [{"image": r.image, "scan_id": r.scan_id, "source": r.scan} for r in usable]
    write_json(datalist, {"predict": items})
    files = model.config_files + ([model.explain_config] if explain else [])
    settings = {
        **model.overrides,
        "input": str(datalist),
        "datalist_key": "predict",
        "output_dir": str(out),
        "pred_dir": str(out),
        "num_workers": num_workers,
        **({"explain_dir": str(out)} if explain else {}),
        **extra,
    }
    line = bundle_command(
        "explaining" if explain else "inferring",
        files,
        settings,
        meta_file=model.meta_file,
        logging_file=model.logging_file,
    )
    echo(f"running the bundle; the same as:\n  {line}")
    workflow = ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=model.meta_file,
        logging_file=model.logging_file,
        workflow_type="infer",
        **settings,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
