"""Nothing connects to the network at run time: training, inference, explanation and ``axial-monai predict`` all run
with every socket connection and name lookup of the test process blocked (the ``no_network`` fixture), and no
connection is even attempted.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest
from bundle_utils import TINY, run, workflow
from test_predict import moved_head

from axial_monai import cli


def test_the_guard_blocks_connections(no_network):
    """The guard is real: a connection attempt fails and is recorded (so an empty record means none was tried)."""
    with pytest.raises(OSError, match="network access blocked"):
        socket.create_connection(("example.org", 443), timeout=1)
    with pytest.raises(OSError, match="network access blocked"):
        socket.socket().connect(("127.0.0.1", 9))
    assert len(no_network) == 2


def test_train_infer_explain_and_predict_offline(no_network, tiny_cohort, tmp_path, capsys):
    out = tmp_path / "run"
    run(workflow(["train"], dataset_dir=tiny_cohort, output_dir=str(out), epochs=1, **TINY))
    assert (out / "models" / "model.pt").is_file() and (out / "eval-test" / "metrics.json").is_file()

    atlas = {
        "atlas": str(Path(tiny_cohort) / "atlas.nii.gz"),
        "atlas_labels": str(Path(tiny_cohort) / "atlas_labels.csv"),
    }
    run(workflow(["inference", "explain"], "infer", output_dir=str(out), **atlas, **TINY))
    test_scans = json.loads((Path(tiny_cohort) / "datalist.json").read_text())["test"]
    predictions = pd.read_csv(out / "inference" / "predictions.csv")
    assert len(predictions) == len(test_scans)
    explained = [p for p in (out / "explain").iterdir() if p.name != "cohort"]
    assert len(explained) == len(test_scans) and all(any(p.glob("*.nii.gz")) for p in explained)

    # predict: a raw head (registration with ANTs, affine at 2 mm for speed) and a scan already on the model's grid
    scans = tmp_path / "scans"
    scans.mkdir()
    head = moved_head(scans / "head.nii.gz")
    demo_scan = Path(tiny_cohort) / "images" / "sub-0001_T1w.nii.gz"
    argv = ["predict", str(head), str(demo_scan), "--model", str(out), "--out", str(tmp_path / "predict")]
    argv += ["--transform", "Affine", "--resolution", "2", "--cache_dir", str(tmp_path / "cache")]
    assert cli.main(argv) == 0, capsys.readouterr().err
    for name in ("head", "sub-0001_T1w"):
        assert json.loads((tmp_path / "predict" / name / "prediction.json").read_text())["prediction"] in ("CN", "AD")

    assert no_network == []  # not one connection or name lookup was attempted
