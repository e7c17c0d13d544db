"""Benchmark: does the compact cache cost accuracy? The demo trained with and without it, on two seeds.

Runs the README's demo command (``python -m monai.bundle run training --config_file bundle/configs/train.json``)
with ``--cache disk`` (the default: uint8, a fresh cache folder, so the build is timed too) and ``--cache none``
(every scan decoded on every access, float32), for seeds 0 and 1; the seed-to-seed spread without the cache is the
run-to-run noise to compare the cache's effect with. Test metrics of the demo saturate, so the test log-loss (from
predictions.csv) is reported as a finer measure. Uses the demo cohort of ``~/.cache/axial_monai``.

    python benchmarks/demo_cache.py [--seeds 0 1] [--out benchmarks/results/demo_cache.json]
    python benchmarks/demo_cache.py --small --seeds 0 1 2   # the tests' small demo (3 mm, 40 subjects, 15 epochs)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import RESULTS, ROOT, command, machine, table, write_result

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "mcc", "auc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--caches", nargs="+", default=["disk", "none"])
    parser.add_argument("--small", action="store_true", help="the tests' small demo: 3 mm, 40 subjects, 15 epochs")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out_json = args.out or str(RESULTS / f"demo_cache{'_small' if args.small else ''}.json")
    work = Path(tempfile.mkdtemp(prefix="axial-democache-"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    extra: list[str] = []
    if args.small:  # the cohort and settings of the tests' trained_demo fixture
        from axial_monai.data.demo import prepare_demo_cohort

        cohort = prepare_demo_cohort(
            str(work / "cohort"), n_subjects=40, spacing=3.0, strength=0.9, val_fraction=0.25, test_fraction=0.25
        )
        extra = ["--dataset_dir", str(cohort), "--num_slices", "16", "--image_size", "64", "--epochs", "15"]
    rows: list[dict] = []
    result = {
        "command": command(),
        "machine": machine("cpu"),
        "demo": "small" if args.small else "default",
        "results": rows,
    }
    for seed in args.seeds:
        for cache in args.caches:
            out = work / f"{cache}-seed{seed}"
            cmd = [sys.executable, "-m", "monai.bundle", "run", "training"]
            cmd += ["--config_file", str(ROOT / "bundle/configs/train.json"), "--output_dir", str(out)]
            cmd += ["--seed", str(seed), "--cache", cache, "--cache_dir", str(work / f"volumes-seed{seed}"), *extra]
            start = time.perf_counter()
            subprocess.run(cmd, cwd=work, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            report = json.loads((out / "eval-test" / "metrics.json").read_text())
            preds = pd.read_csv(out / "eval-test" / "predictions.csv")
            p_true = np.where(preds["label"] == 1, preds["prob_AD"], preds["prob_CN"]).clip(1e-7, 1)
            rows.append(
                {
                    "cache": cache,
                    "seed": seed,
                    "wall_seconds": round(seconds, 1),
                    "test_scans": report["num_scans"],
                    **{k: round(report["metrics"][k], 4) for k in METRICS},
                    "log_loss": round(float(-np.log(p_true).mean()), 4),
                }
            )
            print(rows[-1], flush=True)
            write_result(result, out_json)
    print(table(rows, ["cache", "seed", "wall_seconds", "test_scans", *METRICS, "log_loss"]))
    print(result["machine"])


if __name__ == "__main__":
    main()
