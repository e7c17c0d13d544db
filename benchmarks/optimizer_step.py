"""Benchmark: one training iteration with train.json's optimizer settings against torch's and MONAI's defaults.

Two settings of train.json make the CPU iteration faster and leave the weights bit for bit the same:

* the AdamW is ``fused``: on the CPU, torch otherwise updates the parameters tensor by tensor (one vectorised kernel
  over all of them instead);
* the trainer has ``optim_set_to_none``: MONAI's ``SupervisedTrainer`` otherwise zeroes every gradient before each
  iteration (``zero_grad(set_to_none=False)``), and the backward pass then adds into those zeros instead of writing.

All variants run in this process on the same network (the default ``AxialNet``: resnet18 slices), each from the
same weights and after the same warm-up; the iteration is zero_grad, forward, backward and step on a batch of the
given shape. The step is also timed alone. The weights after a few iterations are compared between the two
zero_grad settings (they must be equal: a parameter without a gradient stays without one either way).

    python benchmarks/optimizer_step.py [--num-slices 24 --image-size 32 --batch-size 2 --threads 1]
"""

from __future__ import annotations

import argparse
import copy
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
    optimizer_config = config.get("optimizer")
    assert optimizer_config["_target_"] == "torch.optim.AdamW" and optimizer_config.get("fused") is True
    trainer = config.get("train#trainer")
    assert trainer.get("optim_set_to_none") is True, trainer
    torch.manual_seed(0)
    network = config.get_parsed_content("network_spec")()  # train.json's network (resnet18, nothing frozen)
    start = copy.deepcopy(network.state_dict())
    lr, decay = config.get_parsed_content("learning_rate"), config.get_parsed_content("weight_decay")
    volume = torch.randn(args.batch_size, 1, args.image_size, args.image_size, 40)
    labels = torch.randint(0, 2, (args.batch_size,))
    loss_fn = torch.nn.CrossEntropyLoss()
    rows, weights = {}, {}
    variants = {
        "per-parameter loop, gradients zeroed (torch's CPU and MONAI's defaults)": ({"foreach": False}, False),
        "fused, gradients zeroed": ({"fused": True}, False),
        "fused, gradients set to None (train.json)": ({"fused": True}, True),
    }
    for name, (options, to_none) in variants.items():
        network.load_state_dict(start)
        torch.manual_seed(1)  # the same dropout masks in every variant
        optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=decay, **options)

        def iteration(optimizer: torch.optim.Optimizer = optimizer, to_none: bool = to_none) -> None:
            optimizer.zero_grad(set_to_none=to_none)
            loss_fn(network(volume), labels).backward()
            optimizer.step()

        for _ in range(3):
            iteration()
        weights[name] = copy.deepcopy(network.state_dict())
        rows[name] = {
            "iteration_s": _seconds(iteration, args.repeats),
            "step_s": _seconds(optimizer.step, args.repeats),
        }
        network.zero_grad(set_to_none=True)
    base, fused, shipped = rows.values()
    zeroed, to_none = (weights[name] for name in list(variants)[1:])
    result = {
        "command": command(),
        "machine": machine(),
        "settings": vars(args) | {"out": None},
        "parameters": sum(p.numel() for p in network.parameters()),
        "rows": rows,
        "step_speedup": round(base["step_s"] / fused["step_s"], 2),
        "iteration_speedup_fused": round(base["iteration_s"] / fused["iteration_s"], 2),
        "iteration_speedup_set_to_none": round(fused["iteration_s"] / shipped["iteration_s"], 2),
        "iteration_speedup_train_json": round(base["iteration_s"] / shipped["iteration_s"], 2),
        "set_to_none_weights_equal": all(torch.equal(zeroed[k], to_none[k]) for k in zeroed),
    }
    assert result["set_to_none_weights_equal"], "zero_grad(set_to_none=True) changed the weights"
    write_result(result, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
