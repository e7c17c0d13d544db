"""Write per-scan class probabilities and predicted labels to a CSV file."""

from __future__ import annotations

import os
from collections.abc import Sequence

import ignite.distributed as idist
import pandas as pd
import torch
from ignite.engine import Engine, Events
from monai.utils import string_list_all_gather

from ..io import write_csv
from ..layout import RunLayout

__all__ = ["PredictionWriter"]


class PredictionWriter:
    """Collect ``file, prob_<class>..., pred, pred_label[, label][, subject, session]`` per scan; write one CSV.

    ``subject`` and ``session`` are copied from the datalist items when they have them (Clinica datalists, the demo
    cohort), so that scores and confidence intervals can be computed per subject.

    Attach to a MONAI evaluator whose postprocessing turns ``pred`` into class probabilities ``(C,)``. Under
    DDP, rows from every rank are gathered and rank 0 writes the file.

    Every scan must be predicted once: a scan seen twice (a ``DistributedSampler`` with ``even_divisible=True``
    pads the shards with repeated scans; or a datalist that lists a file twice) stops the run with a
    ``RuntimeError`` naming the files, instead of a file whose rows silently differ from the scored predictions.

    Args:
        save_dir: output directory.
        class_names: names of the C classes, in index order.
        filename: CSV file name.
    """

    def __init__(self, save_dir: str, class_names: Sequence[str], filename: str = RunLayout.PREDICTIONS) -> None:
        self.save_dir, self.class_names, self.filename = save_dir, list(class_names), filename
        self._rows: list[str] = []

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self._started, Events.STARTED):
            engine.add_event_handler(Events.STARTED, self._started)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
            engine.add_event_handler(Events.COMPLETED, self._write)

    def _started(self, engine: Engine) -> None:
        self._rows = []

    def _collect(self, engine: Engine) -> None:
        for item, out in zip(engine.state.batch, engine.state.output, strict=True):
            meta = getattr(item["image"], "meta", {})
            probs = torch.as_tensor(out["pred"]).float().view(-1).tolist()
            label = out.get("label")
            label = int(torch.as_tensor(label).view(-1)[0]) if label is not None else ""
            ids = [str(item.get(key, "") or "") for key in ("subject", "session")]
            self._rows.append("\t".join(map(str, [meta.get("filename_or_obj", ""), *probs, label, *ids])))

    def _write(self, engine: Engine) -> None:
        rows = string_list_all_gather(self._rows, delimiter="\n") if idist.get_world_size() > 1 else self._rows
        rows = [r for r in rows if r]
        if idist.get_rank() != 0:
            return
        prob_cols = [f"prob_{c}" for c in self.class_names]
        cols = ["file", *prob_cols, "label", "subject", "session"]
        df = pd.DataFrame([r.split("\t") for r in rows], columns=cols)
        repeated = df["file"][df["file"].duplicated()].unique().tolist()
        if repeated:
            raise RuntimeError(
                f"{len(repeated)} scan(s) were predicted more than once, e.g. {repeated[:3]}: evaluate each scan once "
                "(under DDP use a DistributedSampler with even_divisible=False; list each file once in the datalist)."
            )
        probs = df[prob_cols].astype(float)
        df[prob_cols] = probs
        df.insert(len(prob_cols) + 1, "pred", probs.to_numpy().argmax(1))
        df.insert(len(prob_cols) + 2, "pred_label", [self.class_names[i] for i in df["pred"]])
        df = df.drop(columns=[c for c in ("label", "subject", "session") if (df[c] == "").all()])
        write_csv(os.path.join(self.save_dir, self.filename), df.sort_values("file"))
