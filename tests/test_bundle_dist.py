"""The multi-GPU override ``multi_gpu_train.json`` merged over ``train.json``, exercised on CPU (gloo).

``torchrun`` launches 2 processes of ``python -m monai.bundle run training`` exactly as a user would on N GPUs;
the config checks run in this process inside a one-process group, so that ``initialize`` runs as under torchrun.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import ignite.distributed as idist
import monai
import pandas as pd
import pytest
import torch
import torch.distributed as dist
from bundle_utils import TINY, workflow
from monai.bundle import ConfigParser

from axial_monai.configs import config_path
from axial_monai.data.datalist import load_split
from axial_monai.metrics import classification_scores

CONFIG_FILES = [str(config_path("train")), str(config_path("multi_gpu_train"))]
NPROC = 2
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _types(objs) -> set[str]:
    return {type(o).__name__ for o in objs}


def _torchrun(out: Path, dataset_dir: str, *extra: str) -> tuple[int, str]:
    """Launch the bundle under torchrun with NPROC CPU processes; return (exit code, combined output)."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={NPROC}",
        "-m", "monai.bundle", "run", "training",
        "--config_file", repr(CONFIG_FILES),
        "--meta_file", str(config_path("metadata")),
        "--logging_file", str(config_path("logging.conf")),
        "--dataset_dir", dataset_dir,
        "--output_dir", str(out),
        "--epochs", "1",
        "--cache_dir", str(out.parent / "volumes"),  # the ranks share one volume cache (never the user's)
        *(a for k, v in TINY.items() for a in (f"--{k}", str(v))),
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU ranks (gloo) even on a GPU host
    # own session: on timeout the launcher and its workers are killed together
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    proc = subprocess.Popen(cmd, cwd=out.parent, env=env, start_new_session=True, **pipe)
    try:
        log, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {TIMEOUT_S} s:\n{log[-5000:]}")
    return proc.returncode, log


def _check_run(out: Path, dataset_dir: str, datalist: str | None, rc: int, log: str) -> None:
    assert rc == 0, log[-20000:]

    # best checkpoint: the unwrapped network's weights (no DDP `module.` prefix), loadable strictly, + run settings
    checkpoint = torch.load(out / "models" / "model.pt", weights_only=True)
    state = checkpoint["model"]
    assert state and not any(k.startswith("module.") for k in state)
    assert checkpoint["run"]["network"]["kwargs"]["num_slices"] == TINY["num_slices"]
    parser = ConfigParser()
    parser.read_config(str(config_path("train")))
    parser.update({k: v for k, v in TINY.items() if k in ("num_slices", "image_size")})
    parser.get_parsed_content("network_def").load_state_dict(state)

    # one row per test subject: gathered from both ranks, none duplicated, none missing
    test_items = load_split(dataset_dir, "test", datalist)
    preds = pd.read_csv(out / "eval-test" / "predictions.csv")
    assert preds["file"].is_unique
    assert sorted(preds["file"]) == sorted(item["image"] for item in test_items)
    labels = {item["image"]: int(item["label"]) for item in test_items}
    assert preds["label"].tolist() == [labels[f] for f in preds["file"]]

    # the metrics gathered across ranks are those of the whole test split
    report = json.loads((out / "eval-test" / "metrics.json").read_text())
    assert report["num_scans"] == len(test_items)
    expected = classification_scores(preds[["prob_CN", "prob_AD"]].to_numpy(), preds["label"].to_numpy())
    got = {k: math.nan if report["metrics"][k] is None else report["metrics"][k] for k in expected}
    assert got == pytest.approx(expected, abs=1e-6, nan_ok=True)

    # StatsHandler kept on rank 0 only: one validation report per epoch, not one per rank
    assert log.count("Key metric: val_mcc best value") == 1, log[-5000:]


def test_merged_config_initializes_and_has_properties(tiny_cohort, tmp_path, monkeypatch):
    """initialize (process group, determinism, early-stop trainer) and check_properties of the merged config."""
    # what torchrun sets for a world of one process (env:// rendezvous)
    group_env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0", "WORLD_SIZE": "1"}
    for k, v in {**group_env, "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    settings = {"dataset_dir": tiny_cohort, "output_dir": str(tmp_path), "epochs": 1, "cache": "none", **TINY}
    train_cfg, dist_cfg = (json.loads(config_path(f).read_text()) for f in ("train", "multi_gpu_train"))
    # the override repeats nothing of train.json: it keeps train.json's steps and wraps train.json's network
    assert not {"initialize", "run", "training"} & set(dist_cfg)
    assert dist_cfg["network"]["module"] == "@local_network" and "local_network" in train_cfg

    wf = workflow(["train", "multi_gpu_train"], **settings)
    try:
        wf.initialize()
        assert dist.is_initialized() and dist.get_world_size() == 1
        assert dist.get_backend() == ("nccl" if torch.cuda.is_available() else "gloo")
        assert wf.check_properties() == []
        p = wf.parser
        assert p.get_parsed_content("device") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        net = p.get_parsed_content("network")
        assert isinstance(net, torch.nn.parallel.DistributedDataParallel)
        assert p.get_parsed_content("train#trainer").network is net
        assert p.get_parsed_content("validate#evaluator").network is net
        assert p.get_parsed_content("test#evaluator").network is net
        for split, shuffle, even in (("train", True, True), ("validate", False, False), ("test", False, False)):
            sampler = p.get_parsed_content(f"{split}#dataloader").sampler
            assert isinstance(sampler, monai.data.DistributedSampler) and sampler.shuffle is shuffle, split
            assert p[f"{split}#sampler#even_divisible"] is even, split
        assert p["train#dataloader#shuffle"] is False
        # rank 0 keeps every handler of train.json
        assert len(p.get_parsed_content("train#trainer#train_handlers")) == len(p["train#handlers"])

        # what ranks > 0 keep: no savers/loggers, but validation, early stopping and the gathering handlers
        other = ConfigParser()
        other.read_config(CONFIG_FILES)
        other.update({**settings, "is_rank0": False})
        assert _types(other.get_parsed_content("train#trainer#train_handlers")) == {
            "LrScheduleHandler",
            "ValidationHandler",
            "LossProgressBar",
        }
        assert _types(other.get_parsed_content("validate#evaluator#val_handlers")) == {"EarlyStopHandler"}
        assert _types(other.get_parsed_content("test#evaluator#val_handlers")) == {
            "CheckpointLoader",
            "MetricsSaver",
            "MetricsJSONWriter",
            "PredictionWriter",
        }
    finally:
        wf.finalize()
    assert not dist.is_initialized()
    assert idist.get_world_size() == 1  # ignite re-synced: later in-process runs are not left in a dead group


def test_torchrun_two_processes(tiny_cohort, tmp_path):
    """2 ranks in one launch: 20 training scans (10 per rank), the 10 validation scans even (5 + 5) and 9 test scans
    uneven (5 + 4, even_divisible false): the gathers must handle both."""
    full = json.loads((Path(tiny_cohort) / "datalist.json").read_text())
    assert len(full["training"]) == 20 and len(full["validation"]) == 10 and len(full["test"]) == 10
    datalist = tmp_path / "datalist_odd.json"
    datalist.write_text(json.dumps({**full, "test": full["test"][:9]}))
    out = tmp_path / "run"
    rc, log = _torchrun(out, tiny_cohort, "--datalist", str(datalist))
    _check_run(out, tiny_cohort, str(datalist), rc, log)
