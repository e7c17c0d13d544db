"""Benchmark: are two seeded training runs identical on this device, with and without ``deterministic``?

Each run is the user's command, ``python -m monai.bundle run training --config_file bundle/configs/train.json``,
in its own process (so the cuBLAS workspace setting of ``deterministic: true`` takes effect before CUDA starts),
on the same small demo cohort and seed. For every setting (``deterministic`` false / true, optionally ``amp``) it
runs ``--repeats`` trainings and compares each with the first: whether the saved weights (``model.pt``) are
bit-identical, their largest absolute difference, and the largest difference of the test probabilities
(``eval-test/predictions.csv``). The wall time of each run gives the cost of the switch.

    python benchmarks/gpu_determinism.py --device cuda --out benchmarks/results/gpu_h200/determinism.json
    python benchmarks/gpu_determinism.py --device cpu --epochs 1 --out /tmp/determinism.json   # the code path

Writes JSON after every run, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, command, machine, write_result  # noqa: E402

from axial_monai.data.demo import prepare_demo_cohort  # noqa: E402
from axial_monai.run import load_weights  # noqa: E402


def train(out: Path, cohort: str, device: str, args, **settings) -> float:
    """One training through the bundle in a fresh process; returns its wall time in seconds."""
    overrides = {"dataset_dir": cohort, "output_dir": str(out), "device": f"$torch.device('{device}')",
                 "seed": args.seed, "epochs": args.epochs, "num_slices": args.num_slices,
                 "image_size": args.image_size, "batch_size": args.batch_size, "num_workers": 0,
                 "cache": "memory", **settings}  # fmt: skip
    cli = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "bundle/configs/train.json",
           "--meta_file", "bundle/configs/metadata.json"]  # fmt: skip
    for key, value in overrides.items():
        cli += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    start = time.perf_counter()
    proc = subprocess.run(cli, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise RuntimeError(f"training failed ({' '.join(cli)}):\n" + "\n".join(proc.stderr.splitlines()[-40:]))
    return time.perf_counter() - start


def compare(first: Path, other: Path) -> dict:
    a, b = (load_weights(p / "models" / "model.pt") for p in (first, other))
    diff = max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)
    pa, pb = (pd.read_csv(p / "eval-test" / "predictions.csv") for p in (first, other))
    prob = [c for c in pa.columns if c.startswith("prob")]
    return {
        "weights_identical": all(torch.equal(a[k], b[k]) for k in a),
        "max_weight_diff": diff,
        "max_probability_diff": float((pa[prob] - pb[prob]).abs().to_numpy().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num-slices", type=int, default=24)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--amp", action="store_true", help="also compare runs with amp: true")
    parser.add_argument("--work", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="axial-det-"))
    cohort = prepare_demo_cohort(str(work / "cohort"), n_subjects=24, spacing=3.0, seed=args.seed)
    settings = [{"deterministic": False}, {"deterministic": True}]
    if args.amp:
        settings += [{"deterministic": False, "amp": True}, {"deterministic": True, "amp": True}]
    result = {"command": command(), "machine": machine(args.device), "settings": []}
    for setting in settings:
        name = ",".join(f"{k}={v}" for k, v in setting.items())
        runs = [work / f"{name}-{i}" for i in range(args.repeats)]
        entry = {"setting": setting, "wall_s": [], "repeats": []}
        result["settings"].append(entry)
        for i, run in enumerate(runs):
            entry["wall_s"].append(round(train(run, cohort, args.device, args, **setting), 1))
            if i:
                entry["repeats"].append(compare(runs[0], run))
            write_result(result, args.out)
            print(name, entry, flush=True)


if __name__ == "__main__":
    main()
