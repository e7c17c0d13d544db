"""Mixed precision: the amp setting, the autocast inferer, and a bf16 training run of train.json on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from bundle_utils import TINY, workflow
from monai.bundle import ConfigParser

from axial_monai.configs import config_path
from axial_monai.engines import AutocastInferer, autocast_dtype
from axial_monai.run import load_weights


@pytest.mark.parametrize(
    "amp, expected",
    [(False, None), (None, None), ("none", None), (True, torch.bfloat16), ("auto", torch.bfloat16)]
    + [("bf16", torch.bfloat16), ("fp16", torch.float16)]
    # what `python -m monai.bundle run ... --amp true|false` passes (python-fire keeps lower-case words as strings)
    + [("true", torch.bfloat16), ("false", None)],
)
def test_autocast_dtype_on_cpu(amp, expected):
    assert autocast_dtype(amp, "cpu") == expected


def test_autocast_dtype_refuses_unknown_settings():
    with pytest.raises(ValueError, match="amp must be"):
        autocast_dtype("half", "cpu")
    with pytest.raises(ValueError, match="dtype must be"):
        AutocastInferer(torch.int8)


def test_autocast_inferer_runs_in_bf16_and_returns_float32():
    seen = []
    net = torch.nn.Linear(4, 2)
    net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = AutocastInferer(torch.bfloat16)(torch.rand(3, 4), net)
    assert seen == [torch.bfloat16] and out.dtype == torch.float32
    assert AutocastInferer(None)(torch.rand(3, 4), net).dtype == torch.float32 and seen[-1] == torch.float32


def test_grad_scaler_only_for_float16():
    parser = ConfigParser()
    parser.read_config(str(config_path("train")))
    for amp, scaler in ((False, False), ("bf16", False), ("fp16", True)):
        parser.update({"amp": amp, "device": "$torch.device('cpu')"})
        parser.parse()
        assert parser.get_parsed_content("train#trainer#amp") is scaler


def test_bf16_training_through_the_bundle(tiny_cohort, tmp_path):
    """One epoch of train.json with amp='bf16' on the CPU: backbone and head run in bfloat16 (trainer and
    evaluators), the loss is finite, and the checkpoint keeps float32 weights."""
    out = tmp_path / "run"
    wf = workflow(["train"], dataset_dir=tiny_cohort, output_dir=str(out), epochs=1, amp="bf16", **TINY)
    wf.initialize()
    assert wf.check_properties() == []
    network = wf.parser.get_parsed_content("network")
    trainer = wf.parser.get_parsed_content("train#trainer")
    dtypes: list[torch.dtype] = []
    network.encoder.backbone[0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    network.head.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    wf.run()
    wf.finalize()
    assert trainer.scaler is None  # bf16 needs no gradient scaling
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert torch.isfinite(torch.as_tensor(trainer.state.output[0]["loss"]))
    state = load_weights(out / "models" / "model.pt")
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
    # the bf16 evaluation scored every test scan with float32 probabilities, and its accuracy is theirs
    metrics = json.loads((out / "eval-test" / "metrics.json").read_text())["metrics"]
    predictions = pd.read_csv(out / "eval-test" / "predictions.csv")
    assert len(predictions) == len(json.loads((Path(tiny_cohort) / "datalist.json").read_text())["test"])
    np.testing.assert_allclose(predictions[["prob_CN", "prob_AD"]].sum(axis=1), 1.0, atol=1e-5)
    assert metrics["accuracy"] == pytest.approx((predictions["pred"] == predictions["label"]).mean())
