"""Preprocessing mechanisms at work (axial_monai.preprocess): N4 removes a planted bias field, a seeded rerun is
identical, an LPS-stored copy of a scan comes out like its RAS twin, a killed worker costs only its own scan (and,
killed while writing, leaves no partial output), and a run killed with kill -9 mid-scan resumes without redoing
finished scans.

The scans are the fixture's deformed 4 mm copies of the shipped MNI template (``bids_fixture.synthetic_t1w``);
registrations are short affine ones, run in spawned worker processes with one ITK thread each (reproducible).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids_fixture import FAST as PAPER_FAST
from bids_fixture import synthetic_t1w
from dying_jobs import DIE_ON, DIE_WRITING, run_job_dying_while_writing, run_job_or_die

from axial_monai.preprocess import batch, pipeline, pipeline_dir, preprocess_bids
from axial_monai.preprocess.templates import load_template

pytestmark = pytest.mark.slow

#: short affine registration and N4 for 4 mm scans; one ITK thread per worker, seeded: reruns are identical
FAST = {**PAPER_FAST, "threads_per_worker": 1, "seed": 42, "n_proc": 2}
#: sub-00 is the scan whose worker is killed in the second run; sub-02 is sub-01 stored in LPS voxel order
SUBJECTS = ("sub-00", "sub-01", "sub-02")


def _write_tree(root: Path) -> Path:
    """Three one-session subjects: sub-00 and sub-01 two different scans, sub-02 = sub-01 stored as LPS."""
    root.mkdir(parents=True)
    (root / "participants.tsv").write_text("participant_id\n" + "\n".join(SUBJECTS) + "\n")
    ras = synthetic_t1w(seed=11, resolution=4.0)
    lps = ras.as_reoriented(nib.orientations.axcodes2ornt(("L", "P", "S")))
    assert nib.aff2axcodes(lps.affine) == ("L", "P", "S") and not np.array_equal(lps.get_fdata(), ras.get_fdata())
    for subject, scan in zip(SUBJECTS, (synthetic_t1w(seed=12, resolution=4.0), ras, lps), strict=True):
        anat = root / subject / "ses-M000" / "anat"
        anat.mkdir(parents=True)
        (root / subject / f"{subject}_sessions.tsv").write_text("session_id\tdiagnosis\nses-M000\tCN\n")
        nib.save(scan, anat / f"{subject}_ses-M000_T1w.nii.gz")
    return root


def _outputs(out: Path) -> dict[str, np.ndarray]:
    found = sorted(pipeline_dir(out).rglob("*_desc-preproc_T1w.nii.gz"))
    return {p.name.split("_")[0]: np.asarray(nib.load(p).dataobj) for p in found}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tree preprocessed twice: once normally, once with the worker of sub-00 killed."""
    root = tmp_path_factory.mktemp("mechanisms")
    bids = _write_tree(root / "bids")
    first = preprocess_bids(bids, root / "first", **FAST)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DIE_ON, "sub-00")
        patch.setattr(batch, "_run_job", run_job_or_die)
        killed = preprocess_bids(bids, root / "killed", **FAST)
    return {"root": root, "first": first, "killed": killed}


def test_lps_copy_is_preprocessed_like_its_ras_twin(runs):
    assert (runs["first"].succeeded, runs["first"].failed) == (3, 0)
    outputs = _outputs(runs["root"] / "first")
    ras, lps = outputs["sub-01"], outputs["sub-02"]
    assert ras.shape == lps.shape
    brain = ras > 0
    assert brain.mean() > 0.1
    assert np.corrcoef(ras[brain], lps[brain])[0, 1] > 0.999
    assert np.abs(ras - lps).max() < 0.1 * ras.max()
    # a different scan is not that close: the check can tell scans apart
    assert np.corrcoef(ras[brain], outputs["sub-00"][brain])[0, 1] < 0.99


def test_seeded_rerun_is_identical(runs):
    first, again = _outputs(runs["root"] / "first"), _outputs(runs["root"] / "killed")
    for subject in ("sub-01", "sub-02"):  # the second run: new processes, same seed
        assert np.array_equal(again[subject], first[subject]), subject


def test_killed_worker_leaves_a_died_row_and_the_others_finish(runs):
    summary = runs["killed"]
    assert (summary.total, summary.succeeded, summary.failed) == (3, 2, 1)
    qc = pd.read_csv(summary.qc_path, sep="\t").set_index("subject")
    assert qc.loc["sub-00", "status"] == "failed"
    error = qc.loc["sub-00", "error"]
    assert "worker process died" in error and "sub-00_ses-M000_T1w.nii.gz" in error
    assert (qc.loc[["sub-01", "sub-02"], "status"] == "ok").all()
    assert summary.failures == [error]
    assert set(_outputs(runs["root"] / "killed")) == {"sub-01", "sub-02"}
    # a rerun retries the died scan (here it no longer dies) and skips the finished ones
    rerun = preprocess_bids(runs["root"] / "bids", runs["root"] / "killed", **FAST)
    assert (rerun.skipped, rerun.succeeded, rerun.failed) == (2, 1, 0)


def _planted_bias(template, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """The template brain times a smooth multiplicative field exp(strength * (x + y / 2)), x, y in [-1, 1]."""
    data = template.image.numpy()
    x = np.linspace(-1, 1, data.shape[0])[:, None, None]
    y = np.linspace(-1, 1, data.shape[1])[None, :, None]
    field = np.broadcast_to(np.exp(strength * (x + y / 2)), data.shape)
    return data * field, field


def test_n4_removes_a_planted_bias_field():
    """The template brain times a planted smooth field, preprocessed (rigid, N4 with the ANTs defaults): the log
    ratio of output to the clean brain follows the planted log field with slope ~1 without N4, ~0.25 with it."""
    template = load_template("MNI152NLin2009cAsym", resolution=4)
    clean = template.image.numpy()
    x = np.linspace(-1, 1, clean.shape[0])[:, None, None]
    y = np.linspace(-1, 1, clean.shape[1])[None, :, None]
    log_field = np.broadcast_to(0.35 * (x + y / 2), clean.shape)  # x0.6 .. x1.7 across the head
    image = template.image.new_image_like(clean * np.exp(log_field))
    inside = (template.brain_mask.numpy() > 0) & (clean > 0.2 * clean.max())
    slopes = {}
    for n4 in (False, True):
        brain = pipeline.preprocess_t1w(
            image, template, transform="Rigid", n4=n4, registration_kwargs=FAST["registration_kwargs"]
        ).brain
        log_ratio = np.log(brain.numpy()[inside] / clean[inside])
        slopes[n4] = np.polyfit(log_field[inside], log_ratio, 1)[0]
    assert slopes[False] > 0.8, slopes  # the planted field is in the output without N4
    assert slopes[True] < 0.4, slopes  # N4 removes most of it


def test_a_worker_killed_while_writing_leaves_nothing_at_the_output_path(tmp_path):
    """Outputs are written to a temporary file and renamed: a worker killed halfway through writing the output of
    sub-00 leaves no file at its output path, only the cut temporary file, which the rerun that writes the output
    removes. (The QC record alone would not show it: a scan without an "ok" record is redone either way.)"""
    bids = _write_tree(tmp_path / "bids")
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DIE_WRITING, "sub-00")
        patch.setattr(batch, "_run_job", run_job_dying_while_writing)
        killed = preprocess_bids(bids, out, **FAST)
    assert (killed.succeeded, killed.failed) == (2, 1)
    assert not list(pipeline_dir(out).rglob("sub-00_*_desc-preproc_T1w.nii.gz"))  # no partial file at the path
    partial = list(pipeline_dir(out).rglob(".sub-00_*.tmp.nii.gz"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # the cut write, under its temporary name
    rerun = preprocess_bids(bids, out, **FAST)
    assert (rerun.skipped, rerun.succeeded, rerun.failed) == (2, 1, 0)
    assert set(_outputs(out)) == set(SUBJECTS)
    assert not list(pipeline_dir(out).rglob(".*.tmp*"))


def _done(out: Path) -> dict[str, int]:
    """Output file -> modification time (ns) of every scan whose QC record says ok."""
    records = [json.loads(p.read_text()) for p in sorted((pipeline_dir(out) / "qc").glob("*.json"))]
    return {r["output_path"]: os.stat(r["output_path"]).st_mtime_ns for r in records if r.get("status") == "ok"}


def test_preprocessing_killed_mid_scan_resumes_without_redoing_finished_scans(tmp_path):
    """kill -9 of the whole preprocessing (main process and workers) while a scan is being registered: the rerun
    skips the finished scans (their files untouched) and redoes the interrupted one; nothing partial counts."""
    bids = _write_tree(tmp_path / "bids")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "axial_monai.preprocess", str(bids), str(out), "--n_proc", "1"]
    for key in ("resolution", "profile", "transform", "threads_per_worker", "seed"):
        command += [f"--{key}", str(FAST[key])]
    for key in ("registration_kwargs", "n4_kwargs"):
        command += [f"--{key}", json.dumps(FAST[key])]
    command += ["--progress", "False"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and not (out.exists() and _done(out)):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the session started above: this run's main process and its workers
    process.wait()
    assert process.returncode == -signal.SIGKILL
    done = _done(out)
    assert 1 <= len(done) < len(SUBJECTS)  # killed after the first scan, before the last

    rerun = preprocess_bids(bids, out, **FAST)
    assert (rerun.skipped, rerun.succeeded, rerun.failed) == (len(done), len(SUBJECTS) - len(done), 0)
    after = _done(out)
    assert len(after) == len(SUBJECTS)
    assert {k: after[k] for k in done} == done  # finished scans were not redone
    assert not list(pipeline_dir(out).rglob(".*.tmp*"))  # no partial file left behind
    for path in after:
        assert nib.load(path).get_fdata().any()  # every counted output is a complete image
