"""The fast preprocessing profile: a raw T1 head scan onto a template grid in seconds on a CPU.

Per scan (:func:`preprocess_fast`):

1. Brain extraction first, on the raw scan in its own space: deepbet (a CNN; its weights ship inside its wheel,
   nothing is downloaded). A brain mask makes the start of the registration independent of the skull, neck and
   face, and a mask whose volume is not a brain's refuses the scan. The masks are kept by content in the cache
   (:func:`cached_brain_mask`): a rerun with other registration or N4 settings does not extract the brain again.
2. Bias-field correction: N4 fitted inside that brain on a 2 mm copy, two fitting levels of 20 iterations,
   then divided out of the whole scan at its own resolution.
3. Registration to the template on a grid of at least 2 mm with greedy (PICSL; its binary ships inside its
   wheel). Affine, brain to template brain, from the centres of mass of the two brains (image content, not
   the header origin). Then deformable (NCC on 2-voxel patches; the warp smoothed by 1.5 and 0.5 voxels) of the
   corrected head onto the template brain, the metric restricted to the template brain dilated by
   :data:`METRIC_MASK_MM`: the brain's outline then follows the image, not deepbet's mask, whose margin of CSF is
   wider than a brain template's.
4. One resampling: the corrected head goes from the scan's own grid straight onto the template grid (affine and
   warp composed by greedy, linear) and is masked by the template's brain mask, as in the paper profile. The
   template's brain mask also goes the other way (the inverse warp), onto the scan's grid.

The choices were measured on Colin27 (``benchmarks/preprocess_profiles.py``; ``bundle/docs/preprocessing.md``):
N4 at the ANTs defaults on the 1 mm head took 45 s, this one 4 s (correlation inside the brain 0.988 with the
default's); ANTs SyNQuick at 2 mm reached a template correlation of 0.67 in 11 s, greedy 0.85 in 8 s; a
deformable step on deepbet's brain alone gave a brain Dice against ch2bet of 0.955, on the head in the dilated
template mask 0.973.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.metadata
import logging
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ants
import nibabel as nib
import numpy as np

from ..errors import InputError
from ..io import atomic_path, file_digest
from ..layout import default_cache_root
from .pipeline import PreprocessedScan, jacobian_range, mask_dice, template_similarity
from .templates import Template

__all__ = [
    "BRAIN_ML",
    "METRIC_MASK_MM",
    "REGISTRATION_MM",
    "preprocess_fast",
    "brain_mask",
    "cached_brain_mask",
    "greedy",
    "start_from_content",
    "initial_transform",
]

logger = logging.getLogger(__name__)

#: the cache folder of deepbet's masks (below :func:`~axial_monai.layout.default_cache_root`).
MASK_CACHE = "brain_masks"
#: bumped when a cached mask's file layout changes: older entries are then not read.
MASK_CACHE_VERSION = 1
#: the volume (ml) of a human brain mask (deepbet's masks include the CSF around the brain: about 1100 to 2000 ml).
BRAIN_ML = (500.0, 2800.0)
#: the finest voxel size the registration runs at (mm).
REGISTRATION_MM = 2.0
#: the deformable metric is computed in the template brain mask dilated by this (mm): brain outline and CSF.
METRIC_MASK_MM = 4.0
_N4 = {"shrink_factor": 2, "convergence": {"iters": [20, 20], "tol": 1e-6}}
#: the start, from the image content: centres of mass, then a random search over rotations (sigma 30 degrees) and
#: shifts (sigma 20 mm) and a rigid fit at 8 and 4 mm (brain to brain; what the header origin says is not used).
_START = "-V 0 -a -dof 6 -search 500 30 20 -n 100x50x0 -m NCC 2x2x2"
_AFFINE = "-V 0 -a -dof 12 -n 100x50x10 -m NCC 2x2x2"
_DEFORMABLE = "-V 0 -n 100x50x10 -m NCC 2x2x2 -s 2.0vox 0.5vox"


@functools.lru_cache(maxsize=1)
def _extractor() -> Any:
    from deepbet import BrainExtraction

    return BrainExtraction(no_gpu=True)


def brain_mask(path: str | os.PathLike) -> np.ndarray:
    """deepbet's brain mask of the T1 scan at ``path``, on its own grid (bool, file array order).

    Raises:
        InputError: if no brain is found: the mask is empty, or its volume is not a human brain's
            (:data:`BRAIN_ML`).
    """
    image = nib.load(str(path))
    found = cached_brain_mask(image)
    volume = found.sum() * float(np.prod(image.header.get_zooms()[:3])) / 1000.0
    if not BRAIN_ML[0] <= volume <= BRAIN_ML[1]:
        raise InputError(
            f"{path}: no brain found (deepbet's brain mask holds {volume:.0f} ml, a brain {BRAIN_ML[0]}-{BRAIN_ML[1]} "
            "ml); is it a T1 head scan?"
        )
    return found


@functools.lru_cache(maxsize=1)
def _deepbet_digest() -> str:
    """SHA-256 of deepbet's version and model files: another deepbet (or other weights) makes other cache keys."""
    from deepbet.utils import DATA_PATH

    digest = hashlib.sha256(importlib.metadata.version("deepbet").encode())
    for model in sorted(Path(DATA_PATH, "models").glob("*.pt")):
        digest.update(f"{model.name}:{file_digest(model)}".encode())
    return digest.hexdigest()


def _mask_key(data: np.ndarray, affine: np.ndarray) -> str:
    """The cache key of deepbet's mask of the voxels ``data`` at ``affine`` (all that deepbet's mask depends on)."""
    digest = hashlib.sha256(f"{MASK_CACHE_VERSION}:{_deepbet_digest()}:{data.dtype.str}:{data.shape}".encode())
    digest.update(np.asarray(affine, np.float64).tobytes())
    digest.update(np.ascontiguousarray(data).data)
    return digest.hexdigest()


def cached_brain_mask(image: nib.Nifti1Image) -> np.ndarray:
    """deepbet's brain mask of ``image`` (bool, its first three axes, file array order), taken from the cache when
    an earlier call saw the same voxels and affine with the same deepbet.

    Entries are ``<cache root>/brain_masks/<key>.npz`` (the mask's bits, packed and compressed: a few kB to tens
    of kB), written by write-then-rename; one that cannot be read is computed again and replaced, and a cache that
    cannot be written only costs the extraction next time.
    """
    data = np.asanyarray(image.dataobj)
    shape = tuple(image.shape[:3])
    entry = default_cache_root() / MASK_CACHE / f"{_mask_key(data, image.affine)}.npz"
    try:
        with np.load(entry) as stored:
            if tuple(stored["shape"]) == shape:
                return np.unpackbits(stored["mask"], count=int(np.prod(shape))).reshape(shape).astype(bool)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        pass  # no entry, or a damaged one
    _, mask, _ = _extractor().run(type(image)(data, image.affine, image.header))  # the voxels read above
    found = (np.asarray(mask.dataobj) > 0).reshape(shape)
    try:
        with atomic_path(entry, suffix=".npz") as tmp:
            np.savez_compressed(tmp, mask=np.packbits(found), shape=np.asarray(shape))
    except OSError as err:
        logger.warning("Could not keep the brain mask in the cache %s: %s", entry.parent, err)
    return found


def greedy(arguments: str) -> None:
    """Run one greedy command (``picsl_greedy.Greedy3D``), e.g. ``"-d 3 -i fixed.nii.gz moving.nii.gz -a ..."``;
    what it prints (progress, even with ``-V 0``) is dropped. Its random generator (the rotation search, the noise it
    adds to NCC) gets the seed ``ANTS_RANDOM_SEED`` (:func:`~.pipeline.ants_environment`) or 1: greedy's own
    default, 0, draws a new seed each run."""
    seed = int(os.environ.get("ANTS_RANDOM_SEED") or 0) or 1
    with _output_dropped():
        from picsl_greedy import Greedy3D

        Greedy3D().execute(f"{arguments} -seed {seed}")


#: where greedy's Python-side output goes. Its binding keeps the ``sys.stdout`` of its first call and writes to it
#: on later calls (a closed one aborts the process), so it always gets this one, which stays open.
_SINK = open(os.devnull, "w")  # noqa: SIM115 - open for the life of the process


@contextlib.contextmanager
def _output_dropped() -> Iterator[None]:
    """``sys.stdout`` and file descriptor 1 (C's ``printf``) sent to /dev/null, restored after."""
    sys.stdout.flush()
    python_stdout, saved = sys.stdout, os.dup(1)
    try:
        sys.stdout = _SINK
        os.dup2(_SINK.fileno(), 1)
        try:
            yield
        finally:
            ctypes.CDLL(None).fflush(None)  # what C buffered goes to /dev/null too, not to the next output
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        sys.stdout = python_stdout


def _like(image: ants.ANTsImage, array: np.ndarray) -> ants.ANTsImage:
    return ants.from_numpy(
        np.asarray(array, np.float32), origin=image.origin, spacing=image.spacing, direction=image.direction
    )


def _bias_corrected(image: ants.ANTsImage, mask: ants.ANTsImage) -> ants.ANTsImage:
    """``image`` divided by the N4 bias field fitted inside ``mask`` on a 2 mm copy (the field is smooth: it
    extends beyond the mask)."""
    spacing = (max(REGISTRATION_MM, *image.spacing),) * 3
    small = ants.resample_image(image, spacing, use_voxels=False, interp_type=0)
    small_mask = ants.resample_image_to_target(mask, small, interp_type="nearestNeighbor")
    bias = ants.n4_bias_field_correction(small, mask=small_mask, return_bias_field=True, **_N4)
    field = ants.resample_image_to_target(bias, image, interp_type="linear").numpy()
    return _like(image, np.where(field > 0, image.numpy() / np.maximum(field, 1e-6), 0.0))


def _at(image: ants.ANTsImage, spacing: float, nearest: bool = False) -> ants.ANTsImage:
    return ants.resample_image(image, (spacing,) * 3, use_voxels=False, interp_type=1 if nearest else 0)


def _dilated(mask: ants.ANTsImage, mm: float) -> ants.ANTsImage:
    radius = int(round(mm / min(mask.spacing)))
    return ants.iMath(mask, "MD", radius) if radius > 0 else mask


def preprocess_fast(path: str | os.PathLike, image: ants.ANTsImage, template: Template) -> PreprocessedScan:
    """Preprocess one T1w scan: brain mask, N4, greedy registration to ``template``, one resampling.

    Args:
        path: the scan's NIfTI file (deepbet reads it).
        image: the same scan as read by :func:`~axial_monai.preprocess.pipeline.read_t1w`.
        template: the registration target and its brain mask (the result's grid).

    Returns:
        the :class:`~axial_monai.preprocess.pipeline.PreprocessedScan`: the brain-extracted, bias-corrected image
        on the template grid (float32, background 0); the metrics of
        :func:`~axial_monai.preprocess.pipeline.template_similarity` (as the paper profile), ``mask_dice``
        (deepbet's brain mask carried onto the template against the template's brain mask),
        ``jacobian_min``/``jacobian_max`` (of the warp, inside the template brain) and ``brain_volume_ml`` (of
        deepbet's brain mask); and the template's brain mask carried back onto the scan's grid.

    Raises:
        InputError: if deepbet finds no brain.
    """
    mask = brain_mask(path)
    if mask.shape != tuple(image.shape):
        raise InputError(f"{path}: the brain mask's shape {mask.shape} is not the scan's {tuple(image.shape)}.")
    mask_image = _like(image, mask)
    head = _bias_corrected(image, mask_image)
    spacing = max(REGISTRATION_MM, *template.image.spacing)
    fixed_mask = ants.resample_image_to_target(template.brain_mask, _at(template.image, spacing), "nearestNeighbor")
    with tempfile.TemporaryDirectory(prefix="axial-monai-fast-") as tmp:
        files = {
            name: str(Path(tmp) / f"{name}.nii")
            for name in ("fixed", "brain", "head", "metric_mask", "reference", "head_full", "mask", "template_mask")
        }
        for name, data in (
            ("fixed", _at(template.image * template.brain_mask, spacing)),
            ("brain", _at(head * mask_image, spacing)),
            ("head", _at(head, spacing)),
            ("metric_mask", _dilated(fixed_mask, METRIC_MASK_MM)),
            ("reference", template.image),
            ("head_full", head),
            ("mask", mask_image),
            ("template_mask", template.brain_mask),
        ):
            ants.image_write(data, files[name])
        affine = str(Path(tmp) / "affine.mat")
        warp, inverse = str(Path(tmp) / "warp.nii"), str(Path(tmp) / "inverse.nii")
        fixed, threads = files["fixed"], f"-d 3 -threads {_threads()}"
        start_from_content(fixed, files["brain"], affine)
        greedy(f"{threads} -i {fixed} {files['brain']} {_AFFINE} -ia {affine} -o {affine}")
        greedy(f"{threads} -i {fixed} {files['head']} -it {affine} -gm {files['metric_mask']} {_DEFORMABLE} -o {warp}")
        greedy(f"{threads} -V 0 -exp 3 -iw {warp} {inverse}")  # 8 compositions, not 64: 2 s less, same Dice
        out, carried, native = (str(Path(tmp) / f"{name}.nii") for name in ("out", "carried", "native"))
        greedy(
            f"{threads} -V 0 -rf {files['reference']} -rm {files['head_full']} {out} -ri NN "
            f"-rm {files['mask']} {carried} -r {warp} {affine}"
        )
        inverse_chain = f"-r {affine},-1 {inverse}"
        greedy(f"{threads} -V 0 -rf {files['mask']} -ri LINEAR -rm {files['template_mask']} {native} {inverse_chain}")
        warped, deepbet_carried = ants.image_read(out), ants.image_read(carried).numpy() > 0.5
        native_mask = ants.image_read(native).numpy() > 0.5
        jacobian = jacobian_range(fixed_mask, [warp], fixed_mask)
    result = warped * template.brain_mask
    metrics = {
        **template_similarity(template, result),
        "mask_dice": mask_dice(deepbet_carried, template),
        **jacobian,
        "brain_volume_ml": float(mask.sum() * np.prod(image.spacing) / 1000.0),
    }
    return PreprocessedScan(result.clone("float"), metrics, native_mask)


def start_from_content(fixed: str, moving: str, matrix: str) -> None:
    """Write to ``matrix`` (greedy's RAS format) a rigid transform of the brain image ``moving`` onto ``fixed``
    (NIfTI files) found from their content alone: centres of mass, a search over rotations and shifts, a rigid fit
    at coarse levels. A scan tilted by 30 degrees, or whose origin is far from its head, starts next to its answer.
    One thread: greedy's multi-threaded sums differ between runs in their last digits, and the start must not."""
    threads = "-d 3 -threads 1"
    greedy(f"{threads} -V 0 -i {fixed} {moving} -moments 1 -o {matrix}")
    greedy(f"{threads} -i {fixed} {moving} {_START} -ia {matrix} -o {matrix}")


def itk_transform(matrix: str, out: str) -> str:
    """Greedy's RAS matrix file ``matrix`` (fixed to moving point) as an ITK/ANTs affine transform file ``out``
    (LPS), for ``ants.registration(initial_transform=...)``; returns ``out``."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps = flip @ np.loadtxt(matrix) @ flip
    transform = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, matrix=lps[:3, :3], translation=lps[:3, 3]
    )
    ants.write_transform(transform, out)
    return out


def initial_transform(
    path: str | os.PathLike, image: ants.ANTsImage, template: Template, folder: str
) -> tuple[str, ants.ANTsImage]:
    """The start of :func:`start_from_content` for the scan at ``path`` (deepbet's brain of ``image``) onto
    ``template``'s brain at 2 mm: the paper profile's robust start.

    Returns:
        the ITK transform file (in ``folder``) and deepbet's brain mask (an image on the scan's grid).
    """
    mask = _like(image, brain_mask(path))
    spacing = max(REGISTRATION_MM, *template.image.spacing)
    files = {name: str(Path(folder) / f"start_{name}.nii") for name in ("fixed", "brain")}
    ants.image_write(_at(template.image * template.brain_mask, spacing), files["fixed"])
    ants.image_write(_at(image * mask, spacing), files["brain"])
    matrix = str(Path(folder) / "start.mat")
    start_from_content(files["fixed"], files["brain"], matrix)
    return itk_transform(matrix, str(Path(folder) / "start_itk.mat")), mask


def _threads() -> int:
    return int(os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS") or os.cpu_count() or 1)
