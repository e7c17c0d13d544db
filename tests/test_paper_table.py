"""``axial-monai benchmark``: every model cross-validated on the same folds, the paper's table with intervals, paired
tests and double transfer; the table's numbers are recomputed here from the per-fold prediction files it wrote.

The cohort is the small Clinica tree of ``test_crossval`` (CN, AD, converters, stable MCI; tiny volumes), 2 folds,
two models, one epoch: the mechanics, not the accuracy. The statistics are checked against their definitions on
simulated data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import matthews_corrcoef, roc_auc_score
from test_crossval import TINY, write_tree

from axial_monai import cli
from axial_monai.crossval.compare import delong_test, holm, mcnemar_test, paired_comparisons
from axial_monai.errors import InputError
from axial_monai.paper_table import MODELS, model_overrides

MODELS_RUN = ("axial", "mean_pool")
#: settings of the double transfer run only: the main task's head kept, a gentler learning rate
TRANSFER = {"initialised_network#reset": [], "learning_rate": 5e-5}


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[Path, Path]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny trainings on 2 shared cores
    try:
        bids = write_tree(tmp_path_factory.mktemp("paper") / "bids")
        out = tmp_path_factory.mktemp("paper") / "out"
        argv = ["benchmark", bids, out, "--models", ",".join(MODELS_RUN), "--k", 2, "--transfer"]
        argv += ["--overrides", json.dumps(TINY), "--progress", "False"]
        argv += ["--transfer_overrides", json.dumps(TRANSFER)]
        assert cli.main([str(a) for a in argv]) == 0
    finally:
        torch.set_num_threads(before)
    return bids, out


def _fold_predictions(run_dir: Path) -> pd.DataFrame:
    """Each fold's own ``eval-test/predictions.csv``, joined by image to its datalist's test items: one row per
    subject (its earliest session)."""
    rows = []
    for fold_dir in sorted(run_dir.glob("fold-*")):
        items = {item["image"]: item for item in json.loads((fold_dir / "datalist.json").read_text())["test"]}
        written = pd.read_csv(fold_dir / "eval-test" / "predictions.csv")
        image_column = next(c for c in written.columns if c in ("image", "filename", "file"))
        for row in written.to_dict("records"):
            item = items[str(row[image_column])]
            rows.append({"subject": item["subject"], "month": int(item["session"][5:]), "label": item["label"], **row})
    frame = pd.DataFrame(rows).sort_values(["subject", "month"]).drop_duplicates("subject")
    probs = [c for c in frame.columns if c.startswith("prob_")]
    return frame.assign(score=frame[probs[1]], pred=frame[probs].to_numpy().argmax(1))


def test_the_table_is_what_the_fold_predictions_give(compared):
    _, out = compared
    table = pd.read_csv(out / "paper_table.csv").set_index(["model", "metric"])
    assert sorted(table.index.get_level_values("model").unique()) == sorted(MODELS_RUN)
    for model in MODELS_RUN:
        truth = _fold_predictions(out / model)
        labels, pred = truth["label"].to_numpy(), truth["pred"].to_numpy()
        expected = {
            "accuracy": (labels == pred).mean(),
            "sensitivity": pred[labels == 1].mean(),
            "specificity": 1 - pred[labels == 0].mean(),
            "mcc": matthews_corrcoef(labels, pred),
            "auc": roc_auc_score(labels, truth["score"]),
        }
        for metric, value in expected.items():
            row = table.loc[(model, metric)]
            assert row["estimate"] == pytest.approx(value, abs=1e-9), (model, metric)
            assert row["low"] <= row["estimate"] <= row["high"] and row["n_subjects"] == len(truth)
    # the same folds: every model tested every subject once
    folds = [pd.read_csv(out / m / "fold_assignment.csv") for m in MODELS_RUN]
    assert folds[0].equals(folds[1])


def test_the_paired_tests_use_the_same_subjects(compared):
    _, out = compared
    comparisons = pd.read_csv(out / "comparisons.csv")
    (row,) = comparisons.to_dict("records")
    reference, other = _fold_predictions(out / "axial"), _fold_predictions(out / "mean_pool").set_index("subject")
    other = other.loc[reference["subject"]]
    assert row["model"] == "mean_pool" and row["n_subjects"] == len(reference)
    assert row["auc_reference"] == pytest.approx(roc_auc_score(reference["label"], reference["score"]))
    assert row["auc_model"] == pytest.approx(roc_auc_score(other["label"], other["score"]))
    right = reference["pred"].to_numpy() == reference["label"].to_numpy()
    right_other = other["pred"].to_numpy() == other["label"].to_numpy()
    assert (row["only_reference"], row["only_model"]) == ((right & ~right_other).sum(), (right_other & ~right).sum())
    assert 0 <= row["auc_p"] <= row["auc_p_holm"] <= 1


def test_the_markdown_table_has_every_part(compared):
    _, out = compared
    text = (out / "paper_table.md").read_text()
    for needed in (
        MODELS["axial"].label,
        MODELS["mean_pool"].label,
        "Paired tests",
        "Holm",
        "Double transfer",
        "2-fold",
        "How it was made",
        "benchmark",
        "Machine:",
        "parameters",
        "inference s/scan",
    ):
        assert needed in text, needed
    assert (out / "paper_table.png").stat().st_size > 10_000
    cost = pd.read_csv(out / "cost.csv").set_index("model")
    assert (cost["parameters"] > 1000).all() and (cost["inference_seconds_per_scan"] > 0).all()
    assert (cost["train_seconds_per_epoch"] > 0).all()


def test_double_transfer_starts_from_the_same_folds_as_imagenet(compared):
    bids, out = compared
    runs = [out / "conversion" / name for name in ("imagenet", "double_transfer")]
    assert pd.read_csv(runs[0] / "fold_assignment.csv").equals(pd.read_csv(runs[1] / "fold_assignment.csv"))
    for fold in range(2):
        done = json.loads((runs[1] / f"fold-{fold}" / "done.json").read_text())
        assert done["init_ckpt"].startswith(str(out / "axial" / f"fold-{fold}"))
        assert json.loads((runs[0] / f"fold-{fold}" / "done.json").read_text())["init_ckpt"] is None
    # the transfer's own settings reach its run and no other
    settings = [json.loads((run / "crossval.json").read_text())["overrides"] for run in runs]
    assert all(key not in settings[0] for key in TRANSFER) and TRANSFER.items() <= settings[1].items()


def test_a_rerun_resumes_and_trains_nothing(compared, monkeypatch, capsys):
    bids, out = compared
    import axial_monai.crossval.runner as runner

    def refuse(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(runner, "run_fold", refuse)
    before = (out / "paper_table.csv").read_text()
    argv = ["benchmark", bids, out, "--models", ",".join(MODELS_RUN), "--k", 2, "--transfer"]
    argv += ["--overrides", json.dumps(TINY), "--progress", "False"]
    # without the transfer's own settings, its finished folds are not reused: refused, naming what differs
    assert cli.main([str(a) for a in argv]) == 2
    assert "overrides.learning_rate: 5e-05 -> '(unset)'" in capsys.readouterr().err
    assert cli.main([str(a) for a in [*argv, "--transfer_overrides", json.dumps(TRANSFER)]]) == 0
    assert (out / "paper_table.csv").read_text() == before


def test_the_slice_baseline_samples_slices_in_training():
    from axial_monai.crossval.runner import TRAIN_CONFIG

    settings = model_overrides(MODELS["majority_vote_2d"], [TRAIN_CONFIG], {"epochs": 1})
    assert settings["network_spec#_target_"].endswith("SliceClassifier2D") and settings["epochs"] == 1
    assert settings["train#augmentation"][-1]["_target_"].endswith("RandSliceSampled")
    assert len(settings["train#augmentation"]) > 1  # the config's own augmentation is kept


def test_delong_is_the_auc_difference_and_holds_its_level_under_the_null():
    rng = np.random.default_rng(0)
    rejected = 0
    for _ in range(400):
        labels = rng.integers(0, 2, 60)
        signal = labels + rng.normal(0, 1, 60)
        a, b = signal + rng.normal(0, 0.7, 60), signal + rng.normal(0, 0.7, 60)
        result = delong_test(labels, a, b)
        assert result["auc_a"] == pytest.approx(roc_auc_score(labels, a))
        rejected += result["p"] < 0.05
    assert 0.02 <= rejected / 400 <= 0.09  # about 5 % of true nulls are rejected
    labels = rng.integers(0, 2, 200)
    strong, noise = labels + rng.normal(0, 0.5, 200), rng.normal(0, 1, 200)
    assert delong_test(labels, strong, noise)["p"] < 1e-6
    assert delong_test(labels, strong, strong)["p"] == 1.0


def test_mcnemar_counts_the_discordant_cases_and_holm_steps_down():
    result = mcnemar_test([1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 1], [0, 0, 1, 0, 1, 1])
    assert (result["only_a"], result["only_b"]) == (3, 0) and result["p"] == pytest.approx(0.25)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, np.nan]), [0.03, 0.06, 0.06, np.nan])


def test_models_tested_on_other_subjects_are_refused():
    frame = pd.DataFrame(
        {
            "subject": ["a", "b"],
            "session": ["ses-M000"] * 2,
            "label": [0, 1],
            "prob_CN": [0.6, 0.3],
            "prob_AD": [0.4, 0.7],
        }
    )
    with pytest.raises(InputError, match="not tested on the same subjects"):
        paired_comparisons({"axial": frame, "mean_pool": frame.assign(subject=["a", "c"])}, "axial")


def test_the_explanation_consistency_is_summarised_per_map_without_the_mean_rows():
    from axial_monai.paper_table.document import _consistency

    rows = [
        ("attention", 0, 1, 0.9),
        ("attention", 0, 2, 0.7),
        ("attention", 1, 2, 0.8),
        ("attention", "mean", "mean", 0.8),
    ]
    summary = _consistency(pd.DataFrame(rows, columns=["map", "fold_a", "fold_b", "spearman"])).iloc[0]
    assert summary["fold pairs"] == 3 and summary["lowest"] == "0.700" and summary["highest"] == "0.900"
