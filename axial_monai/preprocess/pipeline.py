"""T1w preprocessing of one scan: the profiles and the paper profile itself (ANTsPy).

:func:`preprocess_scan` runs one scan with one of :data:`PROFILES`: ``fast`` (:mod:`.fast`, the default) or
``paper``. The QC figures of both (:func:`template_similarity`, :func:`jacobian_range`) go through the QC gate
(:mod:`.gate`) before an output is written.

The paper profile, per scan (:func:`preprocess_t1w`), all in-process with ANTsPy:

1. N4 bias-field correction with the ANTs defaults (:func:`ants.n4_bias_field_correction`).
2. Registration to the template (:func:`ants.registration`), by default ``antsRegistrationSyNQuick[s]``
   (rigid + affine + SyN, the paper's "SyN quick"). The shipped templates are brain-only, while raw scans have a
   skull, so the metric is restricted to the template brain mask dilated by ``registration_mask_dilation_mm``
   (a fixed-image mask): without it a head scan that starts far from the template can lock onto the scalp.
3. Brain extraction: the registered image is multiplied by the template's brain mask. In template space the
   brain is where the template's brain is, so this needs no second tool; its accuracy is that of the
   registration (nonlinear registration gives a subject-specific outline, affine registration only an average
   one). The reference used FSL BET (frac 0.3), which is not available in-process.

The output is on the template grid (float32, background 0), intensities as after N4 (no normalisation: that
is a transform of the training pipeline).
The resumable run over a BIDS tree is :mod:`.batch`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ants
import nibabel as nib
import numpy as np

from ..errors import InputError, SettingsError
from .templates import Template

__all__ = [
    "PROFILES",
    "DEFAULT_PROFILE",
    "TRANSFORMS",
    "resolve_transform",
    "read_t1w",
    "PreprocessedScan",
    "jacobian_range",
    "preprocess_scan",
    "preprocess_t1w",
    "ants_environment",
]

logger = logging.getLogger(__name__)

#: the preprocessing profiles: ``fast`` (deepbet, N4 in the brain at 2 mm, greedy; :mod:`.fast`) and ``paper``
#: (N4, ANTs registration, template brain mask, as AXIAL/Clinica; :func:`preprocess_t1w`).
PROFILES = ("fast", "paper")
#: the profile of ``axial-monai-preprocess`` and ``axial-monai predict`` when none is given.
DEFAULT_PROFILE = "fast"
#: Short names of the registration types -> ANTsPy ``type_of_transform``. Any other ANTsPy type (e.g.
#: ``"SyNRA"``, ``"antsRegistrationSyN[s]"``) is passed through unchanged.
TRANSFORMS = {"SyNQuick": "antsRegistrationSyNQuick[s]", "SyN": "SyN", "Affine": "Affine", "Rigid": "Rigid"}
_ANTSPY_TYPES = frozenset(
    "Translation Rigid Similarity QuickRigid DenseRigid BOLDRigid Affine AffineFast BOLDAffine TRSAA Elastic "
    "ElasticSyN SyN SyNRA SyNOnly SyNCC SyNabp SyNBold SyNBoldAff SyNAggro SyNLessAggro TVMSQ TVMSQC".split()
)
_SCRIPT_TYPE = re.compile(r"antsRegistrationSyN(Quick)?(Repro)?\[(t|r|a|s|sr|so|b|br|bo)(,[^\]]*)?\]")


def resolve_transform(transform: str) -> str:
    """ANTsPy ``type_of_transform`` for a short name of :data:`TRANSFORMS` or an ANTsPy type.

    Raises:
        SettingsError: if ``transform`` is neither.
    """
    if transform in TRANSFORMS:
        return TRANSFORMS[transform]
    if transform in _ANTSPY_TYPES or _SCRIPT_TYPE.fullmatch(str(transform)):
        return transform
    raise SettingsError(
        f"transform must be one of {sorted(TRANSFORMS)} or an ANTsPy type_of_transform "
        f"(e.g. 'antsRegistrationSyN[s]', 'SyNRA'), not {transform!r}."
    )


def read_t1w(path: str | os.PathLike) -> ants.ANTsImage:
    """Read a 3D T1w NIfTI as a float ANTs image, after checking it fully with nibabel.

    The whole data block is decompressed and checked first, so a truncated or damaged file fails here with a
    message naming the file, instead of crashing inside ITK.

    Args:
        path: NIfTI file (``.nii`` or ``.nii.gz``); a 4D file with one volume is accepted.

    Returns:
        the image, as read by ANTs (ITK physical-space conventions).

    Raises:
        InputError: if the file cannot be read, is not one 3D volume, holds non-finite values or is constant.
    """
    path = str(path)
    try:
        header_image = nib.load(path)
        data = np.asanyarray(header_image.dataobj)
    except Exception as err:  # nibabel raises many kinds (EOFError, zlib.error, ImageFileError, ...)
        raise InputError(f"Cannot read T1w image {path}: {type(err).__name__}: {err}") from err
    shape = data.shape
    if not (data.ndim == 3 or (data.ndim == 4 and shape[3] == 1)):
        raise InputError(f"T1w image {path} must be one 3D volume, but its shape is {shape}.")
    if not np.all(np.isfinite(data)):
        raise InputError(f"T1w image {path} contains NaN or infinite values.")
    if data.size == 0 or float(data.max()) == float(data.min()):
        raise InputError(f"T1w image {path} is empty or constant (shape {shape}).")
    image = ants.image_read(path, pixeltype="float")
    if image.dimension == 4:
        image = ants.slice_image(image, axis=3, idx=0)
    return image


@dataclass
class PreprocessedScan:
    """One preprocessed scan.

    Attributes:
        brain: the brain-extracted image on the template grid (float32, background 0).
        metrics: QC figures (``similarity_cc``, ``similarity_mi``, ``jacobian_min``/``jacobian_max`` of the
            registration, and the profile's own: see :func:`preprocess_t1w`, :func:`~.fast.preprocess_fast`).
        native_mask: the brain mask on the scan's own grid (bool, file array order): the template's, carried back
            by the inverse of the registration.
    """

    brain: ants.ANTsImage
    metrics: dict[str, float]
    native_mask: np.ndarray


def jacobian_range(domain: ants.ANTsImage, transforms: list[str], mask: ants.ANTsImage) -> dict[str, float]:
    """``{"jacobian_min", "jacobian_max"}`` of the deformable part of ``transforms`` (a warp image) inside
    ``mask``, on ``domain``'s grid; of an affine-only registration, its constant determinant."""
    inside = mask.numpy() > 0
    for transform in transforms:
        if transform.endswith((".nii.gz", ".nii")):
            values = ants.create_jacobian_determinant_image(domain, transform).numpy()[inside]
            return {"jacobian_min": float(values.min()), "jacobian_max": float(values.max())}
    matrix = ants.read_transform(transforms[-1]).parameters[:9].reshape(3, 3)
    determinant = float(abs(np.linalg.det(matrix)))
    return {"jacobian_min": determinant, "jacobian_max": determinant}


def template_similarity(template: Template, brain: ants.ANTsImage) -> dict[str, float]:
    """How much ``brain`` (on the template grid) looks like ``template`` inside its brain mask.

    Returns:
        ``similarity_cc`` (ANTs ``Correlation``: the squared correlation, blind to the sign of the contrast),
        ``similarity_mi`` (ANTs ``MattesMutualInformation``; both sign-flipped, higher is better) and
        ``template_correlation`` (Pearson's r of the voxel values, -1 to 1: negative for an inverted contrast).
    """
    mask = template.brain_mask
    inside = mask.numpy() > 0
    values, target = brain.numpy()[inside], template.image.numpy()[inside]
    correlation = float(np.corrcoef(values, target)[0, 1]) if values.std() > 0 else 0.0
    return {
        "similarity_cc": -float(ants.image_similarity(template.image, brain, "Correlation", fixed_mask=mask)),
        "similarity_mi": -float(
            ants.image_similarity(template.image, brain, "MattesMutualInformation", fixed_mask=mask)
        ),
        "template_correlation": correlation,
    }


def mask_dice(carried: np.ndarray, template: Template) -> float:
    """Dice of a scan's own brain mask carried onto the template grid (bool) against the template's brain mask."""
    template_mask = template.brain_mask.numpy() > 0
    return float(2 * (carried & template_mask).sum() / max(carried.sum() + template_mask.sum(), 1))


def preprocess_t1w(
    image: ants.ANTsImage,
    template: Template,
    transform: str = "SyNQuick",
    n4: bool = True,
    registration_mask_dilation_mm: float | None = 6.0,
    registration_kwargs: dict[str, Any] | None = None,
    n4_kwargs: dict[str, Any] | None = None,
    initial_transform: str | None = None,
    scan_mask: ants.ANTsImage | None = None,
) -> PreprocessedScan:
    """Preprocess one T1w image in memory: N4 -> registration to ``template`` -> template brain mask.

    Args:
        image: the raw T1w image (any grid and orientation).
        template: the registration target and its brain mask (:func:`~axial_monai.preprocess.load_template`).
        transform: a short name of :data:`TRANSFORMS` (``"SyNQuick"``, ``"SyN"``, ``"Affine"``, ``"Rigid"``) or an
            ANTsPy ``type_of_transform``.
        n4: run N4 bias-field correction first.
        registration_mask_dilation_mm: restrict the registration metric to the template brain mask dilated by
            this many mm; ``None`` uses no mask.
        registration_kwargs: extra keyword arguments of :func:`ants.registration`, e.g.
            ``{"aff_iterations": (100, 50, 0), "aff_shrink_factors": (4, 2, 1), "aff_smoothing_sigmas": (2, 1, 0)}``
            for a fast affine at 4 mm (the default shrink factors 6x4x2x1 are meant for 1 mm); lists are turned
            into tuples.
        n4_kwargs: extra keyword arguments of :func:`ants.n4_bias_field_correction`, e.g.
            ``{"convergence": {"iters": [20, 20], "tol": 1e-7}}`` for a fast test; default: the ANTs defaults.
        initial_transform: an ITK transform file the registration starts from (:func:`preprocess_scan` gives the
            content-based start of :func:`~.fast.initial_transform`); ``None``: ANTs' own start, which matches the
            centres of mass of the whole images (head, neck and all).
        scan_mask: the scan's own brain mask (deepbet's, on the scan's grid): carried onto the template, its Dice with
            the template's brain mask is the QC figure ``mask_dice``.

    Returns:
        the :class:`PreprocessedScan`: the brain-extracted image on the template grid, the figures of
        :func:`template_similarity` and the Jacobian range of the registration, and the template's brain mask
        carried back onto the scan's grid.
    """
    type_of_transform = resolve_transform(transform)
    kwargs = {
        key: tuple(value) if isinstance(value, list) else value for key, value in (registration_kwargs or {}).items()
    }
    moving = ants.n4_bias_field_correction(image, **(n4_kwargs or {})) if n4 else image.clone("float")
    mask = None
    if registration_mask_dilation_mm is not None:
        radius = int(round(float(registration_mask_dilation_mm) / min(template.image.spacing)))
        mask = ants.iMath(template.brain_mask, "MD", radius) if radius > 0 else template.brain_mask
    with tempfile.TemporaryDirectory(prefix="axial-monai-reg-") as tmp:
        registration = ants.registration(
            fixed=template.image,
            moving=moving,
            type_of_transform=type_of_transform,
            mask=mask,
            mask_all_stages=mask is not None,
            **({"initial_transform": [initial_transform]} if initial_transform else {}),
            outprefix=os.path.join(tmp, "reg_"),
            **kwargs,
        )
        warped = registration["warpedmovout"]
        carried = None
        if scan_mask is not None:
            carried = ants.apply_transforms(
                fixed=template.image,
                moving=scan_mask,
                transformlist=registration["fwdtransforms"],
                interpolator="nearestNeighbor",
            )
        jacobian = jacobian_range(template.image, registration["fwdtransforms"], template.brain_mask)
        native = ants.apply_transforms(
            fixed=image,
            moving=template.brain_mask,
            transformlist=registration["invtransforms"],
            whichtoinvert=[i == 0 for i in range(len(registration["invtransforms"]))],
            interpolator="nearestNeighbor",
        )
    brain = warped * template.brain_mask
    metrics = {**template_similarity(template, brain), **jacobian}
    if carried is not None:
        metrics["mask_dice"] = mask_dice(carried.numpy() > 0.5, template)
    return PreprocessedScan(brain.clone("float"), metrics, native.numpy() > 0.5)


def check_profile(profile: str) -> str:
    """``profile`` if it is one of :data:`PROFILES`.

    Raises:
        SettingsError: otherwise.
    """
    if profile not in PROFILES:
        raise SettingsError(f"profile must be one of {list(PROFILES)}, not {profile!r}.")
    return profile


def preprocess_scan(
    path: str | os.PathLike, template: Template, profile: str = DEFAULT_PROFILE, **paper: Any
) -> PreprocessedScan:
    """Read and preprocess one T1w NIfTI with a profile of :data:`PROFILES` onto the ``template`` grid.

    Args:
        path: the scan.
        template: the registration target and its brain mask.
        profile: ``"fast"`` (:func:`~axial_monai.preprocess.fast.preprocess_fast`) or ``"paper"``
            (:func:`preprocess_t1w`, with the ``paper`` keyword arguments: transform, n4, ...). Both start the
            registration from the image content (deepbet's brain, centres of mass, a search over rotations:
            :func:`~axial_monai.preprocess.fast.start_from_content`), not from the header origin.

    Returns:
        the :class:`PreprocessedScan`.
    """
    image = read_t1w(path)
    if check_profile(profile) == "fast":
        from .fast import preprocess_fast

        return preprocess_fast(path, image, template)
    from .fast import initial_transform

    with tempfile.TemporaryDirectory(prefix="axial-monai-start-") as tmp:  # the same start as the fast profile
        start, mask = initial_transform(path, image, template, tmp)
        return preprocess_t1w(image, template, initial_transform=start, scan_mask=mask, **paper)


@contextlib.contextmanager
def ants_environment(threads: int | None, seed: int | None) -> Iterator[None]:
    """Set ITK threads / ANTs seed in this process for an in-process run (``None``: leave as is), restoring the
    environment after."""
    names = {"ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": threads, "ANTS_RANDOM_SEED": seed}
    saved = {name: os.environ.get(name) for name in names}
    try:
        for name, value in names.items():
            if value is not None:
                os.environ[name] = str(value)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


#: names that moved to :mod:`.batch` in 0.3.1: importing them from here warns (until 0.4.0).
_MOVED = {"PreprocessSummary": "batch", "preprocess_bids": "batch"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib
        import warnings

        warnings.warn(
            f"axial_monai.preprocess.pipeline.{name} moved to axial_monai.preprocess.{_MOVED[name]} (or import it "
            "from axial_monai.preprocess); the old path goes in 0.4.0.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(f"{__package__}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
