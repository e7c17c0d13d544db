"""Region tables checked against numbers computed by hand on a 10 x 10 x 10 grid with two regions."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from axial_monai.explain import (
    COHORT_COLUMNS,
    MISSING_RANK,
    REGION_COLUMNS,
    cohort_region_table,
    rank_of,
    region_metrics,
    region_relevance,
)

NAMES = {1: "Alpha", 2: "Beta", 3: "Gamma"}  # Gamma has no voxel on the grid


def _atlas_and_map():
    """Region 1 = x < 5 (500 voxels), region 2 = x >= 5 and y < 5 (250), background elsewhere (250).

    The map is 0 except six voxels: 10, 8, 6 in region 1, 9, 7 in region 2 and 5 in the background.
    """
    labels = np.zeros((10, 10, 10), np.int16)
    labels[:5] = 1
    labels[5:, :5] = 2
    volume = np.zeros((10, 10, 10), np.float32)
    volume[0, 0, 0], volume[1, 2, 3], volume[4, 9, 9] = 10, 8, 6
    volume[5, 0, 0], volume[9, 4, 9] = 9, 7
    volume[7, 7, 7] = 5
    return volume, labels


def test_region_metrics_match_hand_computed_values():
    volume, labels = _atlas_and_map()
    # 994 zeros: the 99th percentile is 0, so B = the six non-zero voxels (total mass 45)
    table = region_metrics(volume, labels, NAMES, percentile=99.0, voxel_volume=8.0)
    assert list(table.columns) == REGION_COLUMNS + ["volume_mm3"]
    assert table["name"].tolist() == ["Alpha", "Beta"]
    alpha, beta = table.iloc[0], table.iloc[1]
    assert (alpha["index"], alpha["V"], beta["index"], beta["V"]) == (1, 3, 2, 2)
    assert alpha["mean"] == 8.0 and alpha["max"] == 10.0 and alpha["min"] == 6.0
    assert alpha["std"] == pytest.approx(math.sqrt(8 / 3), rel=1e-12)
    assert alpha["P"] == 3 / 500 and alpha["mass_share"] == pytest.approx(24 / 45, rel=1e-12)
    assert beta["mean"] == 8.0 and beta["std"] == 1.0 and beta["max"] == 9.0 and beta["min"] == 7.0
    assert beta["P"] == 2 / 250 and beta["mass_share"] == pytest.approx(16 / 45, rel=1e-12)
    assert table["volume_mm3"].tolist() == [24.0, 16.0]


def test_threshold_percentile_decides_which_voxels_count():
    volume, labels = _atlas_and_map()
    # sorted values: 994 zeros, then 5, 6, 7, 8, 9, 10 -> 99.5th percentile = 5.005: the background 5 drops out
    table = region_metrics(volume, labels, NAMES, percentile=99.5)
    assert "volume_mm3" not in table.columns
    assert table["V"].tolist() == [3, 2]
    assert table["mass_share"].tolist() == pytest.approx([24 / 40, 16 / 40], rel=1e-12)
    # 99.8th percentile = 8.002: one voxel per region (10 and 9); equal V is ordered by mass share
    table = region_metrics(volume, labels, NAMES, percentile=99.8)
    assert table["name"].tolist() == ["Alpha", "Beta"] and table["V"].tolist() == [1, 1]
    assert table["mass_share"].tolist() == pytest.approx([10 / 19, 9 / 19], rel=1e-12)
    assert table["std"].tolist() == [0.0, 0.0]
    # default (99.9): 9.001 -> only the 10
    table = region_metrics(volume, labels, NAMES)
    assert table["name"].tolist() == ["Alpha"] and table.loc[0, "mass_share"] == 1.0
    # the larger region wins once it has more voxels above the threshold
    volume[6:9, 0, 0] = 9.5
    assert region_metrics(volume, labels, NAMES, percentile=99.0)["name"].tolist() == ["Beta", "Alpha"]


@pytest.mark.parametrize("value", [0.0, 3.5])
def test_constant_map_or_nothing_above_threshold_gives_an_empty_table(value):
    _, labels = _atlas_and_map()
    table = region_metrics(np.full(labels.shape, value), labels, NAMES)
    assert table.empty and list(table.columns) == REGION_COLUMNS
    assert region_metrics(_atlas_and_map()[0], labels, NAMES, percentile=100).empty
    assert list(region_metrics(np.zeros(labels.shape), labels, NAMES, voxel_volume=1.0).columns)[-1] == "volume_mm3"


def test_bad_inputs_are_rejected():
    volume, labels = _atlas_and_map()
    with pytest.raises(ValueError, match="same shape"):
        region_metrics(volume[:9], labels, NAMES)
    with pytest.raises(ValueError, match="percentile"):
        region_metrics(volume, labels, NAMES, percentile=101)
    with pytest.raises(ValueError, match="integer"):
        region_metrics(volume, labels + 0.5, NAMES)
    with pytest.raises(ValueError, match="NaN"):
        region_metrics(np.where(volume > 9, np.nan, volume), labels, NAMES)


def test_unnamed_labels_and_atlas_read_from_nifti(tmp_path):
    volume, labels = _atlas_and_map()
    labels[9, 9, 9], volume[9, 9, 9] = 7, 20.0
    nib.save(nib.Nifti1Image(labels, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "atlas.nii.gz")
    on_disk = np.asarray(nib.load(tmp_path / "atlas.nii.gz").dataobj)
    table = region_metrics(volume, on_disk, NAMES, percentile=99.0)
    assert table["name"].tolist() == ["Alpha", "Beta", "label 7"]
    assert table.iloc[2]["P"] == 1.0


def test_region_relevance_ranks_by_relevance_mass():
    volume, labels = _atlas_and_map()
    table = region_relevance(volume, labels, NAMES)
    assert table["name"].tolist() == ["Alpha", "Beta"]  # Gamma is not on the grid
    assert table["voxels"].tolist() == [500, 250]
    # brain = labelled voxels: the background 5 does not count; mass 24 and 16 of 40
    assert table["mass"].tolist() == pytest.approx([0.6, 0.4], rel=1e-12)
    assert table["mean"].tolist() == pytest.approx([24 / 500, 16 / 250], rel=1e-12)
    assert table["max"].tolist() == [10.0, 9.0]
    # Beta has the higher mean; give it more mass and it ranks first
    volume[5:, 5, 5] = 20.0  # background row: changes nothing
    volume[5:, 0, 1] = 2.0  # +10 in Beta -> 26 vs 24
    assert region_relevance(volume, labels, NAMES)["name"].tolist() == ["Beta", "Alpha"]
    zero = region_relevance(np.zeros(labels.shape), labels, NAMES)
    assert zero["mass"].tolist() == [0.0, 0.0]
    assert region_relevance(volume, np.zeros_like(labels), NAMES).empty


def test_rank_of():
    volume, labels = _atlas_and_map()
    table = region_metrics(volume, labels, NAMES, percentile=99.0)
    assert rank_of(table, ["Beta", "Alpha", "Gamma"]) == [2, 1, MISSING_RANK]
    assert rank_of(table, "Alpha") == [1]
    empty = region_metrics(np.zeros(labels.shape), labels, NAMES)
    assert rank_of(empty, ["Alpha"]) == [MISSING_RANK] and MISSING_RANK > 10_000  # never looks top-ranked
    assert rank_of(table, ["Alpha"], missing=99) == [1] and rank_of(empty, ["Alpha"], missing=99) == [99]


def test_cohort_region_table_averages_over_all_scans(tmp_path):
    volume, labels = _atlas_and_map()
    first = region_metrics(volume, labels, NAMES, percentile=99.0)  # Alpha V=3, Beta V=2
    second = pd.DataFrame(
        [{"index": 2, "name": "Beta", "V": 4, "mean": 1.0, "std": 0.0, "max": 1.0, "min": 1.0, "P": 0.016,
          "mass_share": 1.0}]
    )  # fmt: skip
    first.to_csv(tmp_path / "a.csv", index=False)  # tables read back from CSV work too
    empty = region_metrics(np.zeros(labels.shape), labels, NAMES)
    table = cohort_region_table({"a": pd.read_csv(tmp_path / "a.csv"), "b": second, "c": empty})
    assert list(table.columns) == COHORT_COLUMNS
    assert table["name"].tolist() == ["Beta", "Alpha"]
    beta, alpha = table.iloc[0], table.iloc[1]
    assert beta["V"] == pytest.approx(2.0) and alpha["V"] == pytest.approx(1.0)
    assert (beta["n_scans"], alpha["n_scans"]) == (2, 1)
    assert beta["scan_fraction"] == pytest.approx(2 / 3) and alpha["scan_fraction"] == pytest.approx(1 / 3)
    assert beta["P"] == pytest.approx((2 / 250 + 0.016) / 3)
    assert beta["mass_share"] == pytest.approx((16 / 45 + 1.0) / 3)
    assert alpha["mass_share"] == pytest.approx((24 / 45) / 3)
    nothing = cohort_region_table({"c": empty})
    assert nothing.empty and list(nothing.columns) == COHORT_COLUMNS
    with_mm3 = cohort_region_table({"a": region_metrics(volume, labels, NAMES, 99.0, voxel_volume=2.0)})
    assert with_mm3["volume_mm3"].tolist() == [6.0, 4.0]
    with pytest.raises(ValueError, match="lacks the columns"):
        cohort_region_table({"x": second.drop(columns=["P"])})
