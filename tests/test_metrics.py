"""Every reported metric against values worked out by hand, for both choices of the positive class.

The scans below are built so that their confusion matrix (class 1 as positive) and their ROC ranking are known:
the expected numbers are written out as fractions of those counts, not computed with scikit-learn or with the
project's own ``classification_scores``. The same numbers are then checked where users read them: the ignite
metrics of the bundle's evaluators, ``metrics.json`` (``num_scans``, ``null`` AUC) and ``predictions.csv``.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.transforms import Activationsd
from sklearn.exceptions import UndefinedMetricWarning

from axial_monai.errors import SettingsError
from axial_monai.handlers import MetricsJSONWriter, PredictionWriter
from axial_monai.metrics import (
    METRICS,
    ClassificationMetric,
    classification_metrics,
    classification_scores,
    probs_and_labels,
)


def _probs(p1) -> np.ndarray:
    """(N, 2) probabilities from the probability of class 1."""
    p1 = np.asarray(p1, dtype=float)
    return np.stack([1.0 - p1, p1], axis=1)


# Case A -- class 1 as positive: TP = 3 (0.9, 0.8, 0.7), FN = 1 (0.3), FP = 2 (0.6, 0.55), TN = 4.
# ROC: each positive outranks how many of the 6 negatives? 0.9 -> 6, 0.8 -> 6, 0.7 -> 6, 0.3 -> 2 (0.2, 0.1).
CASE_A = {
    "p1": [0.9, 0.8, 0.7, 0.3, 0.6, 0.55, 0.4, 0.2, 0.1, 0.45],
    "labels": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
    "counts": {"TP": 3, "FN": 1, "FP": 2, "TN": 4},
    "auc": 20 / 24,
}
# Case B -- TP = 5, FN = 0, FP = 3 (0.95, 0.65, 0.52), TN = 1 (0.1).
# ROC: 0.9, 0.8, 0.7 outrank 3 negatives each (not 0.95); 0.6 and 0.55 outrank 2 (0.52, 0.1): 13 of 20 pairs.
CASE_B = {
    "p1": [0.9, 0.8, 0.7, 0.6, 0.55, 0.95, 0.65, 0.52, 0.1],
    "labels": [1, 1, 1, 1, 1, 0, 0, 0, 0],
    "counts": {"TP": 5, "FN": 0, "FP": 3, "TN": 1},
    "auc": 13 / 20,
}
# Case C -- everything predicted class 0: TP = 0, FN = 2, FP = 0, TN = 3; MCC is 0 by convention (no predicted
# positive), and the ROC ranks both positives above every negative.
CASE_C = {
    "p1": [0.45, 0.4, 0.3, 0.2, 0.1],
    "labels": [1, 1, 0, 0, 0],
    "counts": {"TP": 0, "FN": 2, "FP": 0, "TN": 3},
    "auc": 1.0,
}


def _hand_values(counts: dict[str, int], auc: float, positive: int) -> dict[str, float]:
    """The six metrics from a confusion matrix with class 1 as positive, reported for ``positive``."""
    tp, fn, fp, tn = counts["TP"], counts["FN"], counts["FP"], counts["TN"]
    recall_1, recall_0 = tp / (tp + fn), tn / (tn + fp)
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "accuracy": (tp + tn) / (tp + tn + fp + fn),
        "balanced_accuracy": (recall_1 + recall_0) / 2,
        # the positive class's recall and the other class's recall: they swap with the positive class
        "sensitivity": recall_1 if positive == 1 else recall_0,
        "specificity": recall_0 if positive == 1 else recall_1,
        "mcc": (tp * tn - fp * fn) / denominator if denominator else 0.0,
        "auc": auc,  # the ROC of class 0's probability for class 0 ranks the same pairs
    }


@pytest.mark.parametrize("case", [CASE_A, CASE_B, CASE_C], ids=["A", "B", "C"])
@pytest.mark.parametrize("positive", [1, 0])
def test_scores_match_hand_built_confusion_matrices(case, positive):
    expected = _hand_values(case["counts"], case["auc"], positive)
    got = classification_scores(_probs(case["p1"]), np.array(case["labels"]), positive=positive)
    assert list(got) == list(METRICS)
    assert got == pytest.approx(expected, abs=1e-12)


def test_written_out_values_of_case_a():
    """The hand formula itself, written out once as plain numbers (positive = 1, then 0)."""
    scores = classification_scores(_probs(CASE_A["p1"]), np.array(CASE_A["labels"]))
    assert scores == pytest.approx(
        {
            "accuracy": 0.7,
            "balanced_accuracy": (3 / 4 + 4 / 6) / 2,
            "sensitivity": 0.75,
            "specificity": 4 / 6,
            "mcc": 10 / math.sqrt(600),
            "auc": 20 / 24,
        }
    )
    flipped = classification_scores(_probs(CASE_A["p1"]), np.array(CASE_A["labels"]), positive=0)
    assert (flipped["sensitivity"], flipped["specificity"]) == pytest.approx((4 / 6, 0.75))


def test_auc_scores_the_positive_class_probability():
    """AUC must rank by the positive class's probability: with positive 0, a high class-1 probability is bad."""
    labels = np.array(CASE_B["labels"])
    assert classification_scores(_probs(CASE_B["p1"]), labels, positive=0, names=["auc"])["auc"] == pytest.approx(
        13 / 20
    )
    # probabilities that do not sum to 1 (scores): class 0's column alone decides the ROC for positive 0
    scores = np.stack([np.array([0.1, 0.2, 0.3, 0.9, 0.8]), np.full(5, 0.5)], axis=1)
    got = classification_scores(scores, np.array([1, 1, 1, 0, 0]), positive=0, names=["auc"])["auc"]
    assert got == 1.0


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_present_gives_nan_auc_and_nan_recall_of_the_absent_class(label):
    probs = _probs([0.8, 0.3, 0.6])
    labels = np.full(3, label)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)  # the undefined AUC is not even attempted
        scores = classification_scores(probs, labels)
    assert math.isnan(scores["auc"])
    predicted_right = sum(p == label for p in (1, 0, 1))  # argmax of 0.8, 0.3, 0.6
    assert scores["accuracy"] == pytest.approx(predicted_right / 3)
    present, absent = ("sensitivity", "specificity") if label == 1 else ("specificity", "sensitivity")
    assert scores[present] == pytest.approx(predicted_right / 3)
    assert math.isnan(scores[absent])


def test_three_classes_macro_and_one_vs_rest():
    # rows: class 0, 0, 1, 1, 2, 2; predictions (argmax): 0, 1, 1, 1, 2, 0
    probs = np.array(
        [[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]]
    )
    labels = np.array([0, 0, 1, 1, 2, 2])
    scores = classification_scores(probs, labels, names=["accuracy", "balanced_accuracy", "auc"])
    # recalls: class 0 1/2, class 1 2/2, class 2 1/2
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    # one-vs-rest AUCs by counting pairs in class k's column (2 scans of class k against the 4 others):
    # k=0: 0.7 beats all 4, 0.3 beats 3 (not 0.5) -> 7/8; k=1: 0.8 beats all 4, 0.5 beats 3 (not 0.6) -> 7/8;
    # k=2: 0.7 and 0.4 beat all 4 (0.1, 0.1, 0.1, 0.3) -> 8/8
    assert scores["auc"] == pytest.approx((7 / 8 + 7 / 8 + 8 / 8) / 3)
    # a class without scans: its one-vs-rest AUC, hence the macro AUC, is undefined (NaN), not an error
    with pytest.warns(UndefinedMetricWarning):
        partial = classification_scores(probs[:4], labels[:4], names=["accuracy", "auc"])
    assert partial["accuracy"] == pytest.approx(3 / 4) and math.isnan(partial["auc"])


def test_unknown_metric_name_is_refused():
    with pytest.raises(SettingsError, match="Unknown metric 'f1'"):
        ClassificationMetric("f1")


def _run_metrics(p1, labels, positive, batch=3):
    """The bundle's ignite metrics on an engine that outputs decollated ``{"pred", "label"}`` items in batches."""
    probs = torch.as_tensor(_probs(p1), dtype=torch.float32)
    items = [{"pred": p, "label": torch.tensor([y])} for p, y in zip(probs, labels, strict=True)]
    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    engine = Engine(lambda engine, batch: batch)
    for name, metric in classification_metrics(positive=positive, prefix="val_").items():
        metric.attach(engine, name)
    return engine.run(batches, max_epochs=1).metrics


@pytest.mark.parametrize("positive", [1, 0])
def test_ignite_metrics_of_the_evaluators_give_the_hand_values(positive):
    metrics = _run_metrics(CASE_A["p1"], CASE_A["labels"], positive)
    expected = _hand_values(CASE_A["counts"], CASE_A["auc"], positive)
    assert metrics == pytest.approx({f"val_{k}": v for k, v in expected.items()})


def test_probs_and_labels_keeps_the_item_order():
    out = [{"pred": torch.tensor([0.2, 0.8]), "label": torch.tensor([1])}, {"pred": [0.9, 0.1], "label": 0}]
    probs, labels = probs_and_labels(out)
    torch.testing.assert_close(probs, torch.tensor([[0.2, 0.8], [0.9, 0.1]]))
    assert labels.tolist() == [1, 0]


# --- the writers of the bundle's evaluators ---------------------------------------------------------------------


class _LogitOfInput(torch.nn.Module):
    """A "network" whose class-1 logit is the input's first value (class-0 logit 0): softmax gives sigmoid(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.reshape(len(x), -1)[:, :1]
        return torch.cat([torch.zeros_like(s), s], dim=1)


def _evaluator(p1, labels, out_dir, epoch_length=None, files=None, positive=1) -> SupervisedEvaluator:
    """A MONAI SupervisedEvaluator over scans whose class-1 probability is ``p1``, with the bundle's writers."""
    files = files or [f"/data/scan{i:02d}.nii.gz" for i in range(len(p1))]
    logits = np.log(np.asarray(p1) / (1 - np.asarray(p1)))
    data = [
        {"image": MetaTensor(torch.full((1, 2, 2, 2), float(v)), meta={"filename_or_obj": f}), "label": y}
        for v, y, f in zip(logits, labels, files, strict=True)
    ]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(data), batch_size=2, shuffle=False),
        epoch_length=epoch_length,
        network=_LogitOfInput(),
        postprocessing=Activationsd(keys="pred", softmax=True),
        key_val_metric=classification_metrics(["mcc"], positive=positive),
        additional_metrics=classification_metrics(["accuracy", "sensitivity", "specificity", "auc"], positive),
        val_handlers=[MetricsJSONWriter(str(out_dir)), PredictionWriter(str(out_dir), ["CN", "AD"])],
    )
    return evaluator


def _evaluate(p1, labels, out_dir, **kwargs):
    """Run :func:`_evaluator`; the written ``metrics.json`` and ``predictions.csv``."""
    _evaluator(p1, labels, out_dir, **kwargs).run()
    return json.loads((out_dir / "metrics.json").read_text()), pd.read_csv(out_dir / "predictions.csv")


def test_metrics_json_and_predictions_of_an_evaluator(tmp_path):
    report, predictions = _evaluate(CASE_A["p1"], CASE_A["labels"], tmp_path, positive=0)
    expected = _hand_values(CASE_A["counts"], CASE_A["auc"], positive=0)
    assert report["num_scans"] == 10
    assert report["metrics"] == pytest.approx({k: v for k, v in expected.items() if k != "balanced_accuracy"})
    assert predictions["prob_AD"].tolist() == pytest.approx(CASE_A["p1"], abs=1e-6)
    assert predictions["pred"].tolist() == [int(p > 0.5) for p in CASE_A["p1"]]
    assert predictions["pred_label"].tolist() == [["CN", "AD"][int(p > 0.5)] for p in CASE_A["p1"]]
    assert predictions["label"].tolist() == CASE_A["labels"]


@pytest.mark.parametrize("label", [0, 1])
def test_auc_with_one_class_is_null_in_metrics_json(tmp_path, label):
    report, _ = _evaluate([0.8, 0.3, 0.6], [label] * 3, tmp_path)
    assert "auc" in report["metrics"] and report["metrics"]["auc"] is None
    assert "null" in (tmp_path / "metrics.json").read_text() and "NaN" not in (tmp_path / "metrics.json").read_text()
    assert report["metrics"]["accuracy"] == pytest.approx(sum(p == label for p in (1, 0, 1)) / 3)


def test_num_scans_counts_the_scored_predictions_not_the_dataset(tmp_path):
    """An evaluation that sees 2 batches of 2 out of 10 scans scored 4 scans, and says so."""
    report, predictions = _evaluate(CASE_A["p1"], CASE_A["labels"], tmp_path, epoch_length=2)
    assert report["num_scans"] == 4 == len(predictions)
    # the metrics are those of the 4 scans seen: 0.9, 0.8, 0.7, 0.3, all of class 1 -> 3 of 4 right
    assert report["metrics"]["accuracy"] == pytest.approx(0.75)
    assert report["metrics"]["auc"] is None


def test_a_scan_predicted_twice_stops_the_run(tmp_path):
    files = [f"/data/scan{i}.nii.gz" for i in (0, 1, 2, 1)]
    with pytest.raises(RuntimeError, match=r"1 scan\(s\) were predicted more than once.*scan1\.nii\.gz"):
        _evaluate([0.9, 0.2, 0.7, 0.2], [1, 0, 1, 0], tmp_path, files=files)
    assert not (tmp_path / "predictions.csv").exists()


# --- the same under DDP: 2 CPU processes (gloo), uneven shards -------------------------------------------------


#: each case's shards of CASE_B's 9 scans over 2 ranks: uneven (5 + 4), and scan 0 repeated on rank 1, as a
#: DistributedSampler with even_divisible=True pads the shards (last: the run it stops ends the ranks' collectives)
DDP_CASES = {"uneven": [[0, 1, 2, 3, 4], [5, 6, 7, 8]], "repeated": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 0]]}


def _ddp_evaluation(local_rank: int, out_dir: str) -> None:
    """One rank: evaluate its shard of CASE_B with the bundle's metrics and writers, for each of DDP_CASES (one
    spawn for all of them: a spawned rank imports this module and MONAI again); report to ``out_dir/<case>``."""
    import ignite.distributed as idist

    rank = idist.get_rank()
    for case, shards in DDP_CASES.items():
        folder = Path(out_dir) / case
        folder.mkdir(parents=True, exist_ok=True)
        p1 = [CASE_B["p1"][i] for i in shards[rank]]
        labels = [CASE_B["labels"][i] for i in shards[rank]]
        files = [f"/data/scan{i:02d}.nii.gz" for i in shards[rank]]
        evaluator = _evaluator(p1, labels, folder, files=files)
        try:
            evaluator.run()
            result = {"metrics": {k: float(v) for k, v in evaluator.state.metrics.items()}}
        except RuntimeError as err:
            result = {"error": str(err)}
        (folder / f"rank{rank}.json").write_text(json.dumps(result))


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> Path:
    """The folder of each DDP case (``<case>/rank<r>.json`` and the writers' files): 2 CPU processes (gloo)."""
    import socket

    import ignite.distributed as idist

    out = tmp_path_factory.mktemp("ddp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with idist.Parallel(backend="gloo", nproc_per_node=2, master_port=port) as parallel:
        parallel.run(_ddp_evaluation, str(out))
    return out


def _ranks(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


def test_metrics_and_writers_gather_uneven_ranks(ddp):
    """9 scans over 2 ranks (5 + 4): the metrics, num_scans and predictions are those of all 9 scans."""
    folder = ddp / "uneven"
    ranks = _ranks(folder)
    expected = _hand_values(CASE_B["counts"], CASE_B["auc"], positive=1)
    scored = {k: v for k, v in expected.items() if k != "balanced_accuracy"}
    for rank in ranks:  # every rank computes the metrics of the whole split
        assert rank["metrics"] == pytest.approx(scored)
    report = json.loads((folder / "metrics.json").read_text())
    assert report["num_scans"] == 9
    predictions = pd.read_csv(folder / "predictions.csv")
    assert predictions["file"].tolist() == [f"/data/scan{i:02d}.nii.gz" for i in range(9)]
    assert predictions["prob_AD"].tolist() == pytest.approx(CASE_B["p1"], abs=1e-6)
    # in-process, the same metrics (one process: no gathering)
    single = _run_metrics(CASE_B["p1"], CASE_B["labels"], positive=1)
    assert single == pytest.approx({f"val_{k}": v for k, v in expected.items()})


def test_a_scan_predicted_on_two_ranks_stops_the_run(ddp):
    """A DistributedSampler with even_divisible=True repeats a scan to even the shards: refused, not dropped."""
    folder = ddp / "repeated"
    ranks = _ranks(folder)
    assert "scan00.nii.gz" in ranks[0]["error"] and "predicted more than once" in ranks[0]["error"]
    assert not (folder / "predictions.csv").exists()
    assert json.loads((folder / "metrics.json").read_text())["num_scans"] == 10  # what was scored
