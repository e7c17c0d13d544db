"""Shared pieces of the performance benchmarks: machine description, results, a synthetic 1 mm cohort, RSS.

Not a test helper: the benchmarks print tables and write JSON with repo-relative paths into benchmarks/results/.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# Peak dense (no 2:4 sparsity) throughput in TFLOP/s, from NVIDIA's data sheets (the "with sparsity" Tensor Core
# figures halved): H100/H200 (SXM5, NVL, PCIe) https://www.nvidia.com/en-us/data-center/h100/ and
# https://www.nvidia.com/en-us/data-center/h200/ ; A100 https://www.nvidia.com/en-us/data-center/a100/ .
# "fp32" is the CUDA-core FP32 rate; "tf32" is what float32 convolutions use by default in PyTorch
# (torch.backends.cudnn.allow_tf32 is True); "bf16" is the BF16 Tensor Core rate.
PEAK_TFLOPS = {
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
    "H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "H100": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
}


def device_peak(name: str) -> dict[str, float] | None:
    """Peak dense TFLOP/s of a CUDA device by its name (first table entry contained in it), or None."""
    return next((v for k, v in PEAK_TFLOPS.items() if k.lower() in name.lower()), None)


def machine(device: str = "cpu") -> dict:
    """What the benchmark ran on."""
    info = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "processor": platform.processor() or platform.machine(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def rel(path: str | os.PathLike) -> str:
    """A path relative to the repository (results hold no absolute paths)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return Path(path).name


def command() -> str:
    """The command line that ran this benchmark, with repo-relative paths."""
    args = [rel(a) if os.path.isabs(a) and os.path.exists(a) else a for a in sys.argv]
    return " ".join(["python", rel(sys.argv[0]), *args[1:]])


def write_result(result: dict, out: str | os.PathLike) -> Path:
    """Write JSON (absolute paths must not appear) and return the path."""
    text = json.dumps(result, indent=2, default=str)
    if str(ROOT) in text:
        raise ValueError("benchmark results must hold repo-relative paths only")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain text table."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def rss_mb() -> float:
    """Current resident set size of this process, MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def template_1mm() -> tuple[np.ndarray, np.ndarray]:
    """The real MNI ICBM152 2009c brain template (193 x 229 x 193, 1 mm): ``(int16 data, affine)``."""
    from axial_monai.data.atlas import template_path

    img = nib.load(template_path())
    return np.asarray(img.dataobj, dtype=np.int16), img.affine


def write_scans(folder: Path, n: int, seed: int = 0, prefix: str = "sub") -> list[Path]:
    """``n`` 1 mm scans of the template, each with its own intensity scale, shift and noise (int16 NIfTI)."""
    data, affine = template_1mm()
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        vol = np.roll(data.astype(np.float32) * rng.uniform(0.8, 1.2), int(rng.integers(-4, 5)), axis=i % 3)
        vol = np.where(vol > 0, vol + rng.normal(0, 1.5, vol.shape).astype(np.float32), 0)
        path = folder / f"{prefix}-{i:04d}_T1w.nii.gz"
        nib.save(nib.Nifti1Image(np.clip(vol, 0, None).astype(np.int16), affine), str(path))
        paths.append(path)
    return paths


def link_scans(sources: Sequence[Path], folder: Path, n: int, prefix: str = "sub") -> list[Path]:
    """``n`` distinct file names (hard links, no extra disk) cycling over ``sources``: a large cohort cheaply."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{prefix}-{i:05d}_T1w.nii.gz"
        if not path.exists():
            os.link(sources[i % len(sources)], path)
        paths.append(path)
    return paths
