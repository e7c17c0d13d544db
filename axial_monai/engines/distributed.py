"""What differs between the processes of a multi-GPU (DDP) run, beyond MONAI's samplers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["RankHandlers"]


class RankHandlers:
    """The handlers one process of a DDP run attaches: every handler on rank 0; on the other ranks all but the
    ``rank0_only`` types (checkpoint savers, loggers: one process writes the files and the logs).

    ``multi_gpu_train.json`` builds one and applies it to the handlers of each engine:
    ``"$@on_this_rank(@train#handlers)"``.

    Args:
        rank0: whether this process is rank 0.
        rank0_only: the handler types only rank 0 attaches.
    """

    def __init__(self, rank0: bool, rank0_only: Sequence[type]) -> None:
        self.rank0, self.rank0_only = bool(rank0), tuple(rank0_only)

    def __call__(self, handlers: Sequence[Any]) -> list[Any]:
        return [handler for handler in handlers if self.rank0 or not isinstance(handler, self.rank0_only)]
