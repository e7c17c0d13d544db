"""The switch to deterministic algorithms on the GPU (``deterministic`` in ``train.json``).

On the CPU a seeded run is reproducible as it is (``monai.utils.set_determinism`` in ``initialize`` seeds torch,
numpy and python and sets ``cudnn.deterministic``). On CUDA some kernels still add in a varying order; this turns
on torch's deterministic algorithms for them and sets the cuBLAS workspace that deterministic matrix products
need. Kernels that have no deterministic CUDA version (torch lists them under
``torch.use_deterministic_algorithms``) warn instead of stopping the run.
"""

from __future__ import annotations

import os

import torch

__all__ = ["CUBLAS_WORKSPACE", "use_deterministic_algorithms"]

#: cuBLAS workspace setting required for deterministic matrix products on CUDA >= 10.2.
CUBLAS_WORKSPACE = ":4096:8"


def use_deterministic_algorithms(enabled: bool) -> bool:
    """Turn torch's deterministic algorithms on (``enabled``) or leave torch's default.

    Call it before the first CUDA matrix product (``initialize`` of the configs): cuBLAS reads
    ``CUBLAS_WORKSPACE_CONFIG`` when its handle is created. An existing ``CUBLAS_WORKSPACE_CONFIG`` is kept.

    Returns:
        ``enabled``.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True, warn_only=True)
    return enabled
