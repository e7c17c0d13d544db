"""Reading checkpoint files safely: ``torch.load(..., weights_only=True)`` and nothing else.

Every checkpoint the package reads (a run's ``models/model.pt``, an exported bundle's weights, ``init_ckpt``,
``pretrained=<file>``) goes through :func:`load_checkpoint`: a file that carries a pickled Python object (anything
but tensors and plain containers) is refused with one line naming the file and the object, and the object's code
never runs; a file that is not a checkpoint at all is one line too.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

from ..errors import InputError, one_line

__all__ = ["load_checkpoint"]


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """Read a checkpoint written with ``torch.save`` safely: ``torch.load(path, map_location="cpu",
    weights_only=True)``. Nothing in the file is executed.

    Args:
        path: the checkpoint file.
        what: what the file is, for the message (e.g. ``"pretrained weights"``).

    Returns:
        what the file holds (tensors in plain containers), on the CPU.

    Raises:
        InputError: one line naming the file: it carries a pickled Python object (refused, never unpickled), or it
            is not a readable checkpoint (not a torch file, truncated).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # a pickled object needs a global (a class or function) that the weights-only unpickler refuses to import;
        # anything else ("invalid load key", "Unsupported operand") is a damaged or foreign file
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:
            raise _unreadable(what, path, err) from None
        carried = f"a pickled Python object ({found.group(1)})"
        raise InputError(
            f"The {what} {path} carries {carried} and is refused: checkpoints are read with weights_only=True and "
            "may hold only tensors and plain data, because unpickling runs code. Do not load it unless you trust "
            "its source; save only its weights (a state dict of tensors) from a trusted copy, or retrain."
        ) from None
    except Exception as err:  # zip, EOF and torch errors all mean "not a readable checkpoint"
        raise _unreadable(what, path, err) from None


def _unreadable(what: str, path: str | os.PathLike, err: Exception) -> ValueError:
    return InputError(
        f"Cannot read the {what} {path}: it is not a torch checkpoint or it is damaged ({one_line(err)}). "
        "Give the models/model.pt written by training."
    )
