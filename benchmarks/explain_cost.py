"""Benchmark: cost of the explanations relative to a bare forward pass, in one process.

* attention volume: ``plane_attention`` + placing the profiles in the volume + writing the NIfTI, against a bare
  ``forward`` (the target is <= 10 % extra);
* 3-plane GradCAM: one ``compute_map`` over all slices (forward + backward), per-plane CAM volumes and their
  product, against the same bare forward.

    python benchmarks/explain_cost.py [--image-size 224 --num-slices 80 --repeats 5]

Defaults are the bundle's demo network at the demo grid (2 mm, 97 x 115 x 97), tri-planar so that the
attention volume and the CAM cover three planes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.visualize import GradCAM

from axial_monai.explain import attention_volume, cam_volume, combine_planes, split_cams
from axial_monai.networks import TriPlanarAxialNet

ROOT = Path(__file__).resolve().parents[1]


def _median_times(fns, repeats: int) -> list[float]:
    """Median wall time of each function, measured interleaved so that load changes hit all of them alike."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-slices", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "explain_cost.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    net = TriPlanarAxialNet(num_slices=args.num_slices, image_size=args.image_size, backbone="resnet18").eval()
    x = torch.rand(1, 1, 97, 115, 97)
    shape, affine = tuple(x.shape[2:]), np.diag([2.0, 2.0, 2.0, 1.0])
    indices = net.slice_indices(shape)
    tmp = tempfile.mkdtemp()

    def forward():
        with torch.no_grad():
            net(x)

    def forward_with_attention_volume():
        with torch.no_grad():
            _, att = net.plane_attention(x)
        vol = attention_volume({p: a[0].numpy() for p, a in att.items()}, indices, shape)
        nib.save(nib.Nifti1Image(vol, affine), os.path.join(tmp, "attention.nii.gz"))

    cam = GradCAM(nn_module=net, target_layers=net.cam_layer)

    def gradcam_3_planes():
        raw = torch.as_tensor(cam.compute_map(x, class_idx=1, layer_idx=-1)).detach()
        parts = split_cams(raw, [len(indices[p]) for p in range(3)])
        combine_planes([cam_volume(c, p, indices[p], shape) for p, c in enumerate(parts)])

    t_fwd, t_att, t_cam = _median_times([forward, forward_with_attention_volume, gradcam_3_planes], args.repeats)
    result = {
        "command": f"python benchmarks/explain_cost.py --image-size {args.image_size} --num-slices {args.num_slices}",
        "network": f"TriPlanarAxialNet(resnet18, {args.num_slices} slices x 3 planes, {args.image_size} px)",
        "volume": list(shape),
        "forward_s": round(t_fwd, 4),
        "attention_volume_overhead": round(t_att / t_fwd - 1, 4),
        "gradcam_3_planes_over_forward": round(t_cam / t_fwd, 3),
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
