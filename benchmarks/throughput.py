"""Benchmark: training and inference volumes/s, peak memory and achieved FLOP/s of AxialNet at the paper's setting.

AxialNet (freeze 0.5, as in the paper) on synthetic 1 mm volumes (B, 1, 193, 229, 193) already on the device: 80
central slices resized to 224 x 224, through resnet18 and vgg16_bn. A training step is AdamW + cross-entropy with
the bundle's ``AutocastInferer``; inference runs under ``torch.inference_mode``. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on the meta device (convolutions and matrix products; forward and, for
training, the backward pass as executed with the frozen half), and compared with the device's peak dense FLOP/s.

* CPU (default): float32, batch 1, one timed step per configuration, each configuration in its own process so
  that its peak RSS is its own.
* ``--device cuda``: float32 vs bf16 at the paper's batch of 8, plus the execution options (channels_last, the
  memory options slice_chunk/checkpoint, and ``--compile``); peak GPU memory per configuration. Results are
  written after every configuration.

    python benchmarks/throughput.py [--device cuda] [--compile] [--quick] [--out FILE]

Prints a table and the machine, writes benchmarks/results/throughput[_cuda|_quick].json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import RESULTS, command, device_peak, machine, peak_rss_mb, table, write_result
from torch.utils.flop_counter import FlopCounterMode

from axial_monai.engines import AutocastInferer
from axial_monai.networks import AxialNet, configure_backbones

GRID = (193, 229, 193)
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def build(cfg: dict, device: torch.device | str) -> AxialNet:
    net = AxialNet(
        num_classes=2,
        backbone=cfg["backbone"],
        num_slices=cfg["num_slices"],
        image_size=cfg["image_size"],
        pretrained="none",
        freeze=0.5,
    )
    configure_backbones(
        net,
        slice_chunk=cfg.get("slice_chunk", 0),
        checkpoint=cfg.get("checkpoint", False),
        channels_last=cfg.get("channels_last", False),
    )
    return net.to(device)


def count_flops(cfg: dict) -> float:
    """FLOPs of one step of ``cfg`` (training: forward + backward; inference: forward), counted on meta tensors."""
    with torch.device("meta"):
        net = build({**cfg, "slice_chunk": 0, "checkpoint": False, "channels_last": False}, "meta")
        x = torch.empty(cfg["batch_size"], 1, *cfg["grid"])
    counter = FlopCounterMode(display=False)
    with counter:
        if cfg["mode"] == "train":
            net.train()
            target = torch.zeros(x.shape[0], dtype=torch.long, device="meta")
            torch.nn.functional.cross_entropy(net(x), target).backward()
        else:
            net.eval()
            with torch.no_grad():
                net(x)
    return float(counter.get_total_flops())


def run_config(cfg: dict, device: torch.device) -> dict:
    """Time ``cfg["steps"]`` steps after ``cfg["warmup"]`` and return the measurements."""
    torch.manual_seed(0)
    net = build(cfg, device)
    x = torch.rand(cfg["batch_size"], 1, *cfg["grid"], device=device)
    y = torch.randint(0, 2, (cfg["batch_size"],), device=device)
    inferer = AutocastInferer(DTYPES[cfg["precision"]])
    model = net
    compile_s = None
    if cfg.get("compile"):
        model = torch.compile(net)
    if cfg["mode"] == "train":
        net.train()
        optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(inferer(x, model), y).backward()
            optimizer.step()
    else:
        net.eval()

        def step() -> None:
            with torch.inference_mode():
                inferer(x, model)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(cfg["warmup"]):
        step()
    sync()
    if cfg.get("compile"):
        compile_s = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    for _ in range(cfg["steps"]):
        step()
    sync()
    seconds = (time.perf_counter() - start) / cfg["steps"]
    out = {"step_s": round(seconds, 4), "volumes_per_s": round(cfg["batch_size"] / seconds, 3)}
    if compile_s is not None:
        out["compile_and_warmup_s"] = compile_s
    if device.type == "cuda":
        out["peak_allocated_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        out["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved(device) / 2**30, 2)
    else:
        out["peak_rss_gb"] = round(peak_rss_mb() / 1024, 2)
    return out


def configs(args: argparse.Namespace) -> list[dict]:
    base = {"num_slices": args.num_slices, "image_size": args.image_size, "grid": list(args.grid)}
    base |= {"batch_size": args.batch_size, "warmup": args.warmup, "steps": args.steps}
    out = []
    precisions = ["fp32", "bf16"] if args.device.startswith("cuda") or args.quick else args.precisions
    for backbone in args.backbones:
        for precision in precisions:
            for mode in ("train", "infer"):
                out.append({**base, "backbone": backbone, "precision": precision, "mode": mode})
    if args.device.startswith("cuda") or args.quick:
        big = args.backbones[-1]
        for precision in precisions:  # the paper's batch within 24 GB: memory options
            for options in ({"slice_chunk": args.num_slices}, {"slice_chunk": args.num_slices, "checkpoint": True}):
                out.append({**base, "backbone": big, "precision": precision, "mode": "train", **options})
        for mode in ("train", "infer"):
            out.append({**base, "backbone": big, "precision": precisions[-1], "mode": mode, "channels_last": True})
    if args.compile_only:
        out = []
    if args.compile or args.compile_only:
        big = args.backbones[-1]
        for mode in ("train", "infer"):
            out.append({**base, "backbone": big, "precision": precisions[-1], "mode": mode, "compile": True})
    return out


OPTIONS = ("channels_last", "compile", "slice_chunk", "checkpoint")


def label(cfg: dict) -> str:
    """The execution options of a configuration, e.g. "slice_chunk=80,checkpoint" ("-": none)."""
    return ",".join(k if v is True else f"{k}={v}" for k, v in cfg.items() if k in OPTIONS and v) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "vgg16_bn"])
    parser.add_argument("--precisions", nargs="+", default=["fp32"], help="CPU only; CUDA always runs fp32 and bf16")
    parser.add_argument("--batch_size", type=int, default=None, help="default 8 (the paper's) on CUDA, 1 on CPU")
    parser.add_argument("--num_slices", type=int, default=80)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--grid", type=int, nargs=3, default=GRID)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (GPU; slow to compile)")
    parser.add_argument("--compile_only", action="store_true", help="time only the torch.compile configurations")
    parser.add_argument("--quick", action="store_true", help="every code path, small (8 slices of 64 px, 2 mm grid)")
    parser.add_argument("--single", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--in_process", action="store_true", help="CPU: run configurations in this process")
    parser.add_argument("--peak_name", default=None, help="device name for the peak FLOP/s table (dry runs)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.single:  # one configuration in a fresh process (CPU peak RSS)
        print(json.dumps(run_config(json.loads(args.single), device)))
        return
    cuda = device.type == "cuda"
    if args.quick:
        args.num_slices, args.image_size, args.grid = 8, 64, (97, 115, 97)
    args.batch_size = args.batch_size or (2 if args.quick else 8 if cuda else 1)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda and not args.quick else 1)
    args.steps = args.steps or (10 if cuda and not args.quick else 1)
    out = Path(args.out or RESULTS / f"throughput{'_quick' if args.quick else '_cuda' if cuda else ''}.json")
    info = machine(str(device))
    peak = device_peak(args.peak_name or info.get("gpu", "")) if cuda or args.peak_name else None
    result = {"command": command(), "machine": info, "peak_tflops_dense": peak, "results": []}
    if cuda:
        result["tf32_convolutions"] = torch.backends.cudnn.allow_tf32
    rows = result["results"]
    for cfg in configs(args):
        row = {k: cfg[k] for k in ("backbone", "precision", "mode", "batch_size", "num_slices", "image_size")}
        row["options"] = label(cfg)
        try:
            if cuda or args.in_process:
                row |= run_config(cfg, device)
            else:
                cmd = [sys.executable, __file__, "--device", str(device), "--single", json.dumps(cfg)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                row |= json.loads(done.stdout.strip().splitlines()[-1])
            flops = count_flops(cfg)
            row["tflop_per_step"] = float(f"{flops / 1e12:.4g}")
            row["achieved_tflops"] = float(f"{flops / row['step_s'] / 1e12:.4g}")
            if peak:
                reference = peak["bf16"] if cfg["precision"] == "bf16" else peak["tf32"]
                row["share_of_peak"] = float(f"{flops / row['step_s'] / 1e12 / reference:.3g}")
            if "peak_reserved_gb" in row:
                row["fits_24gb"] = row["peak_reserved_gb"] + 1.0 <= 24.0  # + ~1 GB of CUDA context
        except (RuntimeError, subprocess.CalledProcessError) as err:  # e.g. out of memory: record and go on
            text = getattr(err, "stderr", None) or str(err)
            row["error"] = text.strip().splitlines()[-1][:300]
            if cuda:
                torch.cuda.empty_cache()
        rows.append(row)
        print(row, flush=True)
        write_result(result, out)
    by = {(r["backbone"], r["mode"], r["options"], r["precision"]): r for r in rows if "error" not in r}
    result["bf16_speedup"] = {
        f"{b}/{m}/{o}": round(by[(b, m, o, "bf16")]["volumes_per_s"] / by[(b, m, o, "fp32")]["volumes_per_s"], 2)
        for (b, m, o, p) in by
        if p == "fp32" and (b, m, o, "bf16") in by
    }
    columns = ["backbone", "precision", "mode", "options", "batch_size", "volumes_per_s", "step_s"]
    columns += ["peak_allocated_gb", "peak_reserved_gb", "fits_24gb"] if cuda else ["peak_rss_gb"]
    columns += ["achieved_tflops", "share_of_peak"]
    print(table(rows, [*columns, "tflop_per_step", "error"]))
    print("bf16 speed-up:", result["bf16_speedup"])
    print(info)
    print("written", write_result(result, out))


if __name__ == "__main__":
    main()
