"""Benchmark: time per scan and similarity to the template of the default 1 mm preprocessing (N4 + SyNQuick + mask).

The input is one real T1w head scan: Colin27 (``/usr/share/mricron/templates/ch2.nii.gz`` from the Debian package
``mricron-data``) moved off MNI by a random rigid transform and a scanner-like world offset, so the registration
has real work to do. Without that package, a deformed, intensity-perturbed 1 mm copy of the MNI template with a
synthetic skull (the test fixture's generator) is used instead. The scan is written to a temporary one-scan
BIDS tree and run through :func:`axial_monai.preprocess.preprocess_bids` with its defaults.

    python benchmarks/preprocess_time.py [--out_dir benchmarks/results] [--transform SyNQuick] [--input T1.nii.gz]

Writes ``<out_dir>/preprocess_time.json``.
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
import numpy as np

from axial_monai.preprocess import collect_qc, preprocess_bids

ROOT = Path(__file__).resolve().parents[1]
COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")


def moved_colin27(seed: int) -> ants.ANTsImage:
    """Colin27 rotated by up to 10 degrees about each axis, shifted by up to 10 mm, origin moved by up to 30 mm."""
    rng = np.random.default_rng(seed)
    image = ants.image_read(str(COLIN27), pixeltype="float")
    angles = np.deg2rad(rng.uniform(-10, 10, size=3))
    rotation = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [k for k in range(3) if k != axis]
        step = np.eye(3)
        step[i, i], step[i, j], step[j, i], step[j, j] = c, -s, s, c
        rotation = rotation @ step
    transform = ants.create_ants_transform(
        transform_type="AffineTransform",
        dimension=3,
        matrix=rotation,
        translation=rng.uniform(-10, 10, size=3),
        center=ants.get_center_of_mass(image),
    )
    moved = transform.apply_to_image(image, reference=image, interpolation="linear")
    moved.set_origin(tuple(np.asarray(moved.origin) + rng.uniform(-30, 30, size=3)))
    return moved


def synthetic_head(seed: int) -> nib.Nifti1Image:
    """The test fixture's deformed MNI template with a synthetic skull, at 1 mm."""
    sys.path.insert(0, str(ROOT / "tests"))
    from bids_fixture import synthetic_t1w

    return synthetic_t1w(seed=seed, resolution=1.0, skull=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--transform", default="SyNQuick")
    parser.add_argument("--input", default=None, help="a T1w NIfTI to use instead of the moved Colin27")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="axial-preprocess-bench-"))
    anat = work / "bids" / "sub-bench" / "ses-M000" / "anat"
    anat.mkdir(parents=True)
    scan = anat / "sub-bench_ses-M000_T1w.nii.gz"
    # the record names inputs without machine paths
    if args.input:
        source = f"user file {os.path.basename(args.input)}"
        nib.save(nib.load(args.input), scan)
    elif COLIN27.is_file():
        source = f"Colin27 ({COLIN27.name} of the Debian package mricron-data), random rigid move (seed {args.seed})"
        ants.image_write(moved_colin27(args.seed), str(scan))
    else:
        source = f"synthetic 1 mm head from the MNI152 2009c template (seed {args.seed})"
        nib.save(synthetic_head(args.seed), scan)

    start = time.perf_counter()
    summary = preprocess_bids(work / "bids", work / "out", transform=args.transform, progress=False)
    wall = time.perf_counter() - start
    row = collect_qc(summary.deriv_dir, write=False).iloc[0]
    if row["status"] != "ok":
        raise SystemExit(f"preprocessing failed: {row['error']}")
    output = nib.load(row["output_path"])
    result = {
        "input": source,
        "input_shape": list(nib.load(scan).shape),
        "transform": row["transform"],
        "template": row["space"],
        "output_shape": list(output.shape),
        "seconds_per_scan": round(float(row["runtime_s"]), 1),
        "wall_seconds_including_template_load": round(wall, 1),
        "similarity_cc": round(float(row["similarity_cc"]), 4),
        "similarity_mi": round(float(row["similarity_mi"]), 4),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "antspyx": ants.__version__,
            "itk_threads": os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "ITK default (all cores)"),
        },
    }
    out = Path(args.out_dir) / "preprocess_time.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
