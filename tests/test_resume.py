"""Resume after kill -9: a training run killed mid-epoch and resumed with ``--resume true`` ends with the same
weights and metrics as the same seeded run never killed (CPU).

The killed run goes through ``python -m monai.bundle run training`` in a subprocess, as a user runs it, and gets
SIGKILL as soon as the training state of epoch 2 (of 4) is on disk, i.e. early in epoch 3; the run it is compared
with, and the refused resume, run in this process (one torch thread, as the subprocesses).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from bundle_utils import run, workflow

from axial_monai.configs import config_path
from axial_monai.errors import root_cause
from axial_monai.handlers import GradScalerState

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4
KILL_AFTER = 2  # epochs whose state is saved when the run is killed


def _settings(cohort: str, out: Path, cache: Path, resume: bool) -> dict[str, object]:
    return {
        "dataset_dir": cohort,
        "output_dir": str(out),
        "cache_dir": str(cache),
        "epochs": EPOCHS,
        "num_slices": 6,
        "image_size": 32,
        "batch_size": 2,
        "num_workers": 0,
        "ci_resamples": 20,
        "resume": "true" if resume else "false",  # as typed on the command line
    }


def _command(cohort: str, out: Path, cache: Path, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(config_path("train"))]
    command += ["--meta_file", str(config_path("metadata")), "--logging_file", str(config_path("logging.conf"))]
    for key, value in _settings(cohort, out, cache, resume).items():
        command += [f"--{key}", str(value)]
    return command


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"  # the same float reductions in every run
    return env


def _epoch(state_path: Path) -> int:
    """The last complete epoch of a saved training state (ignite saves the iteration and the epoch length)."""
    if not state_path.is_file():
        return 0
    trainer = torch.load(state_path, weights_only=True)["trainer"]
    return int(trainer["iteration"]) // int(trainer["epoch_length"])


def _state(out: Path) -> dict:
    return {
        "best": torch.load(out / "models" / "model.pt", weights_only=True)["model"],
        "last": torch.load(out / "models" / "training_state.pt", weights_only=True),
        "metrics": json.loads((out / "eval-test" / "metrics.json").read_text()),
    }


@pytest.fixture(scope="module")
def uninterrupted(tiny_cohort, tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("uninterrupted")
    cache = tmp_path_factory.mktemp("resume-cache")
    run(workflow(["train"], **_settings(tiny_cohort, out, cache, False)))
    return {"out": out, "cache": cache}


def test_killed_run_resumes_to_the_same_weights_and_metrics(uninterrupted, tiny_cohort, tmp_path):
    out = tmp_path / "killed"
    state_path = out / "models" / "training_state.pt"
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115 (closed below; the process writes to it)
    process = subprocess.Popen(
        _command(tiny_cohort, out, uninterrupted["cache"], False), env=_env(), stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 600
    while _epoch(state_path) < KILL_AFTER and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    log.close()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    killed_at = _epoch(state_path)
    assert KILL_AFTER <= killed_at < EPOCHS  # killed during training, with a complete state of an earlier epoch
    assert not (out / "eval-test" / "metrics.json").exists()

    resumed = subprocess.run(
        _command(tiny_cohort, out, uninterrupted["cache"], True), env=_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed from {state_path}: epoch {killed_at} of {EPOCHS} done" in resumed.stdout + resumed.stderr

    again, reference = _state(out), _state(uninterrupted["out"])
    assert again["metrics"] == reference["metrics"]
    for kind in ("best",):
        assert again[kind].keys() == reference[kind].keys()
        assert all(torch.equal(again[kind][k], reference[kind][k]) for k in reference[kind])
    last, last_reference = again["last"], reference["last"]
    assert last["trainer"] == last_reference["trainer"]
    assert _epoch(out / "models" / "training_state.pt") == EPOCHS
    assert all(torch.equal(last["model"][k], last_reference["model"][k]) for k in last_reference["model"])
    assert last["early_stop"] == last_reference["early_stop"]
    assert last["best_checkpoint"] == last_reference["best_checkpoint"]
    assert torch.equal(last["random"]["torch"], last_reference["random"]["torch"])


def test_resume_without_a_saved_state_is_refused(tiny_cohort, tmp_path, one_torch_thread):
    with pytest.raises(RuntimeError) as refused:  # monai.bundle wraps it; the command line shows the root cause
        run(workflow(["train"], **_settings(tiny_cohort, tmp_path / "fresh", tmp_path / "cache", True)))
    cause = root_cause(refused.value)
    assert isinstance(cause, FileNotFoundError) and "resume is true but there is no training state" in str(cause)
    assert str(tmp_path / "fresh" / "models" / "training_state.pt") in str(cause)


def test_grad_scaler_state_carries_the_loss_scale_and_refuses_another_amp_setting():
    """float16 training: a resumed run goes on with the saved loss scale; a run resumed with amp changed is refused."""
    saved = types.SimpleNamespace(scaler=torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=7))
    state = GradScalerState(saved).state_dict()
    assert state["scale"] == 512.0 and state["growth_interval"] == 7

    resumed = types.SimpleNamespace(scaler=torch.amp.GradScaler("cpu"))
    assert resumed.scaler.get_scale() == 2.0**16
    GradScalerState(resumed).load_state_dict(state)
    assert resumed.scaler.get_scale() == 512.0 and resumed.scaler.get_growth_interval() == 7

    without = types.SimpleNamespace(scaler=None)  # bfloat16 or float32: no scaler, an empty state
    assert GradScalerState(without).state_dict() == {}
    GradScalerState(without).load_state_dict({})
    with pytest.raises(ValueError, match="resume with the amp setting the run was started with"):
        GradScalerState(without).load_state_dict(state)
    with pytest.raises(ValueError, match="a gradient scaler is not saved but used now"):
        GradScalerState(resumed).load_state_dict({})
