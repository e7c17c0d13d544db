"""A tiny Clinica-style BIDS tree for the preprocessing and datalist tests, and its pytest fixtures.

Six subjects with several sessions (``ses-M000``, ``ses-M012``, ...), ``participants.tsv`` and per-subject
``sub-X_sessions.tsv``. Each T1w image is a randomly deformed (affine + elastic, MONAI ``Rand3DElastic``) and
intensity-perturbed (bias field, gamma, noise, scale) copy of the shipped MNI152 2009c brain template at 4 mm,
placed at a scanner-like world offset. The shipped templates are brain-only, so "head" scans get a synthetic
skull: a dark CSF/bone shell and a bright scalp shell around the brain. One scan is stored in another voxel
orientation (LPS-like), and one (``CORRUPT``) is a truncated ``.nii.gz``.

Diagnoses (rows = subjects, the design behind the expected labels of ``test_clinica.py``)::

    sub-ADNI01  CN  M000, M012, M036
    sub-ADNI02  AD  M000, M012
    sub-ADNI03  MCI M000, MCI M012, MCI M036, AD M048   (sMCI at M000, pMCI at M012, M036 no follow-up)
    sub-ADNI04  MCI M000, AD M036                        (pMCI at M000)
    sub-ADNI05  MCI M000, MCI M012, CN M036              (M000 missing M036, M012 -> M048 missing; reverter)
    sub-ADNI06  MCI M000, n/a M012, MCI M024             (no M036: excluded; sMCI with a 24-month horizon)

Use the fixtures by importing them into a test module: ``from bids_fixture import bids_tree``.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
import pytest
from monai.transforms import Compose, Rand3DElastic, RandAdjustContrast, RandBiasField, RandGaussianNoise

from axial_monai.preprocess.templates import load_template

#: Fast preprocessing settings of the tests: 4 mm template, a short affine registration (shrink factors fit for
#: 4 mm), a short N4.
FAST = {
    "resolution": 4,
    "profile": "paper",  # the BIDS machinery, with a short registration; the fast profile: test_preprocess_fast.py
    "transform": "Affine",
    "registration_kwargs": {"aff_iterations": (200, 100), "aff_shrink_factors": (2, 1), "aff_smoothing_sigmas": (1, 0)},
    "n4_kwargs": {"convergence": {"iters": [20, 20], "tol": 1e-7}},
    "progress": False,
}

__all__ = [
    "SESSIONS",
    "PARTICIPANTS",
    "CORRUPT",
    "LPS_STORED",
    "BidsTree",
    "synthetic_t1w",
    "build_bids_tree",
    "tree_hashes",
    "bids_tree",
    "bids_tree_placeholder",
]

#: subject -> [(session, diagnosis or None, age)]
SESSIONS: dict[str, list[tuple[str, str | None, float]]] = {
    "sub-ADNI01": [("ses-M000", "CN", 70.0), ("ses-M012", "CN", 71.0), ("ses-M036", "CN", 73.0)],
    "sub-ADNI02": [("ses-M000", "AD", 75.5), ("ses-M012", "AD", 76.5)],
    "sub-ADNI03": [
        ("ses-M000", "MCI", 68.0),
        ("ses-M012", "MCI", 69.0),
        ("ses-M036", "MCI", 71.0),
        ("ses-M048", "AD", 72.0),
    ],
    "sub-ADNI04": [("ses-M000", "MCI", 80.0), ("ses-M036", "AD", 83.0)],
    "sub-ADNI05": [("ses-M000", "MCI", 66.0), ("ses-M012", "MCI", 67.0), ("ses-M036", "CN", 69.0)],
    "sub-ADNI06": [("ses-M000", "MCI", 77.0), ("ses-M012", None, 78.0), ("ses-M024", "MCI", 79.0)],
}
#: subject -> sex
PARTICIPANTS = {
    "sub-ADNI01": "F",
    "sub-ADNI02": "M",
    "sub-ADNI03": "F",
    "sub-ADNI04": "M",
    "sub-ADNI05": "F",
    "sub-ADNI06": "M",
}
#: the scan written as a truncated (corrupt) .nii.gz
CORRUPT = ("sub-ADNI06", "ses-M012")
#: the scan whose voxels are stored in another orientation (same world geometry)
LPS_STORED = ("sub-ADNI02", "ses-M012")
#: subjects whose scans get no synthetic skull (brain-only inputs)
BRAIN_ONLY = ("sub-ADNI02", "sub-ADNI05")


@dataclass
class BidsTree:
    """A fixture BIDS tree.

    Attributes:
        root: BIDS root.
        images: (subject, session) -> T1w path.
        corrupt: path of the truncated image.
        resolution: voxel size (mm) of the images.
    """

    root: Path
    images: dict[tuple[str, str], Path]
    corrupt: Path
    resolution: float


@functools.lru_cache(maxsize=2)
def _padded_template(resolution: float) -> tuple[ants.ANTsImage, list[np.ndarray]]:
    """The 2009c brain template at ``resolution`` padded by 24 mm, and its brain mask dilated by 0, 1, 2, 4 voxels."""
    template = load_template("MNI152NLin2009cAsym", resolution=resolution)
    pad = int(np.ceil(24 / resolution))
    brain = ants.pad_image(template.brain_mask, pad_width=[(pad, pad)] * 3)
    shells = [brain.numpy() > 0] + [ants.iMath(brain, "MD", radius).numpy() > 0 for radius in (1, 2, 4)]
    return ants.pad_image(template.image, pad_width=[(pad, pad)] * 3), shells


atexit.register(_padded_template.cache_clear)  # free the ANTs image before the bindings are torn down


def synthetic_t1w(seed: int, resolution: float = 4.0, skull: bool = True) -> nib.Nifti1Image:
    """A deformed, intensity-perturbed copy of the MNI152 2009c brain template, optionally with a synthetic skull.

    Args:
        seed: random seed (deformation, intensities, world offset).
        resolution: voxel size in mm.
        skull: add CSF/bone (dark) and scalp (bright) shells around the brain.

    Returns:
        an int16 NIfTI image (like a scanner's), world origin shifted by up to 20 mm from MNI.
    """
    image, (brain, csf, bone, scalp) = _padded_template(resolution)
    data = image.numpy()
    bright = float(np.percentile(data[brain], 99))
    if skull:
        data = np.where(csf & ~brain, 0.15 * bright, data)
        data = np.where(bone & ~csf, 0.05 * bright, data)
        data = np.where(scalp & ~bone, 0.8 * bright, data)
    perturb = Compose(
        [
            Rand3DElastic(
                sigma_range=(4.0, 5.0),
                magnitude_range=(0.5, 1.0),
                prob=1.0,
                rotate_range=(0.08, 0.08, 0.08),
                translate_range=(1.5, 1.5, 1.5),
                scale_range=(0.05, 0.05, 0.05),
                padding_mode="zeros",
            ),
            RandBiasField(degree=3, coeff_range=(0.05, 0.15), prob=1.0),
            RandAdjustContrast(prob=1.0, gamma=(0.8, 1.25)),
            RandGaussianNoise(prob=1.0, std=0.02),
        ]
    )
    perturb.set_random_state(seed=seed)
    volume = np.asarray(perturb(data[None] / bright)[0], dtype=np.float32)
    rng = np.random.default_rng(seed)
    volume = np.clip(volume * rng.uniform(400, 900), 0, 32000).astype(np.int16)
    affine = ants.to_nibabel_nifti(image).affine.copy()
    affine[:3, 3] += rng.uniform(-20, 20, size=3)
    return nib.Nifti1Image(volume, affine)


def build_bids_tree(root: str | os.PathLike, resolution: float = 4.0, images: bool = True) -> BidsTree:
    """Write the fixture BIDS tree under ``root`` (see the module docstring).

    Args:
        root: folder to create the tree in.
        resolution: voxel size of the synthetic scans in mm.
        images: write synthetic scans; ``False`` writes tiny 2x2x2 placeholders (enough for datalist tests).

    Returns:
        the :class:`BidsTree`.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "fixture", "BIDSVersion": "1.9.0"}\n')
    rows = ["participant_id\tsex"] + [f"{subject}\t{sex}" for subject, sex in PARTICIPANTS.items()]
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    found: dict[tuple[str, str], Path] = {}
    for number, (subject, sessions) in enumerate(SESSIONS.items()):
        subject_dir = root / subject
        subject_dir.mkdir(exist_ok=True)
        lines = ["session_id\tdiagnosis\tage"] + [
            f"{session}\t{diagnosis or 'n/a'}\t{age}" for session, diagnosis, age in sessions
        ]
        (subject_dir / f"{subject}_sessions.tsv").write_text("\n".join(lines) + "\n")
        for visit, (session, _, _) in enumerate(sessions):
            anat = subject_dir / session / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            path = anat / f"{subject}_{session}_T1w.nii.gz"
            if images:
                scan = synthetic_t1w(seed=100 * number + visit, resolution=resolution, skull=subject not in BRAIN_ONLY)
                if (subject, session) == LPS_STORED:
                    scan = scan.as_reoriented(nib.orientations.axcodes2ornt(("L", "P", "S")))
            else:
                scan = nib.Nifti1Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4))
            nib.save(scan, path)
            found[(subject, session)] = path
    corrupt = found[CORRUPT]
    payload = corrupt.read_bytes()
    corrupt.write_bytes(payload[: len(payload) // 3])
    return BidsTree(root=root, images=found, corrupt=corrupt, resolution=resolution)


def tree_hashes(root: str | os.PathLike) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    root = Path(root)
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def bids_tree(tmp_path_factory: pytest.TempPathFactory) -> BidsTree:
    """The fixture tree with synthetic 4 mm scans (one corrupt)."""
    return build_bids_tree(tmp_path_factory.mktemp("bids"), resolution=4.0, images=True)


@pytest.fixture(scope="module")
def bids_tree_placeholder(tmp_path_factory: pytest.TempPathFactory) -> BidsTree:
    """The fixture tree with tiny placeholder images (for datalist tests)."""
    return build_bids_tree(tmp_path_factory.mktemp("bids_placeholder"), images=False)
