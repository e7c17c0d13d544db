"""The fast preprocessing profile: a raw T1 head scan onto a template grid in seconds on a CPU.

Per scan (:func:`preprocess_fast`):

1. Brain extraction first, on the raw scan in its own space: deepbet (a CNN; its weights ship inside its wheel,
   nothing is downloaded). A brain mask makes every later step smaller and keeps the skull, neck and face out of
   the registration.
2. Bias-field correction: N4 fitted inside that brain on a 2 mm copy, two fitting levels of 20 iterations,
   then divided out at the scan's own resolution.
3. Registration of that brain to the template's brain on a grid of at least 2 mm with greedy (PICSL; its binary
   ships inside its wheel): affine from the image centres, then deformable (NCC on 2-voxel patches; the warp
   smoothed by 2 and 0.5 voxels).
4. One resampling: the corrected brain goes from the scan's own grid straight onto the template grid (affine and
   warp composed by greedy, linear), and so does the brain mask (nearest neighbour), which masks the result.

The choices were measured on Colin27 (``benchmarks/preprocess_profiles.py``; ``bundle/docs/preprocessing.md``):
N4 at the ANTs defaults on the 1 mm head took 45 s, this one 4 s (correlation inside the brain 0.988 with the
default's); ANTs SyNQuick at 2 mm reached a template correlation of 0.67 in 11 s, greedy 0.85 in 8 s.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ants
import nibabel as nib
import numpy as np

from ..errors import InputError
from .pipeline import PreprocessedScan, jacobian_range
from .templates import Template

__all__ = ["BRAIN_ML", "REGISTRATION_MM", "preprocess_fast", "brain_mask", "greedy"]

#: the volume (ml) of a human brain mask (deepbet's masks include the CSF around the brain: about 1100 to 2000 ml).
BRAIN_ML = (500.0, 2800.0)
#: the finest voxel size the registration runs at (mm).
REGISTRATION_MM = 2.0
_N4 = {"shrink_factor": 2, "convergence": {"iters": [20, 20], "tol": 1e-6}}
_AFFINE = "-V 0 -a -dof 12 -ia-image-centers -n 100x50x10 -m NCC 2x2x2"
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
    _, mask, _ = _extractor().run(image)
    found = (np.asarray(mask.dataobj) > 0).reshape(image.shape[:3])
    volume = found.sum() * float(np.prod(image.header.get_zooms()[:3])) / 1000.0
    if not BRAIN_ML[0] <= volume <= BRAIN_ML[1]:
        raise InputError(
            f"{path}: no brain found (deepbet's brain mask holds {volume:.0f} ml, a brain {BRAIN_ML[0]}-{BRAIN_ML[1]} "
            "ml); is it a T1 head scan?"
        )
    return found


def greedy(arguments: str) -> None:
    """Run one greedy command (``picsl_greedy.Greedy3D``), e.g. ``"-d 3 -i fixed.nii.gz moving.nii.gz -a ..."``;
    what it prints (progress, even with ``-V 0``) is dropped."""
    with _output_dropped():
        from picsl_greedy import Greedy3D

        Greedy3D().execute(arguments)


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


def _bias_corrected(image: ants.ANTsImage, mask: ants.ANTsImage) -> np.ndarray:
    """``image`` divided by the N4 bias field fitted inside ``mask`` on a 2 mm copy; 0 outside the mask."""
    spacing = (max(REGISTRATION_MM, *image.spacing),) * 3
    small = ants.resample_image(image, spacing, use_voxels=False, interp_type=0)
    small_mask = ants.resample_image_to_target(mask, small, interp_type="nearestNeighbor")
    bias = ants.n4_bias_field_correction(small, mask=small_mask, return_bias_field=True, **_N4)
    field = ants.resample_image_to_target(bias, image, interp_type="linear").numpy()
    inside = (mask.numpy() > 0) & (field > 0)
    return np.where(inside, image.numpy() / np.where(inside, field, 1.0), 0.0)


def preprocess_fast(path: str | os.PathLike, image: ants.ANTsImage, template: Template) -> PreprocessedScan:
    """Preprocess one T1w scan: brain mask, N4, greedy registration to ``template``, one resampling.

    Args:
        path: the scan's NIfTI file (deepbet reads it).
        image: the same scan as read by :func:`~axial_monai.preprocess.pipeline.read_t1w`.
        template: the registration target and its brain mask (the result's grid).

    Returns:
        the :class:`~axial_monai.preprocess.pipeline.PreprocessedScan`: the brain-extracted, bias-corrected image
        on the template grid (float32, background 0); the metrics ``similarity_cc`` and ``similarity_mi`` (as the
        paper profile: in the template brain mask), ``mask_dice`` (the scan's brain mask carried onto the template
        against the template's brain mask), ``jacobian_min``/``jacobian_max`` (of the warp, inside the template
        brain) and ``brain_volume_ml`` (of the scan's brain mask); and deepbet's brain mask on the scan's grid.

    Raises:
        InputError: if deepbet finds no brain.
    """
    mask = brain_mask(path)
    if mask.shape != tuple(image.shape):
        raise InputError(f"{path}: the brain mask's shape {mask.shape} is not the scan's {tuple(image.shape)}.")
    mask_image = _like(image, mask)
    brain = _like(image, _bias_corrected(image, mask_image))
    spacing = max(REGISTRATION_MM, *template.image.spacing)
    fixed = ants.resample_image(template.image * template.brain_mask, (spacing,) * 3, use_voxels=False, interp_type=0)
    fixed_mask = ants.resample_image_to_target(template.brain_mask, fixed, interp_type="nearestNeighbor")
    moving = ants.resample_image(brain, (spacing,) * 3, use_voxels=False, interp_type=0)
    with tempfile.TemporaryDirectory(prefix="axial-monai-fast-") as tmp:
        files = {name: str(Path(tmp) / f"{name}.nii.gz") for name in ("fixed", "moving", "reference", "brain", "mask")}
        for name, data in (("fixed", fixed), ("moving", moving), ("reference", template.image), ("brain", brain)):
            ants.image_write(data, files[name])
        ants.image_write(mask_image, files["mask"])
        affine, warp = str(Path(tmp) / "affine.mat"), str(Path(tmp) / "warp.nii.gz")
        greedy(f"-d 3 -threads {_threads()} -i {files['fixed']} {files['moving']} {_AFFINE} -o {affine}")
        greedy(f"-d 3 -threads {_threads()} -i {files['fixed']} {files['moving']} -it {affine} {_DEFORMABLE} -o {warp}")
        out, out_mask = str(Path(tmp) / "out.nii.gz"), str(Path(tmp) / "out_mask.nii.gz")
        greedy(
            f"-d 3 -V 0 -threads {_threads()} -rf {files['reference']} -rm {files['brain']} {out} -ri NN "
            f"-rm {files['mask']} {out_mask} -r {warp} {affine}"
        )
        warped, warped_mask = ants.image_read(out), ants.image_read(out_mask)
        jacobian = jacobian_range(fixed, [warp], fixed_mask)
    result = warped * (warped_mask > 0.5)
    template_mask = template.brain_mask.numpy() > 0
    carried = warped_mask.numpy() > 0.5
    metrics = {
        "similarity_cc": -float(
            ants.image_similarity(template.image, result, "Correlation", fixed_mask=template.brain_mask)
        ),
        "similarity_mi": -float(
            ants.image_similarity(template.image, result, "MattesMutualInformation", fixed_mask=template.brain_mask)
        ),
        "mask_dice": float(2 * (carried & template_mask).sum() / max(carried.sum() + template_mask.sum(), 1)),
        **jacobian,
        "brain_volume_ml": float(mask.sum() * np.prod(image.spacing) / 1000.0),
    }
    return PreprocessedScan(result.clone("float"), metrics, mask)


def _threads() -> int:
    return int(os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS") or os.cpu_count() or 1)
