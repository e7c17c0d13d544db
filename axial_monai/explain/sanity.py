"""Model-randomisation sanity check (Adebayo et al. 2018): explanations must change when the weights do.

:func:`cascading_randomization` re-initialises a trained network block by block, from the head down to the first
layer, and yields the network after each step; a map that stays similar (high Spearman correlation with the trained
network's map) while the weights it is supposed to explain are random does not explain the model.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["randomization_stages", "cascading_randomization"]


def _param_children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, c) for n, c in module.named_children() if next(c.parameters(), None) is not None]


def randomization_stages(network: nn.Module) -> list[str]:
    """Names of the blocks re-initialised in turn, from the output towards the input.

    Blocks: the head, the attention (one block per plane of a tri-planar model), then the backbone's top-level
    layers in reverse (for a ResNet: ``layer4`` ... ``layer1``, ``bn1``, ``conv1``). A container with several
    parametrised children is split into them; a wrapper around one container is looked into.

    Args:
        network: the network (DDP is unwrapped).

    Returns:
        submodule names (for ``network.get_submodule``) in cascade order.
    """
    network = getattr(network, "module", network)
    stages: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        children = list(reversed(_param_children(module)))
        if not prefix:  # the output side first, whatever order the modules were registered in (SliceNet: head first)
            children.sort(key=lambda item: {"head": 0, "attention": 1}.get(item[0], 2))
        for name, child in children:
            full = f"{prefix}{name}"
            kids = _param_children(child)
            if isinstance(child, nn.Sequential | nn.ModuleList):
                if len(kids) > 1:
                    stages.extend(f"{full}.{n}" for n, _ in reversed(kids))
                else:
                    visit(child, f"{full}.")
            elif next(child.parameters(recurse=False), None) is None and any(
                isinstance(k, nn.Sequential | nn.ModuleList) for _, k in kids
            ):
                visit(child, f"{full}.")
            else:
                stages.append(full)

    visit(network, "")
    return stages


def cascading_randomization(network: nn.Module, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Re-initialise a copy of ``network`` block by block from the head down; yield it after each block.

    Every module of a block that has ``reset_parameters`` (linear, convolution, batch norm) gets its
    construction-time initialisation again, drawn from a generator seeded with ``seed + step`` (the global torch
    generator is restored afterwards). The input network is not modified. The same copy is yielded each time,
    randomised cumulatively: use it before advancing the iterator.

    Args:
        network: trained network (DDP is unwrapped).
        seed: seed of the new weights.

    Yields:
        ``(block name, network with that block and all blocks before it re-initialised)``, in eval mode.
    """
    network = getattr(network, "module", network)
    randomized = copy.deepcopy(network).eval()
    devices = [next(network.parameters()).device]
    devices = [d for d in devices if d.type == "cuda"]
    for step, stage in enumerate(randomization_stages(network)):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + step)  # blocks of one shape must not get the same draw
            for module in randomized.get_submodule(stage).modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        yield stage, randomized
