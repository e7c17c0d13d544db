"""Benchmark: does the compact cache cost accuracy? The demo trained with and without it, on two seeds.

Runs the README's demo command (``python -m monai.bundle run training --config_file bundle/configs/train.json``)
with ``--cache disk`` (the default: uint8, a fresh cache folder, so the build is timed too) and ``--cache none``
(every scan decoded on every access, float32), for seeds 0 and 1; the seed-to-seed spread without the cache is the
run-to-run noise to compare the cache's effect with. Test metrics of the demo saturate, so the test log-loss (from
predictions.csv) is reported as a finer measure. Uses the demo cohort of ``~/.cache/axial_monai``.

    python benchmarks/demo_cache.py [--seeds 0 1] [--out benchmarks/results/demo_cache.json]
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
    parser.add_argument("--out", default=str(RESULTS / "demo_cache.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="axial-democache-"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    rows: list[dict] = []
    result = {"command": command(), "machine": machine("cpu"), "results": rows}
    for seed in args.seeds:
        for cache in args.caches:
            out = work / f"{cache}-seed{seed}"
            cmd = [sys.executable, "-m", "monai.bundle", "run", "training"]
            cmd += ["--config_file", str(ROOT / "bundle/configs/train.json"), "--output_dir", str(out)]
            cmd += ["--seed", str(seed), "--cache", cache, "--cache_dir", str(work / f"volumes-seed{seed}")]
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
            write_result(result, args.out)
    print(table(rows, ["cache", "seed", "wall_seconds", "test_scans", *METRICS, "log_loss"]))
    print(result["machine"])


if __name__ == "__main__":
    main()
