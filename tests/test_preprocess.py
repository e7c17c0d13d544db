"""Preprocessing of a tiny Clinica BIDS tree end to end at 4 mm: outputs, QC, resume, failures, shards, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids_fixture import CORRUPT, FAST, BidsTree, bids_tree, synthetic_t1w, tree_hashes  # noqa: F401  (pytest fixture)

from axial_monai import cli
from axial_monai.derivatives import QC_COLUMNS
from axial_monai.preprocess import (
    Scan,
    derivative_path,
    find_t1w_scans,
    parse_shard,
    pipeline_dir,
    preprocess_bids,
    read_t1w,
    select_shard,
)
from axial_monai.preprocess.templates import TEMPLATES, load_template, template_file

SPACE = "MNI152NLin2009cAsym"

pytestmark = pytest.mark.slow  # the fixture tree (16 scans) preprocessed, in a pool and in-process


@dataclass
class FirstRun:
    tree: BidsTree
    out: Path
    summaries: list
    hashes_before: dict[str, str]
    hashes_after: dict[str, str]

    @property
    def deriv(self) -> Path:
        return pipeline_dir(self.out)


@pytest.fixture(scope="module")
def first_run(bids_tree, tmp_path_factory) -> FirstRun:  # noqa: F811
    """Process the fixture tree as two shards: "1/2" with a pool of 2 processes, "2/2" in-process."""
    out = tmp_path_factory.mktemp("out")
    before = tree_hashes(bids_tree.root)
    summaries = [
        preprocess_bids(bids_tree.root, out, shard="1/2", n_proc=2, **FAST),
        preprocess_bids(bids_tree.root, out, shard="2/2", n_proc=1, **FAST),
    ]
    return FirstRun(bids_tree, out, summaries, before, tree_hashes(bids_tree.root))


def _qc(deriv: Path) -> pd.DataFrame:
    return pd.read_csv(deriv / "qc.tsv", sep="\t")


def _mtimes(deriv: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(deriv.rglob("*_desc-preproc_T1w.nii.gz"))}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)  # copy2 keeps the mtimes
    return dst


def test_shards_partition_the_sorted_scans():
    scans = [Scan(f"sub-{i:02d}", "ses-M000", f"/x/sub-{i:02d}_ses-M000_T1w.nii.gz") for i in range(11)]
    for count in (1, 2, 3, 5, 11, 13):
        parts = [select_shard(scans[::-1], f"{index}/{count}") for index in range(1, count + 1)]
        flat = [scan for part in parts for scan in part]
        assert sorted(flat) == scans and len(set(flat)) == len(scans)
    assert parse_shard(None) == (1, 1) and parse_shard(" 3 / 8 ") == (3, 8)
    for bad in ("0/2", "3/2", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_first_run_shards_cover_every_scan_once(first_run):
    scans = find_t1w_scans(first_run.tree.root)
    assert len(scans) == 17
    assert [s.total for s in first_run.summaries] == [len(select_shard(scans, "1/2")), len(select_shard(scans, "2/2"))]
    assert sum(s.succeeded for s in first_run.summaries) == 16
    assert sum(s.failed for s in first_run.summaries) == 1
    assert all(s.skipped == 0 for s in first_run.summaries)
    qc = _qc(first_run.deriv)
    assert sorted(qc.input_path) == sorted(scan.path for scan in scans)  # every scan exactly once


def test_outputs_land_in_derivatives_with_qc(first_run):
    deriv = first_run.deriv
    description = json.loads((deriv / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "axial-monai"
    qc = _qc(deriv)
    assert tuple(qc.columns) == QC_COLUMNS
    template = load_template(SPACE, resolution=4)
    mask = template.brain_mask.numpy() > 0
    ok = qc[qc.status == "ok"]
    assert len(ok) == 16
    for row in ok.itertuples(index=False):
        scan = Scan(row.subject, row.session, row.input_path)
        expected = derivative_path(deriv, scan, SPACE, 4)
        assert row.output_path == str(expected)
        assert expected.name == f"{row.subject}_{row.session}_space-{SPACE}_res-4mm_desc-preproc_T1w.nii.gz"
        image = nib.load(expected)
        assert image.shape == template.image.shape
        np.testing.assert_allclose(image.affine, ants.to_nibabel_nifti(template.image).affine, atol=1e-4)
        data = image.get_fdata()
        assert np.all(data[~mask] == 0) and data[mask].mean() > 0  # brain extracted with the template mask
        assert 0.6 < row.similarity_cc <= 1 and row.similarity_mi > 0.3
        assert row.runtime_s > 0 and pd.isna(row.warning)
    # nothing but hidden temporary files would be left; none is
    assert not [p for p in deriv.rglob(".*") if p.name != ".bidsignore"]


def test_inputs_untouched(first_run):
    assert first_run.hashes_after == first_run.hashes_before


def test_corrupt_scan_is_reported(first_run):
    qc = _qc(first_run.deriv)
    failed = qc[qc.status == "failed"]
    assert (failed.subject.tolist(), failed.session.tolist()) == ([CORRUPT[0]], [CORRUPT[1]])
    error = failed.error.iloc[0]
    assert str(first_run.tree.corrupt) in error and "Cannot read T1w image" in error and "EOFError" in error
    assert not Path(failed.output_path.iloc[0]).exists()
    assert str(first_run.tree.corrupt) in (first_run.deriv / "logs" / "preprocess.log").read_text()
    failures = [f for s in first_run.summaries for f in s.failures]
    assert failures == [error]


def test_rerun_does_no_work_and_redoes_a_deleted_output(first_run, tmp_path):
    out = _copy(first_run.out, tmp_path / "out")
    deriv = pipeline_dir(out)
    mtimes = _mtimes(deriv)
    assert len(mtimes) == 16

    summary = preprocess_bids(first_run.tree.root, out, n_proc=2, **FAST)
    assert (summary.total, summary.skipped, summary.succeeded, summary.failed) == (17, 16, 0, 1)  # corrupt retried
    assert _mtimes(deriv) == mtimes

    deleted = sorted(mtimes)[3]
    os.remove(deleted)
    summary = preprocess_bids(first_run.tree.root, out, **FAST)
    assert (summary.skipped, summary.succeeded, summary.failed) == (15, 1, 1)
    after = _mtimes(deriv)
    assert set(after) == set(mtimes)
    assert {k: v for k, v in after.items() if k != deleted} == {k: v for k, v in mtimes.items() if k != deleted}


def test_failed_scan_is_retried_and_succeeds_once_fixed(first_run, tmp_path):
    root = _copy(first_run.tree.root, tmp_path / "bids")
    out = _copy(first_run.out, tmp_path / "out")
    fixed = root / first_run.tree.corrupt.relative_to(first_run.tree.root)
    nib.save(synthetic_t1w(seed=7, resolution=4), fixed)  # the user replaces the broken file
    summary = preprocess_bids(root, out, **FAST)
    assert (summary.skipped, summary.succeeded, summary.failed) == (16, 1, 0)
    qc = _qc(pipeline_dir(out))
    assert len(qc) == 17 and (qc.status == "ok").all()


def test_killed_run_leaves_nothing_counted_as_done(first_run, tmp_path):
    out = _copy(first_run.out, tmp_path / "out")
    deriv = pipeline_dir(out)
    qc = _qc(deriv)
    row = qc[qc.status == "ok"].iloc[0]
    output = Path(row.output_path.replace(str(first_run.out), str(out)))
    # killed after the image was replaced but before the QC record was written, with a stray temporary file
    record = deriv / "qc" / output.name.replace(".nii.gz", ".json")
    record.unlink()
    stray = output.with_name(f".{output.name}.12345.tmp.nii.gz")
    stray.write_bytes(b"half a file")
    summary = preprocess_bids(first_run.tree.root, out, **FAST)
    assert (summary.skipped, summary.succeeded, summary.failed) == (15, 1, 1)
    assert record.is_file() and json.loads(record.read_text())["status"] == "ok"
    assert not stray.exists()


def test_a_stricter_gate_fails_scans_that_datalists_then_leave_out(first_run, tmp_path, capsys):
    out = _copy(first_run.out, tmp_path / "out")
    deriv = pipeline_dir(out)

    def datalist(*extra) -> tuple[set, str]:
        path = tmp_path / f"list{len(extra)}.json"
        argv = ["datalist", first_run.tree.root, "--derivatives", deriv, "--missing_image", "drop", "--out", path]
        argv += ["--test_fraction", 0.5, "--val_fraction", 0.5]  # a tree of few subjects
        assert cli.main([*map(str, argv), *extra]) == 0
        listed = json.loads(path.read_text())
        images = {item["image"] for split in listed.values() if isinstance(split, list) for item in split}
        return images, capsys.readouterr().out

    everything, said = datalist()
    assert "QC gate" not in said
    before = _qc(deriv).assign(image=lambda t: t.output_path.str.replace(str(first_run.out), str(out)))
    listed = np.sort(before.loc[before.image.isin(everything), "template_correlation"].to_numpy())
    limit = float(listed[:2].mean())  # at least the listed scan of the lowest correlation falls below it
    below = int((before.template_correlation <= limit).sum())
    summary = preprocess_bids(first_run.tree.root, out, min_template_correlation=limit, **FAST)
    assert (summary.succeeded, summary.failed) == (0, 1 + below)  # the corrupt scan, and those refused: redone
    qc = _qc(deriv).assign(image=lambda t: t.output_path.str.replace(str(first_run.out), str(out)))
    refused = qc[qc.error.fillna("").str.contains("failed the QC gate")]
    assert len(refused) == below and (refused.status == "failed").all()
    assert refused.error.str.contains(f"template_correlation .* not above {limit}").all()
    assert all(Path(image).is_file() for image in refused.image)  # the image is kept, to look at

    included, said = datalist("--include_qc_failed")
    kept, told = datalist()
    left_out = set(refused.image) & everything
    assert included == everything and left_out and everything - kept == left_out
    assert f"{len(left_out)} scan(s) failed the preprocessing's QC gate and were left out" in told
    assert "were kept (--include_qc_failed)" in said
    # the default gate again: the refused scans are redone and pass
    again = preprocess_bids(first_run.tree.root, out, **FAST)
    assert (again.succeeded, again.failed) == (below, 1)


def test_default_syn_quick_and_changed_settings(bids_tree, tmp_path):  # noqa: F811
    root = tmp_path / "bids"
    source = bids_tree.images[("sub-ADNI01", "ses-M000")]
    target = root / source.relative_to(bids_tree.root)
    target.parent.mkdir(parents=True)
    shutil.copy(source, target)
    # seeded, one thread: an unseeded SyNQuick of this 4 mm scan now and then ends far off (correlation 0.14)
    fast_n4 = {
        "profile": "paper",
        "n4_kwargs": FAST["n4_kwargs"],
        "progress": False,
        "seed": 1,
        "threads_per_worker": 1,
    }
    summary = preprocess_bids(root, tmp_path / "out", resolution=4, **fast_n4)  # transform="SyNQuick"
    assert (summary.succeeded, summary.failed) == (1, 0)
    record = _qc(pipeline_dir(tmp_path / "out")).iloc[0]
    assert record["transform"] == "antsRegistrationSyNQuick[s]" and 0 < record["similarity_cc"] <= 1
    # same settings: skipped; another transform: redone
    assert preprocess_bids(root, tmp_path / "out", resolution=4, **fast_n4).skipped == 1
    redo = preprocess_bids(root, tmp_path / "out", **FAST)
    assert (redo.skipped, redo.succeeded) == (0, 1)
    assert _qc(pipeline_dir(tmp_path / "out"))["transform"].tolist() == ["Affine"]


def test_low_similarity_gets_a_warning(bids_tree, tmp_path):  # noqa: F811
    root = tmp_path / "bids"
    source = bids_tree.images[("sub-ADNI02", "ses-M000")]
    target = root / source.relative_to(bids_tree.root)
    target.parent.mkdir(parents=True)
    shutil.copy(source, target)
    summary = preprocess_bids(root, tmp_path / "out", min_similarity_cc=1.01, **FAST)
    assert summary.succeeded == 1 and len(summary.warnings) == 1 and "low similarity" in summary.warnings[0]
    assert "low similarity" in _qc(pipeline_dir(tmp_path / "out")).warning.iloc[0]


def test_command_line(first_run, tmp_path):
    out = tmp_path / "out"
    scans = find_t1w_scans(first_run.tree.root)
    shard = "7/9"  # scans 6 and 15 of the sorted list; 15 is the corrupt one
    assert [s.path for s in select_shard(scans, shard)] == [scans[6].path, str(first_run.tree.corrupt)]
    command = [
        sys.executable,
        "-m",
        "axial_monai.preprocess",
        str(first_run.tree.root),
        str(out),
        "--n_proc",
        "2",
        "--shard",
        shard,
        "--profile",
        "paper",
        "--transform",
        "Affine",
        "--resolution",
        "4",
        "--registration_kwargs",
        json.dumps(FAST["registration_kwargs"]),
        "--n4_kwargs",
        json.dumps(FAST["n4_kwargs"]),
        "--progress",
        "False",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr  # one scan failed
    assert "Cannot read T1w image" in result.stderr + result.stdout
    qc = _qc(pipeline_dir(out))
    assert qc.status.tolist() == ["ok", "failed"] and qc.input_path.tolist()[0] == scans[6].path
    assert Path(qc.output_path.iloc[0]).is_file()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"transform": "Warp"}, "transform must be one of"),
        ({"shard": "3/2"}, "shard"),
        ({"n_proc": 0}, "n_proc must be"),
        ({"resolution": -1}, "resolution must be"),
        ({"template": "MNI305"}, "template must be one of"),
    ],
)
def test_bad_arguments_fail_before_any_work(bids_tree, tmp_path, kwargs, match):  # noqa: F811
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        preprocess_bids(bids_tree.root, tmp_path, **{**FAST, **kwargs})
    assert not any(tmp_path.iterdir())


def test_read_t1w_rejects_bad_images(tmp_path):
    cases = {
        "4d.nii.gz": (np.ones((4, 4, 4, 2), np.float32), "must be one 3D volume"),
        "nan.nii.gz": (np.full((4, 4, 4), np.nan, np.float32), "NaN"),
        "flat.nii.gz": (np.zeros((4, 4, 4), np.float32), "constant"),
    }
    for name, (data, match) in cases.items():
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / name)
        with pytest.raises(ValueError, match=match):
            read_t1w(tmp_path / name)
    (tmp_path / "text.nii.gz").write_text("not an image")
    with pytest.raises(ValueError, match=r"Cannot read T1w image .*text\.nii\.gz"):
        read_t1w(tmp_path / "text.nii.gz")
    single = np.random.default_rng(0).random((5, 6, 7, 1)).astype(np.float32)
    nib.save(nib.Nifti1Image(single, np.eye(4)), tmp_path / "one.nii.gz")
    assert read_t1w(tmp_path / "one.nii.gz").shape == (5, 6, 7)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_shipped_templates(name):
    full_shape = {"MNI152NLin2009cAsym": (193, 229, 193), "MNI152NLin2009aSym": (197, 233, 189)}[name]
    header = nib.load(template_file(name))
    assert header.shape == full_shape
    template = load_template(name, resolution=4)
    assert template.space == name and template.image.shape == template.brain_mask.shape
    assert template.image.spacing == (4.0, 4.0, 4.0)
    mask = template.brain_mask.numpy()
    assert set(np.unique(mask)) == {0, 1} and 0.1 < mask.mean() < 0.6


def test_custom_template_path_and_mask(tmp_path):
    tpl = load_template(SPACE, resolution=4)
    ants.image_write(tpl.image, str(tmp_path / "head.nii.gz"))
    ants.image_write(tpl.brain_mask, str(tmp_path / "mask.nii.gz"))
    custom = load_template(str(tmp_path / "head.nii.gz"), mask=str(tmp_path / "mask.nii.gz"), space="MyHead")
    assert custom.space == "MyHead" and custom.brain_mask.numpy().sum() == tpl.brain_mask.numpy().sum()
    assert load_template(str(tmp_path / "head.nii.gz")).space == "custom"
    with pytest.raises(ValueError, match="alphanumeric"):
        load_template(str(tmp_path / "head.nii.gz"), space="my-head")
