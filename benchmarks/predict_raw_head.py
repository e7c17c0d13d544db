"""Benchmark: ``axial-monai predict`` on a real raw head scan, from the scanner file to maps and region tables.

The scan is Colin27 with skull (Debian ``mricron-data``: ``/usr/share/mricron/templates/ch2.nii.gz``, 181 x 217 x 181
at 1 mm), moved by a rigid transform (rotations of 8, -5 and 12 degrees, shift of 12, -9 and 15 mm) so that it is
not already aligned with the template. The model is a demo-trained run (``axial-monai demo``: 97 x 115 x 97 grid
of 2 mm), which records no preprocessing profile, so ``predict`` uses the default one (``fast``; ``--profile paper``
for the AXIAL/Clinica one). The command runs twice in fresh processes with a fresh preprocessing cache: the first
run preprocesses (the profile's brain mask, bias field and registration to the run's template), the second finds
the scan in the cache; the ratio of the two is the share of the time spent on preprocessing.

    python benchmarks/predict_raw_head.py --model runs/axial [--profile fast|paper]
        [--out benchmarks/results/predict_raw_head.json]

Wall times depend on what else runs on the machine: the load average at the start and the CPU time of the command
(its own and its children's) are recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import nibabel.processing
import numpy as np
import torch
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parents[1]
COLIN = Path("/usr/share/mricron/templates/ch2.nii.gz")


def moved_head(out: Path) -> Path:
    """Colin27 with skull at 1 mm, rotated by (8, -5, 12) degrees and shifted by (12, -9, 15) mm."""
    image = nib.load(COLIN)
    rigid = np.eye(4)
    rigid[:3, :3] = Rotation.from_euler("xyz", (8, -5, 12), degrees=True).as_matrix()
    rigid[:3, 3] = (12.0, -9.0, 15.0)
    moved = nibabel.processing.resample_from_to(image, (image.shape, np.linalg.inv(rigid) @ image.affine), order=1)
    nib.save(nib.Nifti1Image(np.asarray(moved.dataobj, np.float32), image.affine), out)
    return out


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds of the child processes, and the output of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/axial", help="a demo-trained run (axial-monai demo)")
    parser.add_argument("--profile", default=None, help="the preprocessing profile (default: the model's)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "predict_raw_head.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="axial-predict-"))
    head = moved_head(work / "colin27_moved.nii.gz")
    env = dict(os.environ, AXIAL_MONAI_CACHE=str(work / "cache"))
    load = os.getloadavg()[0]
    runs = []
    for name in ("first", "cached"):
        out = work / name
        cmd = [sys.executable, "-m", "axial_monai", "predict", str(head), "--model", args.model, "--explain"]
        cmd += ["--out", str(out)] + (["--profile", args.profile] if args.profile else [])
        wall, cpu, printed = timed(cmd, env)
        prediction = json.loads((out / "colin27_moved" / "prediction.json").read_text())
        runs.append(
            {
                "run": name,
                "wall_seconds": round(wall, 1),
                "cpu_seconds": round(cpu, 1),
                "preprocessing": prediction["preprocessing"],
                "prediction": prediction["prediction"],
                "probabilities": prediction["probabilities"],
                "outputs": sorted(p.name for p in (out / "colin27_moved").iterdir()),
            }
        )
        print(printed)
    result = {
        "command": "axial-monai predict colin27_moved.nii.gz --model runs/axial --explain"
        + (f" --profile {args.profile}" if args.profile else ""),
        "scan": "Colin27 with skull (mricron-data ch2.nii.gz, 181 x 217 x 181, 1 mm), rigidly moved",
        "runs": runs,
        "cached_over_first_wall_ratio": round(runs[1]["wall_seconds"] / runs[0]["wall_seconds"], 3),
        "load_average_at_start": round(load, 1),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
