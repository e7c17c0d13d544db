"""Benchmark: cost of each explanation method as a multiple of one forward pass, measured in one process.

For the bundle's demo network (``AxialNet``: coronal, 24 slices, 64 px, resnet18) on the demo grid (2 mm,
97 x 115 x 97), each method of :func:`axial_monai.explain.explain_scan` with the settings of ``explain.json``
(SmoothGrad and Integrated Gradients sample counts, occlusion window) is timed against a bare ``forward``
(batch of one, no gradient), interleaved so that load changes hit all alike; the median over ``--repeats`` runs
is reported (occlusion, hundreds of forward passes, is timed ``--occlusion-repeats`` times).

    python benchmarks/explain_cost.py [--network axialnet|triplanar] [--repeats 5]

Writes ``benchmarks/results/explain_cost.json`` (or ``--out``) with the command, machine and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from axial_monai.explain import METHODS, ExplainSettings, explain_scan
from axial_monai.networks import AxialNet, TriPlanarAxialNet

ROOT = Path(__file__).resolve().parents[1]


def _explain_json_settings(methods, control_mean: np.ndarray) -> ExplainSettings:
    """The settings of bundle/configs/explain.json, for the given methods (``control_mean``: the run's mean control
    scan, which a trained checkpoint carries; any volume costs the same)."""
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundle" / "configs" / "explain.json"))
    keys = {
        "smoothgrad_samples": "smoothgrad_samples",
        "smoothgrad_noise": "smoothgrad_noise",
        "ig_steps": "ig_steps",
        "ig_baseline": "ig_baseline",
        "ig_sign": "ig_sign",
        "occlusion_window_mm": "occlusion_window_mm",
        "occlusion_stride_mm": "occlusion_stride_mm",
        "occlusion_baseline": "occlusion_baseline",
        "batch_size": "explain_batch_size",
        "cam_normalization": "cam_normalization",
    }
    return ExplainSettings(methods=methods, control_mean=control_mean, **{k: parser[v] for k, v in keys.items()})


def _median_times(fns, repeats: int) -> list[float]:
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=("axialnet", "triplanar"), default="axialnet")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--occlusion-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "explain_cost.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.network == "axialnet":
        net = AxialNet(backbone="resnet18", plane=1, num_slices=24, image_size=64, freeze=0.0).eval()
        description = "AxialNet(resnet18, coronal, 24 slices, 64 px)"
    else:
        net = TriPlanarAxialNet(backbone="resnet18", num_slices=24, image_size=64, freeze=0.0).eval()
        description = "TriPlanarAxialNet(resnet18, 24 slices x 3 planes, 64 px)"
    # a brain-like volume: positive inside an ellipsoid, 0 outside (the maps only cover the brain)
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in (97, 115, 97)), indexing="ij"))
    brain = (grid**2).sum(0) < 0.7
    volume = np.where(brain, np.random.default_rng(0).uniform(0.2, 1.0, brain.shape), 0).astype(np.float32)
    image = MetaTensor(torch.from_numpy(volume)[None], affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    x = image.as_tensor()[None]
    control_mean = np.where(brain, 0.6, 0).astype(np.float32)  # stands in for the run's mean control scan

    def forward():
        with torch.no_grad():
            net(x)

    def method(*names):
        settings = _explain_json_settings(list(names), control_mean)
        return lambda: explain_scan(net, image, settings)

    cheap = [m for m in METHODS if "occlusion" not in m]
    times = _median_times([forward] + [method(m) for m in cheap], args.repeats)
    t_forward, ratios = times[0], dict(zip(cheap, (t / times[0] for t in times[1:]), strict=True))
    t_occ = _median_times([forward, method("occlusion")], args.occlusion_repeats)
    ratios["occlusion"] = t_occ[1] / t_occ[0]
    config = ConfigParser()
    config.read_config(str(ROOT / "bundle" / "configs" / "explain.json"))
    default_methods = list(config["methods"])
    t_default = _median_times([forward, method(*default_methods)], args.repeats)
    settings = _explain_json_settings(["smoothgrad"], control_mean)
    result = {
        "command": f"python benchmarks/explain_cost.py --network {args.network} --repeats {args.repeats} "
        f"--threads {args.threads}",
        "network": description,
        "volume": list(volume.shape),
        "settings": {
            "smoothgrad_samples": settings.smoothgrad_samples,
            "smoothgrad_noise": settings.smoothgrad_noise,
            "ig_steps": settings.ig_steps,
            "ig_baseline": settings.ig_baseline,
            "ig_sign": settings.ig_sign,
            "occlusion_window_mm": settings.occlusion_window_mm,
            "occlusion_stride_mm": settings.occlusion_stride_mm,
            "batch_size": settings.batch_size,
        },
        "forward_s": round(t_forward, 4),
        "cost_over_forward": {k: round(v, 1) for k, v in ratios.items()},
        "default_methods": default_methods,
        "default_method_over_forward": round(t_default[1] / t_default[0], 1),
        "machine": {
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
