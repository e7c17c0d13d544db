"""Explanations of each cross-validation fold and their stability across folds (axial_monai.crossval.stability)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from test_crossval import TINY, write_tree

from axial_monai.crossval import run_cross_validation
from axial_monai.crossval.stability import STABILITY_FILE, explain_config_files, explanation_stability
from axial_monai.data.clinica import clinica_task_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _octant_atlas(folder: Path) -> tuple[str, str]:
    """Eight labelled octants on the 20 x 24 x 20, 4 mm grid of the test scans, and their labels CSV."""
    grid = np.indices((20, 24, 20))
    labels = 1 + (grid[0] >= 10) + 2 * (grid[1] >= 12) + 4 * (grid[2] >= 10)
    nib.save(nib.Nifti1Image(labels.astype(np.int16), np.diag([4.0, 4.0, 4.0, 1.0])), folder / "atlas.nii.gz")
    (folder / "atlas.csv").write_text("index,name\n" + "".join(f"{i},octant_{i}\n" for i in range(1, 9)))
    return str(folder / "atlas.nii.gz"), str(folder / "atlas.csv")


def test_each_fold_explains_its_test_scans_and_the_rankings_are_compared(tmp_path, monkeypatch):
    table = clinica_task_table(write_tree(tmp_path / "bids"), "ADvsCN")
    atlas, labels = _octant_atlas(tmp_path)
    explain = {"methods": ["attention", "smoothgrad"], "smoothgrad_samples": 2, "atlas": atlas,
               "atlas_labels": labels, "plots": False}  # fmt: skip
    out = tmp_path / "cv"
    run_cross_validation(table, out, k=3, seed=0, overrides=TINY, progress=False, explain=explain)
    for fold in range(3):
        test_scans = json.loads((out / f"fold-{fold}" / "datalist.json").read_text())["test"]
        rows = pd.read_csv(out / f"fold-{fold}" / "explain" / "cohort" / "explanations.csv")
        assert sorted(rows["scan"]) == sorted(f"{i['subject']}/{i['session']}" for i in test_scans)  # unique ids
        relevance = pd.read_csv(out / f"fold-{fold}" / "explain" / "cohort" / "relevance_smoothgrad_all.csv")
        assert set(relevance["name"]) <= {f"octant_{i}" for i in range(1, 9)}
    stability = pd.read_csv(out / STABILITY_FILE)
    assert set(stability["map"]) == {"attention", "smoothgrad"}
    pairs = stability[stability["fold_a"] != "mean"]
    assert len(pairs) == 2 * 3
    assert pairs["spearman"].between(-1, 1).all() and (pairs["n_regions"] > 2).all()
    means = stability[stability["fold_a"] == "mean"].set_index("map")["spearman"]
    for name in ("attention", "smoothgrad"):
        assert means[name] == pytest.approx(pairs[pairs["map"] == name]["spearman"].mean())

    # a rerun trains nothing and explains nothing again
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}

    def fail(*args, **kwargs):
        raise AssertionError("a finished fold was run again")

    monkeypatch.setattr("axial_monai.crossval.runner.run_fold", fail)
    monkeypatch.setattr("monai.bundle.ConfigWorkflow.run", fail)
    run_cross_validation(table, out, k=3, seed=0, overrides=TINY, progress=False, explain=explain)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before


def test_stability_is_the_spearman_of_region_masses(tmp_path):
    masses = {0: [0.5, 0.3, 0.2, 0.0], 1: [0.4, 0.35, 0.25, 0.0], 2: [0.1, 0.2, 0.7, 0.0]}
    for fold, values in masses.items():
        cohort = tmp_path / f"fold-{fold}" / "explain" / "cohort"
        cohort.mkdir(parents=True)
        frame = pd.DataFrame({"index": [1, 2, 3, 4], "name": ["a", "b", "c", "d"], "mass": values})
        frame.to_csv(cohort / "relevance_smoothgrad_all.csv", index=False)
    table = explanation_stability(tmp_path, [0, 1, 2]).set_index(["fold_a", "fold_b"])
    # region d has no relevance in any fold: left out, 3 regions remain
    assert table.loc[(0, 1), "spearman"] == pytest.approx(1.0) and table.loc[(0, 1), "n_regions"] == 3
    assert table.loc[(0, 2), "spearman"] == pytest.approx(-1.0)
    assert table.loc[("mean", "mean"), "spearman"] == pytest.approx((1 - 1 - 1) / 3)
    assert (tmp_path / STABILITY_FILE).is_file()


def test_explain_configs_follow_the_training_overrides():
    configs = explain_config_files(["/b/configs/train.json", "/b/configs/triplanar.json"])
    assert [Path(c).name for c in configs] == ["inference.json", "triplanar.json", "explain.json"]
