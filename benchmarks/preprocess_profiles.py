"""Benchmark: the fast and the paper preprocessing profiles on real and synthetic raw scans, side by side.

Cases (all offline):

* ``colin27-*``: Colin27 with skull (Debian ``mricron-data``: ``ch2.nii.gz``, 181 x 217 x 181 at 1 mm) moved by a
  rigid transform: the one of ``predict_raw_head.py`` (rotation 8, -5, 12 degrees; shift 12, -9, 15 mm) and
  random ones (up to 12 degrees about each axis, 15 mm); the reference brain is ``ch2bet`` moved the same way;
* ``demo-*``: scans of the demo cohort (brain only, 2 mm) put through a known synthetic deformation (a random
  rotation and shift and a smooth random displacement field of up to 6 mm); the reference brain is the deformed
  scan's support.

Each case is preprocessed by each profile onto the same grid: the default template (MNI152NLin2009cAsym) at 2 mm,
the grid of the demo model, as ``axial-monai predict`` does (the paper profile registers to the template at 1 mm
and is resampled to 2 mm and masked, the fast profile registers at 2 mm and resamples once). Per case and profile:
wall seconds, brain Dice of the profile's brain mask on the scan's own grid against the reference, Pearson
correlation of the result with the template inside the template's brain, the pipeline's ``similarity_cc``
(squared correlation, ANTs) and the Jacobian range of the registration inside the template brain.

    python benchmarks/preprocess_profiles.py [--colin-seeds 0,1,2] [--demo 2] [--profiles fast,paper]
        [--out benchmarks/results/preprocess_profiles.json] [--keep]

``--keep`` keeps the rows of the other profiles from an earlier result in ``--out`` (e.g. to rerun the fast profile
alone on a quiet machine beside the paper profile's slow rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import ants
import nibabel as nib
import nibabel.processing
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parents[1]
COLIN = Path("/usr/share/mricron/templates/ch2.nii.gz")
COLIN_BRAIN = Path("/usr/share/mricron/templates/ch2bet.nii.gz")


def rigid(angles: tuple[float, float, float], shift: tuple[float, float, float]) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    matrix[:3, 3] = shift
    return matrix


def moved(image: nib.Nifti1Image, transform: np.ndarray, order: int = 1) -> nib.Nifti1Image:
    """``image`` whose content moved by ``transform`` (world mm), on its own grid."""
    target = (image.shape[:3], np.linalg.inv(transform) @ image.affine)
    out = nibabel.processing.resample_from_to(image, target, order=order)
    return nib.Nifti1Image(np.asarray(out.dataobj, np.float32), image.affine)


def deformed(image: nib.Nifti1Image, seed: int, max_mm: float = 6.0) -> nib.Nifti1Image:
    """``image`` rotated, shifted and warped by a smooth random displacement of up to ``max_mm`` mm."""
    rng = np.random.default_rng(seed)
    data = np.asarray(image.dataobj, np.float32)
    spacing = np.sqrt((image.affine[:3, :3] ** 2).sum(0))
    field = [ndimage.gaussian_filter(rng.normal(size=data.shape), 12.0 / spacing.mean()) for _ in range(3)]
    scale = max_mm / max(np.abs(f).max() for f in field)
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in data.shape], indexing="ij")
    coords = [g + f * scale / s for g, f, s in zip(grid, field, spacing, strict=True)]
    warped = nib.Nifti1Image(ndimage.map_coordinates(data, coords, order=1), image.affine)
    angles = tuple(rng.uniform(-10, 10, 3))
    return moved(warped, rigid(angles, tuple(rng.uniform(-12, 12, 3))))


def cases(work: Path, colin_seeds: list[int], demo: int) -> list[dict]:
    found = []
    if COLIN.is_file():
        transforms = [("colin27-predict", rigid((8, -5, 12), (12, -9, 15)))]
        for seed in colin_seeds:
            rng = np.random.default_rng(seed)
            transforms.append(
                (f"colin27-seed{seed}", rigid(tuple(rng.uniform(-12, 12, 3)), tuple(rng.uniform(-15, 15, 3))))
            )
        head, brain = nib.load(COLIN), nib.load(COLIN_BRAIN)
        for name, transform in transforms:
            path = work / f"{name}.nii.gz"
            nib.save(moved(head, transform), path)
            found.append({"case": name, "path": path, "reference": np.asarray(moved(brain, transform).dataobj) > 1})
    if demo:
        from axial_monai.data.demo import prepare_demo_cohort

        cohort = Path(prepare_demo_cohort(str(work / "cohorts"), n_subjects=8, spacing=2.0, seed=0))
        datalist = json.loads((cohort / "datalist.json").read_text())
        items = [*datalist["training"], *datalist["validation"], *datalist["test"]][:demo]
        for index, item in enumerate(items):
            image = deformed(nib.load(cohort / item["image"]), seed=index)
            path = work / f"demo-{index}.nii.gz"
            nib.save(image, path)
            found.append({"case": f"demo-{index}", "path": path, "reference": np.asarray(image.dataobj) > 0.05})
    return found


def on_model_grid(profile: str, path: Path, template_2mm, template_1mm):
    """Preprocess ``path`` with ``profile`` onto the demo model's grid, as ``axial-monai predict`` does (the paper
    profile registers on the 1 mm template, then goes onto the 2 mm grid, masked): ``(result, brain, seconds)``."""
    from axial_monai.preprocess.pipeline import ants_environment, preprocess_scan

    start = time.perf_counter()
    with ants_environment(None, 42):
        if profile == "fast":
            result = preprocess_scan(path, template_2mm, "fast")
            brain = result.brain
        else:
            result = preprocess_scan(path, template_1mm, "paper")
            brain = ants.resample_image_to_target(result.brain, template_2mm.image, interp_type="linear")
            brain = brain * template_2mm.brain_mask
    return result, brain, time.perf_counter() - start


def dice(mask: np.ndarray, reference: np.ndarray) -> float:
    return round(float(2 * (mask & reference).sum() / (mask.sum() + reference.sum())), 4)


def run_profile(profile: str, case: dict, template_2mm, template_1mm) -> dict:
    from axial_monai.preprocess.pipeline import template_similarity

    result, brain, seconds = on_model_grid(profile, case["path"], template_2mm, template_1mm)
    return {
        "case": case["case"],
        "profile": profile,
        "seconds": round(seconds, 1),
        "brain_dice": dice(result.native_mask, case["reference"]),
        "template_correlation": round(template_similarity(template_2mm, brain)["template_correlation"], 4),
        "similarity_cc": round(result.metrics["similarity_cc"], 4),
        "jacobian_min": round(result.metrics["jacobian_min"], 3),
        "jacobian_max": round(result.metrics["jacobian_max"], 3),
    }


def kept_rows(out: str, profiles: list[str], keep: bool) -> tuple[list[dict], list[str]]:
    """With ``keep``: the rows of the other profiles in the earlier result ``out``, and that result's command."""
    earlier = json.loads(Path(out).read_text()) if keep and Path(out).is_file() else {}
    kept = [r for r in earlier.get("rows", []) if r["profile"] not in profiles]
    return kept, [earlier["command"]] if kept else []


def write_result(out: str, rows: list[dict], summary: dict, commands_of_kept_rows: list[str], **extra) -> None:
    result = {
        "command": f"python benchmarks/{Path(sys.argv[0]).name} " + " ".join(sys.argv[1:]),
        "commands_of_kept_rows": commands_of_kept_rows,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        **extra,
        "rows": rows,
        "summary": summary,
    }
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def summarise(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--colin-seeds", default="0,1,2")
    parser.add_argument("--demo", type=int, default=2, help="demo scans with a synthetic deformation")
    parser.add_argument("--profiles", default="fast,paper")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "preprocess_profiles.json"))
    parser.add_argument("--keep", action="store_true", help="keep the other profiles' rows of an earlier --out")
    args = parser.parse_args()
    from axial_monai.preprocess.templates import DEFAULT_TEMPLATE, load_template

    work = Path(tempfile.mkdtemp(prefix="axial-profiles-"))
    seeds = [int(s) for s in args.colin_seeds.split(",") if s]
    template_2mm = load_template(DEFAULT_TEMPLATE, resolution=2.0)
    template_1mm = load_template(DEFAULT_TEMPLATE)
    rows = []
    for case in cases(work, seeds, args.demo):
        for profile in args.profiles.split(","):
            row = run_profile(profile, case, template_2mm, template_1mm)
            print(json.dumps(row), flush=True)
            rows.append(row)
    profiles = args.profiles.split(",")
    kept, commands = kept_rows(args.out, profiles, args.keep)
    rows = kept + rows
    keys = ("seconds", "brain_dice", "template_correlation", "similarity_cc", "jacobian_min", "jacobian_max")
    summary = {}
    for profile in dict.fromkeys(r["profile"] for r in rows):
        mine = [r for r in rows if r["profile"] == profile]
        summary[profile] = {key: summarise([r[key] for r in mine]) for key in keys}
    grid = "MNI152NLin2009cAsym at 2 mm (97 x 115 x 97), the demo model's"
    write_result(args.out, rows, summary, commands, grid=grid)


if __name__ == "__main__":
    main()
