"""Benchmark: wall time and test accuracy of the default demo, ``python -m monai.bundle run training``.

Runs the README's first command (without the install) in a fresh working directory with a fresh demo-cohort
cache, so cohort generation, caching, training and the final test evaluation are all counted.

    python benchmarks/demo_training.py [--out benchmarks/results/demo_training.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from axial_monai.configs import config_path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demo_training.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="axial-demo-"))
    config = config_path("train")
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(config)]
    env = dict(os.environ, AXIAL_MONAI_CACHE=str(work / "cache"))
    start = time.perf_counter()
    subprocess.run(cmd, cwd=work, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    metrics = json.loads((work / "runs/axial/eval-test/metrics.json").read_text())
    result = {
        "command": " ".join(["python", *cmd[1:-1], os.path.relpath(config, ROOT)]),  # no machine paths
        "wall_seconds": round(seconds, 1),
        "test_metrics": metrics["metrics"],
        "test_scans": metrics["num_scans"],
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
