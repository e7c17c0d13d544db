"""A tqdm progress bar for training that shows the running loss."""

from __future__ import annotations

from ignite.engine import Engine
from ignite.handlers import ProgressBar

__all__ = ["LossProgressBar"]


class LossProgressBar:
    """ignite ``ProgressBar`` over the iterations of each epoch, showing the batch loss of a MONAI trainer.

    MONAI engines decollate outputs into a list of per-sample dicts, which ``ProgressBar`` cannot display; this
    picks the loss out. Rank 0 only under DDP.
    """

    def __init__(self, desc: str = "train", persist: bool = False) -> None:
        self.bar = ProgressBar(desc=desc, persist=persist)

    def attach(self, engine: Engine) -> None:
        import ignite.distributed as idist

        if idist.get_rank() == 0:
            self.bar.attach(engine, output_transform=lambda out: {"loss": float(out[0]["loss"])})
