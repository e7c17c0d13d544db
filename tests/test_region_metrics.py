"""Region tables (per scan, per cohort, streamed and merged) checked against numbers computed by hand on small grids."""

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
    RELEVANCE_COLUMNS,
    RegionTableAccumulator,
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
    with pytest.raises(ValueError, match="percentile"):
        region_metrics(volume, labels, NAMES, percentile=-0.5)
    with pytest.raises(ValueError, match="voxel_volume"):
        region_metrics(volume, labels, NAMES, voxel_volume=0.0)
    with pytest.raises(ValueError, match="not dtype complex64"):
        region_metrics(volume, labels.astype(np.complex64), NAMES)


def test_percentile_zero_keeps_every_voxel_above_the_minimum_and_full_ties_go_by_index():
    _, labels = _atlas_and_map()
    volume = np.zeros(labels.shape)
    volume[0, 0, 0] = volume[5, 0, 0] = 0.5  # one voxel in Alpha, one in Beta; the map sums to exactly 1
    table = region_metrics(volume, labels, NAMES, percentile=0.0)  # tau = min = 0: B = the two voxels
    assert table["name"].tolist() == ["Alpha", "Beta"]  # same V, same mass share: index order
    assert table["V"].tolist() == [1, 1] and table["mass_share"].tolist() == [0.5, 0.5]
    assert table["P"].tolist() == [1 / 500, 1 / 250]


def test_above_threshold_mass_of_zero_gives_nan_mass_shares():
    _, labels = _atlas_and_map()
    volume = np.full(labels.shape, -2.0)
    volume[0, 0, 0], volume[5, 0, 0] = 1.0, -1.0  # above the minimum (-2): +1 in Alpha, -1 in Beta, sum 0
    table = region_metrics(volume, labels, NAMES, percentile=0.0)
    assert table["name"].tolist() == ["Alpha", "Beta"]
    assert table["mean"].tolist() == [1.0, -1.0] and table["V"].tolist() == [1, 1]
    assert table["mass_share"].isna().all()  # a share of a zero total is undefined, not a division error


def test_empty_map_gives_empty_tables_with_numeric_columns():
    empty = np.zeros((0, 4, 4))
    table = region_metrics(empty, empty.astype(np.int16), NAMES)
    assert table.empty and list(table.columns) == REGION_COLUMNS
    relevance = region_relevance(empty, empty.astype(np.int16), NAMES)
    assert relevance.empty and list(relevance.columns) == RELEVANCE_COLUMNS
    # empty tables keep float columns: concatenated with other tables, the numbers must stay numbers
    _, labels = _atlas_and_map()
    for each in (table, relevance, region_metrics(np.zeros(labels.shape), labels, NAMES)):
        assert (each.dtypes == np.float64).all()
        assert pd.concat([each, pd.DataFrame({"V": [1.0]})])["V"].dtype == np.float64


@pytest.mark.parametrize("relabel", [{1: -5, 2: 7}, {1: 3, 2: 2**24 + 3}], ids=["negative", "beyond-2^24"])
def test_labels_outside_the_fast_path_give_the_same_tables(relabel):
    volume, small = _atlas_and_map()
    labels = np.zeros(small.shape, np.int64)
    for old, new in relabel.items():
        labels[small == old] = new
    names = {relabel[1]: "Alpha", relabel[2]: "Beta"}
    table = region_metrics(volume, labels, names, percentile=99.0)
    assert table["index"].tolist() == [relabel[1], relabel[2]] and table["name"].tolist() == ["Alpha", "Beta"]
    assert table["V"].tolist() == [3, 2] and table["P"].tolist() == [3 / 500, 2 / 250]
    assert table["mass_share"].tolist() == pytest.approx([24 / 45, 16 / 45], rel=1e-12)
    relevance = region_relevance(volume, labels, names)
    assert relevance["index"].tolist() == [relabel[1], relabel[2]] and relevance["voxels"].tolist() == [500, 250]
    assert relevance["mass"].tolist() == pytest.approx([0.6, 0.4], rel=1e-12)


def test_float_labels_read_from_nifti_give_the_same_table(tmp_path):
    volume, labels = _atlas_and_map()
    nib.save(nib.Nifti1Image(labels.astype(np.float32), np.eye(4)), tmp_path / "atlas.nii.gz")
    as_float = nib.load(tmp_path / "atlas.nii.gz").get_fdata()  # float64 holding whole numbers
    assert as_float.dtype == np.float64
    pd.testing.assert_frame_equal(
        region_metrics(volume, as_float, NAMES, percentile=99.0), region_metrics(volume, labels, NAMES, percentile=99.0)
    )


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


def test_region_relevance_ties_go_by_mean_then_index():
    _, labels = _atlas_and_map()
    volume = np.zeros(labels.shape)
    volume[0, 0, :] = 1.0  # 10 in Alpha (500 voxels)
    volume[5, 0, :] = 1.0  # 10 in Beta (250 voxels): the same mass, twice the mean
    table = region_relevance(volume, labels, NAMES)
    assert list(table.columns) == RELEVANCE_COLUMNS
    assert table["index"].tolist() == [2, 1] and table["index"].dtype.kind == "i"
    assert table["mass"].tolist() == [0.5, 0.5] and table["mean"].tolist() == [10 / 250, 10 / 500]
    labels[5:, :5, 5:] = 3  # Beta's half with z >= 5 becomes Gamma: 125 voxels each
    volume[:] = 0.0
    volume[5, 0, 0] = volume[5, 0, 9] = 5.0  # one voxel in Beta, one in Gamma: a full tie
    table = region_relevance(volume, labels, NAMES)
    assert table["name"].tolist() == ["Beta", "Gamma", "Alpha"]
    assert table["mass"].tolist() == [0.5, 0.5, 0.0] and table["voxels"].tolist() == [125, 125, 500]


def test_rank_of():
    volume, labels = _atlas_and_map()
    table = region_metrics(volume, labels, NAMES, percentile=99.0)
    assert rank_of(table, ["Beta", "Alpha", "Gamma"]) == [2, 1, MISSING_RANK]
    assert rank_of(table, "Alpha") == [1]
    empty = region_metrics(np.zeros(labels.shape), labels, NAMES)
    assert rank_of(empty, ["Alpha"]) == [MISSING_RANK] and MISSING_RANK > 10_000  # never looks top-ranked
    assert rank_of(table, ["Alpha"], missing=99) == [1] and rank_of(empty, ["Alpha"], missing=99) == [99]
    assert rank_of(pd.DataFrame(), ["Alpha", "Beta"]) == [MISSING_RANK, MISSING_RANK]  # a table with no columns


def _streamed(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    accumulator = RegionTableAccumulator()
    for scan, table in tables.items():
        accumulator.add(table, scan)
    return accumulator.table()


def _merged(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Even-numbered scans in one accumulator, odd-numbered ones in another, then merged (as DDP ranks are)."""
    parts = [RegionTableAccumulator(), RegionTableAccumulator()]
    for i, (scan, table) in enumerate(tables.items()):
        parts[i % 2].add(table, scan)
    parts[0].merge(parts[1])
    return parts[0].table()


#: the three ways to get a cohort table; each must give the hand-computed numbers
AGGREGATORS = {"cohort_region_table": cohort_region_table, "streamed": _streamed, "merged": _merged}
aggregators = pytest.mark.parametrize("aggregate", list(AGGREGATORS.values()), ids=list(AGGREGATORS))


@aggregators
def test_cohort_region_table_averages_over_all_scans(tmp_path, aggregate):
    volume, labels = _atlas_and_map()
    first = region_metrics(volume, labels, NAMES, percentile=99.0)  # Alpha V=3, Beta V=2
    second = pd.DataFrame(
        [{"index": 2, "name": "Beta", "V": 4, "mean": 1.0, "std": 0.0, "max": 1.0, "min": 1.0, "P": 0.016,
          "mass_share": 1.0}]
    )  # fmt: skip
    first.to_csv(tmp_path / "a.csv", index=False)  # tables read back from CSV work too
    empty = region_metrics(np.zeros(labels.shape), labels, NAMES)
    table = aggregate({"a": pd.read_csv(tmp_path / "a.csv"), "b": second, "c": empty})
    assert list(table.columns) == COHORT_COLUMNS
    assert table["name"].tolist() == ["Beta", "Alpha"]
    beta, alpha = table.iloc[0], table.iloc[1]
    assert beta["V"] == pytest.approx(2.0) and alpha["V"] == pytest.approx(1.0)
    assert (beta["n_scans"], alpha["n_scans"]) == (2, 1)
    assert beta["scan_fraction"] == pytest.approx(2 / 3) and alpha["scan_fraction"] == pytest.approx(1 / 3)
    assert beta["P"] == pytest.approx((2 / 250 + 0.016) / 3)
    assert beta["mass_share"] == pytest.approx((16 / 45 + 1.0) / 3)
    assert alpha["mass_share"] == pytest.approx((24 / 45) / 3)
    nothing = aggregate({"c": empty})
    assert nothing.empty and list(nothing.columns) == COHORT_COLUMNS
    with_mm3 = aggregate({"a": region_metrics(volume, labels, NAMES, 99.0, voxel_volume=2.0)})
    assert with_mm3["volume_mm3"].tolist() == [6.0, 4.0]
    with pytest.raises(ValueError, match="lacks the columns"):
        aggregate({"x": second.drop(columns=["P"])})


def _scan_table(rows: list[tuple[int, int, float, float]], names: dict[int, str]) -> pd.DataFrame:
    """A per-scan region table as read back from CSV, from rows of (index, V, P, mass_share)."""
    return pd.DataFrame([{"index": i, "name": names[i], "V": v, "P": p, "mass_share": s} for i, v, p, s in rows])


@aggregators
def test_cohort_ties_go_by_mass_share_then_scans_then_index(aggregate):
    names = {1: "Alpha", 2: "Beta", 3: "Gamma", 4: "Delta", 5: "Epsilon", 6: "Zeta"}
    _, labels = _atlas_and_map()
    tables = {
        "none": region_metrics(np.zeros(labels.shape), labels, NAMES),  # an empty scan first
        "s1": _scan_table([(1, 4, 0.5, 0.25), (3, 1, 0.5, 0.125)], names),
        "s2": _scan_table([(2, 4, 0.25, 0.5), (3, 1, 0.25, 0.125), (4, 2, 0.5, 0.25)], names),
        "s3": _scan_table([(5, 1, 0.125, 0.0625), (6, 1, 0.125, 0.0625)], names),
    }
    table = aggregate(tables)
    assert list(table.columns) == COHORT_COLUMNS
    # means over 4 scans: Alpha and Beta tie on V = 1 (Beta has the larger mass share); Gamma and Delta tie on
    # V = 0.5 and mass share 1/16 (Gamma is in 2 scans); Epsilon and Zeta tie on everything (index order)
    assert table["name"].tolist() == ["Beta", "Alpha", "Gamma", "Delta", "Epsilon", "Zeta"]
    assert table["index"].tolist() == [2, 1, 3, 4, 5, 6]
    assert table["V"].tolist() == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert table["mass_share"].tolist() == [0.125, 0.0625, 0.0625, 0.0625, 0.015625, 0.015625]
    assert table["P"].tolist() == [0.0625, 0.125, 0.1875, 0.125, 0.03125, 0.03125]
    assert table["n_scans"].tolist() == [1, 1, 2, 1, 1, 1]
    assert table["scan_fraction"].tolist() == [0.25, 0.25, 0.5, 0.25, 0.25, 0.25]


@aggregators
def test_cohort_counts_an_undefined_mass_share_as_zero(aggregate):
    volume, labels = _atlas_and_map()
    signed = np.full(labels.shape, -2.0)
    signed[0, 0, 0], signed[5, 0, 0] = 1.0, -1.0  # above-threshold mass 0: both shares NaN, V = 1 each
    tables = {
        "signed": region_metrics(signed, labels, NAMES, percentile=0.0),
        "plain": region_metrics(volume, labels, NAMES, percentile=99.0),  # V 3 and 2, shares 24/45 and 16/45
    }
    table = aggregate(tables)
    assert table["name"].tolist() == ["Alpha", "Beta"]
    assert table["V"].tolist() == [2.0, 1.5]
    assert table["mass_share"].tolist() == pytest.approx([12 / 45, 8 / 45], rel=1e-12)
    assert table["n_scans"].tolist() == [2, 2]


@aggregators
def test_cohort_volume_mm3_only_when_every_non_empty_table_has_it(aggregate):
    volume, labels = _atlas_and_map()
    with_mm3 = region_metrics(volume, labels, NAMES, 99.0, voxel_volume=2.0)  # 6 and 4 mm^3
    without = region_metrics(volume, labels, NAMES, 99.0)
    empty_mm3 = region_metrics(np.zeros(labels.shape), labels, NAMES, voxel_volume=2.0)
    table = aggregate({"a": with_mm3, "b": empty_mm3})  # the empty scan counts, its columns do not matter
    assert list(table.columns) == COHORT_COLUMNS + ["volume_mm3"]
    assert table["volume_mm3"].tolist() == [3.0, 2.0]
    for mixed in ({"a": without, "b": with_mm3}, {"a": with_mm3, "b": without}):
        table = aggregate(mixed)
        assert list(table.columns) == COHORT_COLUMNS and table["V"].tolist() == [3.0, 2.0]
    nothing = aggregate({"x": empty_mm3, "y": empty_mm3})
    assert nothing.empty and list(nothing.columns) == COHORT_COLUMNS
    assert (nothing.dtypes == np.float64).all()


@aggregators
def test_cohort_counts_a_scan_once_even_if_its_table_repeats_a_region(aggregate):
    names = {1: "Alpha"}
    tables = {"a": _scan_table([(1, 1, 0.25, 0.25)] * 2, names), "b": _scan_table([(1, 2, 0.5, 0.5)], names)}
    table = aggregate(tables)
    assert table["n_scans"].tolist() == [2] and table["scan_fraction"].tolist() == [1.0]
    assert table["V"].tolist() == [2.0] and table["mass_share"].tolist() == [0.5]
