"""Benchmark: one training iteration with train.json's AdamW, per-parameter loop (torch's CPU default) vs fused.

On the CPU, torch's AdamW updates the parameters tensor by tensor unless it is asked for ``fused=True`` (one
vectorised kernel over all of them); train.json asks for it. Both optimizers run in this process on the same
network (the default ``AxialNet``: resnet18 slices), after the same warm-up; the iteration is forward, backward and
step on a batch of the given shape. The step is also timed alone.

    python benchmarks/optimizer_step.py [--num-slices 24 --image-size 32 --batch-size 2 --threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from common import RESULTS, command, machine, write_result
from monai.bundle import ConfigParser

from axial_monai.configs import config_path


def _seconds(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-slices", type=int, default=24)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=str(RESULTS / "optimizer_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = ConfigParser()
    config.read_config(str(config_path("train")))
    config.update({"num_slices": args.num_slices, "image_size": args.image_size})
    shipped = config.get("optimizer")
    assert shipped["_target_"] == "torch.optim.AdamW" and shipped.get("fused") is True, shipped
    torch.manual_seed(0)
    network = config.get_parsed_content("network_spec")()  # train.json's network (resnet18, nothing frozen)
    lr, decay = config.get_parsed_content("learning_rate"), config.get_parsed_content("weight_decay")
    volume = torch.randn(args.batch_size, 1, args.image_size, args.image_size, 40)
    labels = torch.randint(0, 2, (args.batch_size,))
    loss_fn = torch.nn.CrossEntropyLoss()
    rows = {}
    variants = {"per-parameter loop (CPU default)": {"foreach": False}, "fused (train.json)": {"fused": True}}
    for name, options in variants.items():
        optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=decay, **options)

        def iteration(optimizer: torch.optim.Optimizer = optimizer) -> None:
            optimizer.zero_grad()
            loss_fn(network(volume), labels).backward()
            optimizer.step()

        for _ in range(3):
            iteration()
        rows[name] = {
            "iteration_s": _seconds(iteration, args.repeats),
            "step_s": _seconds(optimizer.step, args.repeats),
        }
    base, fused = rows.values()
    result = {
        "command": command(),
        "machine": machine(),
        "settings": vars(args) | {"out": None},
        "parameters": sum(p.numel() for p in network.parameters()),
        "rows": rows,
        "step_speedup": round(base["step_s"] / fused["step_s"], 2),
        "iteration_speedup": round(base["iteration_s"] / fused["iteration_s"], 2),
    }
    write_result(result, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
