"""The training mechanisms of ``train.json`` at work: early stopping, the cosine LR schedule, best-checkpoint
selection and seeded determinism, on real (tiny) training runs of the bundle.

Two test-only ignite handlers are put into the config's handler lists before the workflow is initialised:
one records the learning rate at the start of every epoch, the other records every validation's ``val_mcc`` and
the network's weights. To make the selection and stopping decisions known in advance, the validation recorder
also *plants* a ``val_mcc`` sequence (it replaces the computed value before the checkpoint saver and the early
stopping handler read it): the weights, the schedule and the handlers are the real ones.
"""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from bundle_utils import TINY, run, workflow
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from axial_monai.configs import config_path
from axial_monai.run import load_weights

#: a planted val_mcc per validation: best at epoch 2, worse at epoch 3 -> with patience 1 training stops after 3
PLANTED = (0.2, 0.7, 0.5, 0.9, 0.9)
MAX_EPOCHS = 5
PATIENCE = 1
LEARNING_RATE = 1e-3


class LearningRateRecorder:
    """Test-only trainer handler: the trainer's learning rate at the start of every epoch."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        self.rates.append(engine.optimizer.param_groups[0]["lr"])


class ValidationRecorder:
    """Test-only evaluator handler: each validation's ``val_mcc`` (computed, then planted) and the weights.

    First in ``validate#handlers``, so it runs before the checkpoint saver and the early stopping handler.
    """

    def __init__(self, planted=None) -> None:
        self.planted = planted
        self.computed: list[float] = []
        self.scores: list[float] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.computed.append(float(engine.state.metrics["val_mcc"]))
        if self.planted is not None:
            engine.state.metrics["val_mcc"] = self.planted[len(self.scores)]
        self.scores.append(float(engine.state.metrics["val_mcc"]))
        self.weights.append(copy.deepcopy(engine.network.state_dict()))


def _recorded_run(dataset_dir: str, out: Path, planted=PLANTED, **settings) -> dict:
    """train.json with the recorders first in its handler lists: initialize, run, finalize."""
    overrides = {"epochs": MAX_EPOCHS, "early_stop_patience": PATIENCE, "learning_rate": LEARNING_RATE, **TINY}
    wf = workflow(["train"], dataset_dir=dataset_dir, output_dir=str(out), **{**overrides, **settings})
    recorders = {
        "train#handlers": {"_target_": f"{__name__}.LearningRateRecorder"},
        "validate#handlers": {"_target_": f"{__name__}.ValidationRecorder", "planted": planted},
    }
    for key, recorder in recorders.items():
        wf.parser[key] = [recorder, *wf.parser[key]]
    run(wf)
    lr, val = (wf.parser.get_parsed_content(f"{key}#0") for key in recorders)
    trainer = wf.parser.get_parsed_content("train#trainer")
    return {"out": out, "lr": lr.rates, "val": val, "epochs_run": trainer.state.epoch}


def _as_a_new_process(index: int) -> None:
    """Put torch's, numpy's and python's global random states where another process could start them.

    Two runs in one process would agree even without ``set_determinism``: building a MONAI ``DataLoader`` resets
    torch's default generator to its initial seed, so the network built after the loaders gets the same weights.
    """
    torch.manual_seed(1000 + index)
    np.random.seed(1000 + index)
    random.seed(1000 + index)


@pytest.fixture(scope="module")
def runs(tiny_cohort, tmp_path_factory):
    """The same seeded run twice, in two output folders, each from other global random states."""
    root = tmp_path_factory.mktemp("mechanisms")
    done = []
    for i in range(2):
        _as_a_new_process(i)
        done.append(_recorded_run(tiny_cohort, root / f"run{i}"))
    return done


def test_early_stopping_ends_training_before_max_epochs(runs):
    """patience 1: the first validation without a better val_mcc (epoch 3) stops training, of 5 epochs."""
    run = runs[0]
    assert run["val"].scores == list(PLANTED[:3])
    assert run["epochs_run"] == 3 < MAX_EPOCHS
    assert len(run["lr"]) == 3


def test_learning_rate_follows_the_cosine_formula_epoch_by_epoch(runs):
    """CosineAnnealingLR with T_max = epochs, stepped once per epoch: lr_e = lr_0 (1 + cos(pi e / T)) / 2."""
    expected = [LEARNING_RATE * (1 + math.cos(math.pi * e / MAX_EPOCHS)) / 2 for e in range(len(runs[0]["lr"]))]
    assert runs[0]["lr"] == pytest.approx(expected, rel=1e-9)
    assert runs[0]["lr"][1] < LEARNING_RATE  # it does change


def test_checkpoint_holds_the_weights_of_the_best_validation_epoch(runs):
    run = runs[0]
    saved = load_weights(run["out"] / "models" / "model.pt")
    best = max(range(len(run["val"].scores)), key=lambda i: run["val"].scores[i])
    assert best == 1  # epoch 2 of the planted sequence
    for epoch, weights in enumerate(run["val"].weights):
        same = all(torch.equal(saved[k], weights[k]) for k in weights)
        assert same is (epoch == best), f"model.pt vs the weights after epoch {epoch + 1}: equal={same}"


def test_two_seeded_runs_give_identical_weights_and_predictions(runs):
    first, second = runs
    for a, b in zip(first["val"].weights, second["val"].weights, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert first["val"].computed == second["val"].computed
    saved = [load_weights(r["out"] / "models" / "model.pt") for r in runs]
    assert all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])
    predictions = [pd.read_csv(r["out"] / "eval-test" / "predictions.csv") for r in runs]
    pd.testing.assert_frame_equal(predictions[0], predictions[1], check_exact=True)
    reports = [json.loads((r["out"] / "eval-test" / "metrics.json").read_text()) for r in runs]
    assert reports[0] == reports[1]


@pytest.mark.parametrize("overrides", [[], ["paper"]], ids=["train", "paper"])
def test_shipped_settings_let_early_stopping_act(overrides):
    """ignite stops after `patience` validations without improvement, which needs patience + 1 validations."""
    parser = ConfigParser()
    parser.read_config([str(config_path(c)) for c in ["train", *overrides]])
    validations = parser["epochs"] // parser["val_interval"]
    assert parser["early_stop_patience"] + 1 <= validations, (parser["early_stop_patience"], validations)
