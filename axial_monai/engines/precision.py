"""Mixed precision for MONAI's engines on any device: bf16 where supported, else fp16 (with a gradient scaler).

MONAI's ``SupervisedTrainer(amp=True)`` wraps the forward pass in ``torch.autocast("cuda")`` (float16 unless
``amp_kwargs`` says otherwise) and always adds a ``GradScaler``; on a CPU it does nothing. The bundle therefore
autocasts in the inferer, which runs the network in both trainer and evaluators on whatever device the batch is
on, and keeps MONAI's ``amp`` flag only for what it is needed for: the gradient scaler of float16 training.

Config::

    "amp": true,                                                   # false | true ("auto") | "bf16" | "fp16"
    "amp_dtype": "$axial_monai.engines.autocast_dtype(@amp, @device)",
    "train#inferer": {"_target_": "axial_monai.engines.AutocastInferer", "dtype": "@amp_dtype"},
    "train#trainer#amp": "$@amp_dtype == torch.float16",          # GradScaler for float16 only
"""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["AutocastInferer", "autocast_dtype"]

_NAMES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def autocast_dtype(amp: bool | str | None, device: torch.device | str = "cpu") -> torch.dtype | None:
    """The autocast dtype for an ``amp`` setting on ``device``; None means full float32.

    Args:
        amp: False/None/"none"/"fp32" (off), True/"auto" (bfloat16 if the device supports it, else float16),
            "bf16" or "fp16".
        device: the training device.

    Raises:
        ValueError: for an unknown setting, or "bf16" on a GPU without bfloat16 support.
    """
    device = torch.device(device)
    # `--amp true` on the command line arrives as the string "true" (python-fire keeps lower-case words)
    if amp is None or amp is False or (isinstance(amp, str) and amp.lower() in ("none", "fp32", "false", "off", "no")):
        return None
    if amp is True or (isinstance(amp, str) and amp.lower() in ("auto", "true", "on", "yes")):
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if not isinstance(amp, str) or amp.lower() not in _NAMES:
        raise ValueError(f"amp must be false, true, 'auto', 'bf16' or 'fp16', not {amp!r}.")
    dtype = _NAMES[amp.lower()]
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"amp='bf16' was asked for, but {torch.cuda.get_device_name(device)} has no bfloat16 support.")
    return dtype


class AutocastInferer(Inferer):
    """Run the network under ``torch.autocast`` on the input's device and return float32 outputs.

    Args:
        dtype: autocast dtype (``torch.bfloat16`` or ``torch.float16``), or None to run in float32 (then it is
            MONAI's ``SimpleInferer``).

    Float32 outputs keep the loss, softmax and metrics in full precision.
    """

    def __init__(self, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be None, torch.bfloat16 or torch.float16, not {dtype!r}.")
        self.dtype = dtype

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        if self.dtype is None:
            return network(inputs, *args, **kwargs)
        with torch.autocast(device_type=inputs.device.type, dtype=self.dtype):
            out = network(inputs, *args, **kwargs)
        return out.float() if isinstance(out, torch.Tensor) and out.is_floating_point() else out
