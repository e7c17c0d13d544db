"""The handler's bookkeeping: streaming cohort state (memory does not grow with scans), DDP gathering, writers."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import ignite.distributed as idist
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from test_explain_attribution import AFFINE, SHAPE, BlockNet, _volume

import axial_monai
from axial_monai.explain import (
    CohortAccumulator,
    ExplainSettings,
    RegionTableAccumulator,
    cohort_region_table,
    explain_scan,
    region_metrics,
)
from axial_monai.handlers import InterpretabilityHandler

PACKAGE = Path(axial_monai.__file__).resolve().parent

SETTINGS = {"methods": ["attention", "gradient", "smoothgrad"], "smoothgrad_samples": 2}


def _image(index: int) -> MetaTensor:
    return MetaTensor(
        _volume(index)[0], affine=torch.as_tensor(AFFINE), meta={"filename_or_obj": f"/d/s{index:02d}.nii"}
    )


def _labels() -> tuple[np.ndarray, dict[int, str]]:
    grid = np.indices(SHAPE)
    return (1 + (grid[0] >= 8) + 2 * (grid[2] >= 8)).astype(np.int64), {i: f"part_{i}" for i in range(1, 5)}


def _engine(handler: InterpretabilityHandler, batches: list[list[dict]]) -> Engine:
    """An ignite engine whose batches are lists of per-sample dicts, as a SupervisedEvaluator decollates them."""
    engine = Engine(lambda e, batch: None)
    handler.attach(engine)
    engine.run(batches, max_epochs=1)
    return engine


def test_region_accumulator_equals_the_table_of_all_scans():
    labels, names = _labels()
    rng = np.random.default_rng(0)
    tables = {f"s{i}": region_metrics(rng.random(SHAPE) ** 4, labels, names, 95.0, 8.0) for i in range(5)}
    tables["empty"] = region_metrics(np.zeros(SHAPE), labels, names, 95.0, 8.0)
    streamed = RegionTableAccumulator()
    for scan, table in tables.items():
        streamed.add(table, scan)
    pd.testing.assert_frame_equal(streamed.table(), cohort_region_table(tables), check_dtype=False)
    half = RegionTableAccumulator()
    rest = RegionTableAccumulator()
    for i, (scan, table) in enumerate(tables.items()):
        (half if i % 2 else rest).add(table, scan)
    half.merge(rest)
    pd.testing.assert_frame_equal(half.table(), cohort_region_table(tables), check_dtype=False)


def _state_bytes(cohort: CohortAccumulator) -> int:
    arrays = [*cohort.map_sums.values(), cohort.anatomy_sum]
    arrays += [v for profiles in cohort.profile_sums.values() for v in profiles.values()]
    return sum(a.nbytes for a in arrays)


def test_cohort_memory_does_not_grow_with_the_number_of_scans(tmp_path):
    net = BlockNet().eval()
    settings = ExplainSettings(**SETTINGS)
    sizes, held = {}, {}
    for n in (2, 8):
        handler = InterpretabilityHandler(
            str(tmp_path / f"n{n}"), net, ["CN", "AD"], settings=settings, atlas=None, plots=False
        )
        # what the package's own code still holds afterwards (pytest keeps captured log records and warnings,
        # which would grow with the scans and are not ours)
        tracemalloc.start()
        _engine(handler, [[{"image": _image(i), "label": torch.tensor(i % 2)}] for i in range(n)])
        ours = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, f"{PACKAGE}/*")])
        tracemalloc.stop()
        held[n] = sum(stat.size for stat in ours.statistics("filename"))
        sizes[n] = _state_bytes(handler.cohort)
        assert len(handler.cohort) == n and handler.settings == settings
    assert sizes[2] == sizes[8]  # the same sums, whatever the number of scans
    one_map = np.zeros(SHAPE, np.float32).nbytes
    assert held[8] - held[2] < one_map  # no per-scan volume is kept


def test_cohort_mean_is_the_mean_of_the_written_maps(tmp_path):
    net = BlockNet().eval()
    handler = InterpretabilityHandler(
        str(tmp_path), net, ["CN", "AD"], settings=ExplainSettings(**SETTINGS), atlas=None, plots=False
    )
    _engine(handler, [[{"image": _image(i), "label": torch.tensor(1)}, {"image": _image(i + 10)}] for i in range(3)])
    cohort = tmp_path / "cohort"
    rows = pd.read_csv(cohort / "explanations.csv")
    assert len(rows) == 6 and rows["label"].isna().sum() == 3
    maps = [nib.load(tmp_path / s / "gradient.nii.gz").get_fdata() for s in rows["scan"]]
    mean = np.mean(maps, axis=0)
    written = nib.load(cohort / "gradient_all.nii.gz")
    np.testing.assert_allclose(written.get_fdata(), (mean - mean.min()) / (mean.max() - mean.min()), atol=1e-6)
    np.testing.assert_array_equal(written.affine, AFFINE)
    assert not (cohort / "attention_gradient_all.nii.gz").exists()
    assert (cohort / "attention_all.nii.gz").is_file() and (cohort / "smoothgrad_pred-AD.nii.gz").is_file()


def test_unnamed_images_get_distinct_folders(tmp_path):
    handler = InterpretabilityHandler(
        str(tmp_path), BlockNet(), ["CN", "AD"], settings=ExplainSettings(**SETTINGS), atlas=None, plots=False
    )
    plain = [{"image": MetaTensor(_volume(i)[0], affine=torch.as_tensor(AFFINE))} for i in range(2)]
    _engine(handler, [plain])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort", "scan0000", "scan0001"]


def _ddp_worker(local_rank: int, out: str) -> None:
    """One rank: explains its own scans (rank r gets scans r, r + 2, ...), then the cohort is gathered."""
    rank, world = idist.get_rank(), idist.get_world_size()
    torch.set_num_threads(1)
    handler = InterpretabilityHandler(
        out, BlockNet().eval(), ["CN", "AD"], settings=ExplainSettings(**SETTINGS), atlas=None, plots=False
    )
    scans = [{"image": _image(i), "label": torch.tensor(i % 2)} for i in range(rank, 5, world)]
    _engine(handler, [[s] for s in scans])


def test_cohort_outputs_include_every_rank_under_ddp(tmp_path):
    out = tmp_path / "ddp"
    with idist.Parallel(backend="gloo", nproc_per_node=2, master_port=29517) as parallel:
        parallel.run(_ddp_worker, str(out))
    rows = pd.read_csv(out / "cohort" / "explanations.csv")
    assert sorted(rows["scan"]) == [f"s{i:02d}" for i in range(5)]  # 3 scans from rank 0, 2 from rank 1
    maps = [nib.load(out / f"s{i:02d}" / "smoothgrad.nii.gz").get_fdata() for i in range(5)]
    mean = np.mean(maps, axis=0)
    written = nib.load(out / "cohort" / "smoothgrad_all.nii.gz").get_fdata()
    np.testing.assert_allclose(written, (mean - mean.min()) / (mean.max() - mean.min()), atol=1e-5)
    right = rows["label"] == rows["pred"]
    for group, scans in (("correct", right.sum()), ("incorrect", (~right).sum())):  # a map for each group with scans
        assert (out / "cohort" / f"smoothgrad_{group}.nii.gz").is_file() == (scans > 0), (group, scans)


def test_single_scan_result_round_trips_through_the_writer(tmp_path):
    labels, names = _labels()
    atlas = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(labels.astype(np.int16), AFFINE), str(atlas))
    (tmp_path / "labels.csv").write_text("index,name\n" + "".join(f"{i},{n}\n" for i, n in names.items()))
    result = explain_scan(BlockNet(), _image(3), ExplainSettings(**SETTINGS), label=0)
    from axial_monai.explain import ExplanationWriter

    writer = ExplanationWriter(
        tmp_path / "out", ["CN", "AD"], atlas=str(atlas), atlas_labels=str(tmp_path / "labels.csv")
    )
    tables = writer.write_scan(result)
    scan = tmp_path / "out" / "s03"
    assert set(tables) == set(SETTINGS["methods"])
    for name in SETTINGS["methods"]:
        pd.testing.assert_frame_equal(pd.read_csv(scan / f"regions_{name}.csv"), tables[name], check_dtype=False)
    assert (scan / "attention.png").is_file() and (scan / "gradient.png").is_file()
    attention = pd.read_csv(scan / "attention.csv")
    assert attention["slice"].tolist() == list(range(3, 9)) and attention["attention"].sum() == pytest.approx(1)
    assert Path(scan / "explanation.json").read_text().count('"label": 0') == 1
