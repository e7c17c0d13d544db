import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from bundle_utils import BUNDLE, TINY, run, workflow
from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out

from axial_monai.configs import config_path
from axial_monai.run import RunSettings, load_weights


def _models_digest():
    return sorted((p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in (BUNDLE / "models").iterdir())


@pytest.fixture(scope="module")
def trained(tiny_cohort, tmp_path_factory):
    """Train 1 epoch through train.json (training + test evaluation of the best checkpoint)."""
    out = tmp_path_factory.mktemp("run")
    before = _models_digest()
    wf = workflow(["train"], dataset_dir=tiny_cohort, output_dir=str(out), epochs=1, **TINY)
    run(wf)
    assert _models_digest() == before  # nothing written into bundle/models
    return out


def test_train_writes_checkpoint_metrics_and_predictions(trained, tiny_cohort):
    assert (trained / "models" / "model.pt").is_file()
    checkpoint = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert any(k.startswith("attention.") for k in checkpoint["model"])
    assert checkpoint["run"]["network"]["kwargs"]["num_slices"] == TINY["num_slices"]
    assert list(trained.glob("events.out.tfevents.*"))
    report = json.loads((trained / "eval-test" / "metrics.json").read_text())
    for name in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "mcc", "auc"):
        assert name in report["metrics"]
    n_test = len(json.loads((Path(tiny_cohort) / "datalist.json").read_text())["test"])
    assert report["num_scans"] == n_test
    csv = (trained / "eval-test" / "metrics.csv").read_text()
    assert "mcc" in csv and "auc" in csv
    preds = pd.read_csv(trained / "eval-test" / "predictions.csv")
    assert list(preds.columns) == ["file", "prob_CN", "prob_AD", "pred", "pred_label", "label", "subject"]
    assert len(preds) == n_test
    # confidence intervals: the estimate is the evaluator's metric, the interval contains it, both levels present
    intervals = report["confidence_intervals"]
    assert intervals["confidence"] == 0.95 and intervals["scan"]["n_scans"] == n_test
    for level in ("scan", "subject"):
        for name in ("accuracy", "balanced_accuracy", "mcc"):
            ci = intervals[level][name]
            assert ci["low"] <= ci["estimate"] + 1e-9 and ci["estimate"] <= ci["high"] + 1e-9
    assert intervals["scan"]["accuracy"]["estimate"] == pytest.approx(report["metrics"]["accuracy"])
    assert preds[["prob_CN", "prob_AD"]].sum(axis=1).round(5).eq(1).all()
    assert set(preds["pred_label"]) <= {"CN", "AD"}


def test_evaluate_merges_over_train(trained, tiny_cohort, tmp_path):
    wf = workflow(
        ["train", "evaluate"],
        dataset_dir=tiny_cohort,
        output_dir=str(tmp_path),
        ckpt_path=str(trained / "models" / "model.pt"),
        eval_split="validation",
        **TINY,
    )
    run(wf)
    n_val = len(json.loads((Path(tiny_cohort) / "datalist.json").read_text())["validation"])
    assert len(pd.read_csv(tmp_path / "eval-validation" / "predictions.csv")) == n_val
    assert json.loads((tmp_path / "eval-validation" / "metrics.json").read_text())["num_scans"] == n_val
    assert not (tmp_path / "models" / "model.pt").exists()  # evaluation does not train


def test_inference_gives_the_probabilities_of_the_evaluation(trained, tiny_cohort, tmp_path):
    """inference.json and evaluate.json on the test split with the checkpoint of train.json: the same probabilities.

    The evaluation reads the scans without the volume cache here: its default uint8 storage rounds the normalised
    intensities to 1/255 steps (train.json's own evaluation, with the cache, agrees to that rounding only).
    """
    infer_args = {k: v for k, v in TINY.items() if k != "batch_size"}
    run(
        workflow(
            ["train", "evaluate"],
            dataset_dir=tiny_cohort,
            output_dir=str(tmp_path / "eval"),
            ckpt_path=str(trained / "models" / "model.pt"),
            cache="none",
            **TINY,
        )
    )
    wf = workflow(
        ["inference"],
        "infer",
        input=str(Path(tiny_cohort) / "datalist.json"),
        datalist_key="test",
        output_dir=str(tmp_path),
        ckpt_path=str(trained / "models" / "model.pt"),
        **infer_args,
    )
    run(wf)
    evaluated = pd.read_csv(tmp_path / "eval" / "eval-test" / "predictions.csv").set_index("file")
    inferred = pd.read_csv(tmp_path / "inference" / "predictions.csv").set_index("file")
    cached = pd.read_csv(trained / "eval-test" / "predictions.csv").set_index("file")
    np.testing.assert_allclose(
        cached.loc[evaluated.index, ["prob_CN", "prob_AD"]], evaluated[["prob_CN", "prob_AD"]], atol=5e-3
    )
    assert sorted(inferred.index) == sorted(evaluated.index) and len(inferred) == len(evaluated) > 0
    columns = ["prob_CN", "prob_AD"]
    np.testing.assert_allclose(inferred.loc[evaluated.index, columns], evaluated[columns], rtol=0, atol=1e-6)
    assert inferred.loc[evaluated.index, "pred_label"].tolist() == evaluated["pred_label"].tolist()


def test_verify_net_in_out_and_scripted_export(trained, tmp_path):
    """The model zoo's checks on the shipped inference.json: verify_net_in_out, and ckpt_export in its default mode
    (TorchScript scripting): the scripted network equals the eager one on the run's grid and refuses another."""
    grid = list(RunSettings.load(trained).grid.shape)
    overrides = {
        "ckpt_path": str(trained / "models" / "model.pt"),
        "_meta_#network_data_format#inputs#image#spatial_shape": grid,
    }
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(config_path("metadata")),
        config_file=str(config_path("inference")),
        **overrides,
    )
    ts = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts),
        ckpt_file=str(trained / "models" / "model.pt"),
        meta_file=str(config_path("metadata")),
        config_file=str(config_path("inference")),
        key_in_ckpt="model",
        **overrides,
    )
    exported = torch.jit.load(str(ts))
    # the eager network of the same config and checkpoint, on the same input: the same logits
    parser = ConfigParser()
    parser.read_config(str(config_path("inference")))
    parser.update({"ckpt_path": overrides["ckpt_path"]})
    eager = parser.get_parsed_content("network_def")
    eager.load_state_dict(load_weights(trained / "models" / "model.pt"))
    eager.eval()
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.rand(1, 1, *grid, generator=generator) for _ in range(2)]
    with torch.no_grad():
        expected = torch.cat([eager(x) for x in inputs])
        got = torch.cat([exported(x) for x in inputs])
    assert got.shape == (2, 2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected[0], expected[1])  # the input matters: not a constant output
    with pytest.raises(torch.jit.Error, match=re.escape(f"spatial shape {grid}, not")):
        exported(torch.rand(1, 1, grid[0] + 2, *grid[1:]))


def test_demo_cohort_is_learnable(trained_demo):
    """A small real training run separates AD-like from CN subjects it never saw (chance is 0.5)."""
    metrics = json.loads((trained_demo / "eval-test" / "metrics.json").read_text())["metrics"]
    assert metrics["accuracy"] >= 0.8, metrics
    assert metrics["auc"] >= 0.85, metrics


@pytest.mark.parametrize(
    "files, override, expected",
    [
        (["train", "triplanar"], {}, "TriPlanarAxialNet"),
        (["train", "paper", "triplanar"], {"pretrained": "none"}, "TriPlanarAxialNet"),
        (["train"], {"network_spec#_target_": "axial_monai.networks.MeanPoolNet"}, "MeanPoolNet"),
        (["train"], {"network_spec#_target_": "axial_monai.networks.SliceTransformerNet"}, "SliceTransformerNet"),
    ],
)
def test_network_variants_build_from_config(files, override, expected):
    parser = ConfigParser()
    parser.read_config([str(config_path(f)) for f in files])
    parser.update({"num_slices": 4, "image_size": 32, **override})
    net = parser.get_parsed_content("network_def").eval()
    assert type(net).__name__ == expected
    with torch.no_grad():
        assert net(torch.rand(1, 1, 20, 24, 20)).shape == (1, 2)


def test_paper_settings_override():
    parser = ConfigParser()
    parser.read_config([str(config_path("train")), str(config_path("paper"))])
    parser.update({"pretrained": "none"})  # the paper's ImageNet weights need the torchvision cache
    net = parser.get_parsed_content("network_def")
    assert sum(p.numel() for p in net.parameters()) == 14_724_675  # VGG16-bn AxialNet of the paper
    assert parser.get_parsed_content("num_slices") == 80 and parser.get_parsed_content("learning_rate") == 1e-4
