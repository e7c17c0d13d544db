"""The resumable preprocessing of a whole BIDS tree, one :func:`~.pipeline.preprocess_scan` per T1w scan.

For a BIDS tree (:func:`preprocess_bids`): resumable (a scan whose output exists and whose QC record says
"ok" with the same settings is skipped; failed ones are retried), atomic outputs (temporary file in the same
folder + ``os.replace``), input files only read, a process pool (``n_proc``, ``spawn`` start method, ITK threads
per worker = cores // n_proc), deterministic shards for cluster array jobs (``shard="i/n"``), a tqdm progress bar,
a QC table and a log file (``<pipeline dir>/logs/preprocess.log``).

Example:
    >>> summary = preprocess_bids("/data/ADNI_BIDS", "/data/ADNI_BIDS", n_proc=4, shard="1/10")
    >>> summary.failed
    0
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import datetime
import functools
import json
import logging
import multiprocessing
import os
import time
import traceback
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ants
from tqdm.auto import tqdm

from .. import __version__
from ..derivatives import DerivativesLayout, QCRecord
from ..errors import SettingsError
from ..io import atomic_path, write_json
from .bids import Scan, find_t1w_scans, parse_shard, select_shard, write_dataset_description
from .gate import DEFAULT_GATE, QCGate
from .pipeline import (
    DEFAULT_PROFILE,
    PreprocessedScan,
    ants_environment,
    check_profile,
    preprocess_scan,
    resolve_transform,
)
from .qc import collect_qc, read_record
from .templates import DEFAULT_TEMPLATE, TEMPLATES, Template, load_template

__all__ = ["PreprocessSummary", "preprocess_bids"]

logger = logging.getLogger(__package__)  # the log file takes the messages of every module of the preprocessing


@dataclass
class PreprocessSummary:
    """What one :func:`preprocess_bids` call did (for its shard).

    Attributes:
        total: scans in this shard.
        skipped: scans already done (output exists and QC ok with the same settings).
        succeeded: scans processed successfully now.
        failed: scans that failed now (recorded in the QC table; retried on the next run).
        qc_path: the QC table (TSV).
        deriv_dir: the pipeline's derivatives folder.
        failures: ``"<input path>: <message>"`` for each failed scan.
        warnings: QC warnings (low similarity to the template) of the scans processed now.
    """

    total: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    qc_path: str = ""
    deriv_dir: str = ""
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The summary as a plain dict."""
        return asdict(self)


@dataclass(frozen=True)
class _Job:
    scan: Scan
    output: str
    record: str
    settings: dict[str, Any]
    gate: QCGate = DEFAULT_GATE

    def qc_record(self, **values: Any) -> dict[str, Any]:
        """The QC record of this job finishing now (:class:`QCRecord` fields set to ``values``) and its settings."""
        record = QCRecord(
            subject=self.scan.subject,
            session=self.scan.session,
            input_path=self.scan.path,
            output_path=self.output,
            space=self.settings["space"],
            transform=self.settings["transform"] if self.settings.get("profile") == "paper" else "greedy",
            finished=datetime.datetime.now().isoformat(timespec="seconds"),
            **values,
        )
        return {**asdict(record), "settings": self.settings}


@functools.lru_cache(maxsize=2)
def _cached_template(template: str, mask: str | None, space: str | None, resolution: float | None) -> Template:
    return load_template(template, resolution=resolution, mask=mask, space=space)


atexit.register(_cached_template.cache_clear)  # free the ANTs images before the bindings are torn down


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _run_job(job: _Job) -> dict[str, Any]:
    """Process one scan and write its QC record; never raises for a bad scan (the record says why)."""
    settings = job.settings
    start = time.perf_counter()
    values: dict[str, Any] = {}
    failure: dict[str, str] = {}
    try:
        template = _cached_template(
            settings["template"], settings["template_mask"], settings["space"], settings["resolution"]
        )
        result = preprocess_scan(
            job.scan.path,
            template,
            settings["profile"],
            transform=settings["transform"],
            n4=settings["n4"],
            registration_mask_dilation_mm=settings["registration_mask_dilation_mm"],
            registration_kwargs=settings["registration_kwargs"],
            n4_kwargs=settings["n4_kwargs"],
        )
        brain, metrics = result.brain, result.metrics
        _qc_figure(Path(job.record).with_suffix(".png"), result, template, job.scan.path)
        refusal = job.gate.refusal(metrics)
        # the image is written even when the gate refuses it, for inspection and --include_qc_failed; the record
        # says failed, and datalists leave it out (axial_monai.data.clinica.drop_qc_failed)
        with atomic_path(job.output, suffix=".nii.gz", clean_stale=True) as tmp:  # one worker per output
            ants.image_write(brain, str(tmp))
        if refusal:
            values.update(status="failed", error=f"{job.scan.path}: {refusal}", **metrics)
        else:
            values.update(status="ok", **metrics)
        if values["status"] == "ok" and metrics["similarity_cc"] < settings["min_similarity_cc"]:
            values["warning"] = (
                f"low similarity to the template (cc {metrics['similarity_cc']:.3f} < "
                f"{settings['min_similarity_cc']}): check the registration of {job.scan.path}"
            )
    except Exception as err:  # any failure of one scan is recorded, the others go on
        Path(job.output).unlink(missing_ok=True)  # an older output must not pass for this run's result
        message = _one_line(f"{type(err).__name__}: {err}")
        if job.scan.path not in message:
            message = f"{job.scan.path}: {message}"
        values.update(status="failed", error=message)
        failure["traceback"] = traceback.format_exc()
    record = {**job.qc_record(runtime_s=round(time.perf_counter() - start, 3), **values), **failure}
    write_json(job.record, record)
    return record


def _qc_page(qc: Any, layout: DerivativesLayout) -> None:
    """``<pipeline dir>/qc.html``: the QC page of every scan of the QC table ``qc``, failures first."""
    from .qc_page import write_qc_page

    table = qc.rename(columns={"input_path": "scan", "error": "problem", "runtime_s": "seconds"})
    pictures = [str(layout.record_path(output).with_suffix(".png")) for output in qc["output_path"]]
    write_qc_page(table.assign(qc_figure=pictures), Path(layout.root) / "qc.html")


def _qc_figure(png: Path, result: PreprocessedScan, template: Template, source: str) -> None:
    """The QC picture of one scan; a picture that cannot be drawn is logged, and the scan goes on."""
    from .qc_figure import qc_title, write_qc_figure

    try:
        write_qc_figure(png, result, template, source, qc_title(Path(source).name, result.metrics))
    except Exception as err:  # noqa: BLE001 - a QC picture never costs a scan its result
        logger.warning("%s: no QC picture (%s)", source, _one_line(str(err)))


def _is_done(job: _Job) -> bool:
    if not Path(job.output).is_file():
        return False
    record = read_record(job.record)
    return (
        record is not None
        and record.get("status") == "ok"
        and record.get("settings") == job.settings
        and job.gate.refusal(record) is None  # a stricter gate than the one that passed it redoes the scan
    )


def _init_worker(threads: int, seed: int | None) -> None:
    """Pool initializer: set ITK's thread count and ANTs' random seed before the worker's first ITK call."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    if seed is not None:
        os.environ["ANTS_RANDOM_SEED"] = str(seed)


@contextlib.contextmanager
def _log_to_file(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old_level)


def _crash_record(job: _Job, err: BaseException) -> dict[str, Any]:
    message = _one_line(
        f"{job.scan.path}: the worker process died while it processed this scan alone ({type(err).__name__}: "
        f"{err}): a crash in ITK/ANTs, running out of memory or a kill; it will be retried on the next run"
    )
    record = job.qc_record(status="failed", error=message)
    write_json(job.record, record)
    return record


def _pool(n_proc: int, threads: int, seed: int | None) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(
        max_workers=n_proc,
        mp_context=multiprocessing.get_context("spawn"),  # fork after ITK threads started is unsafe
        initializer=_init_worker,
        initargs=(threads, seed),
    )


def _run_alone(job: _Job, threads: int, seed: int | None) -> dict[str, Any]:
    """Run one job in a worker of its own: if that worker dies, this job is the one that killed it."""
    with _pool(1, threads, seed) as pool:
        try:
            return pool.submit(_run_job, job).result()
        except BrokenProcessPool as err:
            return _crash_record(job, err)


def _run_in_pool(jobs: list[_Job], n_proc: int, threads: int, seed: int | None, done) -> None:
    """Run ``jobs`` in ``n_proc`` spawned workers; call ``done(record)`` for each as it finishes.

    A worker that dies (killed, out of memory, a crash in ITK) breaks the whole pool and fails every job in
    flight, not only its own. So no more than ``n_proc`` jobs are in flight at a time: after a crash, the jobs
    that were in flight are run again one by one, each in a worker of its own, and a job whose own worker dies gets
    a "died" QC record; the jobs not yet started go on in a fresh pool. One bad scan never stops the others.
    """
    queue = list(jobs)
    while queue:
        lost: list[_Job] = []
        with _pool(min(n_proc, len(queue)), threads, seed) as pool:
            running: dict[cf.Future, _Job] = {}
            try:
                while (queue or running) and not lost:
                    while queue and len(running) < n_proc:
                        job = queue.pop(0)
                        running[pool.submit(_run_job, job)] = job
                    finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                    for future in finished:
                        job = running.pop(future)
                        try:
                            done(future.result())
                        except BrokenProcessPool:
                            lost.append(job)
                # a broken pool fails the other jobs in flight too (unless they had just finished)
                for future, job in running.items():
                    try:
                        done(future.result())
                    except BrokenProcessPool:
                        lost.append(job)
            except KeyboardInterrupt:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        for job in lost:
            done(_run_alone(job, threads, seed))


def preprocess_bids(
    bids_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    template: str = DEFAULT_TEMPLATE,
    template_mask: str | None = None,
    space: str | None = None,
    resolution: float | None = None,
    profile: str = DEFAULT_PROFILE,
    transform: str = "SyNQuick",
    n4: bool = True,
    registration_mask_dilation_mm: float | None = 6.0,
    registration_kwargs: dict[str, Any] | None = None,
    n4_kwargs: dict[str, Any] | None = None,
    min_similarity_cc: float = 0.3,
    min_template_correlation: float = DEFAULT_GATE.min_template_correlation,
    min_mask_dice: float = DEFAULT_GATE.min_mask_dice,
    min_jacobian: float | None = DEFAULT_GATE.min_jacobian,
    n_proc: int = 1,
    threads_per_worker: int | None = None,
    shard: str | None = None,
    seed: int | None = 42,
    progress: bool = True,
) -> PreprocessSummary:
    """Preprocess every T1w scan of a (Clinica) BIDS tree into ``out_dir/derivatives/axial-monai``.

    Input files are only read. Outputs are named
    ``sub-X/ses-Y/anat/sub-X_ses-Y_space-<template>[_res-<mm>mm]_desc-preproc_T1w.nii.gz``; QC goes to
    ``qc.tsv`` (one row per scan, see :mod:`axial_monai.preprocess.qc`) and the log to ``logs/preprocess.log``.
    Re-running skips the scans that are done and retries the failed ones. With ``n_proc > 1`` the workers are
    started with ``spawn``, so a script that calls this must do so under ``if __name__ == "__main__":``.

    Args:
        bids_dir: root of the BIDS dataset (``sub-*/ses-*/anat/*_T1w.nii[.gz]``).
        out_dir: root under which ``derivatives/axial-monai`` is written (may be ``bids_dir`` itself).
        template: a shipped template (:data:`~axial_monai.preprocess.templates.TEMPLATES`) or a NIfTI path.
        template_mask: brain mask of a template given by path (default: its non-zero support).
        space: BIDS space label of the outputs (default: the template name, ``"custom"`` for a path).
        resolution: resample the template to this isotropic voxel size in mm (e.g. 4 for tests); ``None``: 1 mm.
        profile: ``"fast"`` (default: deepbet, N4 in the brain at 2 mm, greedy, one resampling; seconds per scan) or
            ``"paper"`` (N4, ANTs registration with ``transform``, the template's brain mask; minutes per scan).
        transform: the paper profile's registration type, see :func:`preprocess_t1w` (default ``"SyNQuick"``).
        n4: the paper profile's N4 bias-field correction.
        registration_mask_dilation_mm: see :func:`preprocess_t1w` (paper profile).
        registration_kwargs: extra keyword arguments of :func:`ants.registration` (paper profile).
        n4_kwargs: extra keyword arguments of :func:`ants.n4_bias_field_correction` (paper profile).
        min_similarity_cc: a scan whose ``similarity_cc`` is below this gets a QC ``warning`` (a likely failed
            registration; the scan still counts as done: inspect it, delete its output to redo it).
        min_template_correlation, min_mask_dice, min_jacobian: the QC gate (:class:`~.gate.QCGate`): a scan with
            a figure at or below its limit is ``failed`` in ``qc.tsv`` with the figure and the limit; its image is
            still written, and datalists leave it out. A stricter gate on a rerun redoes the scans it refuses.
        n_proc: worker processes (1: run in this process).
        threads_per_worker: ITK threads per worker; default ``cpu_count // n_proc`` (at least 1).
        shard: ``"i/n"`` to process only the i-th of n deterministic parts of the sorted scan list.
        seed: ``ANTS_RANDOM_SEED`` for the registrations (``None``: not seeded, every run differs). A rerun with
            the same seed gives identical outputs when ITK runs one thread per worker (``threads_per_worker=1``,
            e.g. ``n_proc`` = cores); with more threads, ITK's parallel sums vary in their last digits.
        progress: show a tqdm progress bar.

    Returns:
        a :class:`PreprocessSummary` of this call.

    Raises:
        SettingsError: for bad arguments (unknown template or transform, bad shard, ``n_proc < 1``).
        InputError: for a BIDS tree without T1w images.
        FileNotFoundError: if ``bids_dir`` or a template file is missing.
    """
    if int(n_proc) != n_proc or n_proc < 1:
        raise SettingsError(f"n_proc must be a positive integer, not {n_proc!r}.")
    n_proc = int(n_proc)
    if threads_per_worker is not None and (int(threads_per_worker) != threads_per_worker or threads_per_worker < 1):
        raise SettingsError(f"threads_per_worker must be a positive integer or None, not {threads_per_worker!r}.")
    parse_shard(shard)
    check_profile(profile)
    gate = QCGate(
        float(min_template_correlation), float(min_mask_dice), None if min_jacobian is None else float(min_jacobian)
    )
    type_of_transform = resolve_transform(transform)
    template_ref = template if template in TEMPLATES else str(Path(template).resolve())
    mask_ref = None if template_mask is None else str(Path(template_mask).resolve())
    # Fail fast on a bad template (and learn its space label) before any scan is touched.
    space_label = load_template(template_ref, resolution=resolution, mask=mask_ref, space=space).space

    settings = json.loads(
        json.dumps(
            {
                "template": template_ref,
                "template_mask": mask_ref,
                "space": space_label,
                "resolution": None if resolution is None else float(resolution),
                "profile": profile,
                "transform": type_of_transform,
                "n4": bool(n4),
                "registration_mask_dilation_mm": registration_mask_dilation_mm,
                "registration_kwargs": dict(registration_kwargs or {}),
                "n4_kwargs": dict(n4_kwargs or {}),
                "min_similarity_cc": float(min_similarity_cc),
            }
        )
    )
    layout = DerivativesLayout.under(out_dir)
    scans = select_shard(find_t1w_scans(bids_dir), shard)
    jobs = []
    for scan in scans:
        output = layout.image_path(scan.subject, scan.session, scan.stem, space_label, settings["resolution"])
        record = str(layout.record_path(output))
        jobs.append(_Job(scan=scan, output=str(output), record=record, settings=settings, gate=gate))
    write_dataset_description(layout.root, bids_dir, __version__)

    summary = PreprocessSummary(total=len(jobs), deriv_dir=str(layout.root))
    todo = [job for job in jobs if not _is_done(job)]
    summary.skipped = len(jobs) - len(todo)
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // n_proc)

    with _log_to_file(layout.log_file):
        logger.info(
            "shard %s: %d scans, %d already done, %d to process with the %s profile (%s), %d process(es) x %d "
            "thread(s)",
            shard or "1/1",
            len(jobs),
            summary.skipped,
            len(todo),
            profile if profile == "fast" else f"paper ({type_of_transform})",
            space_label,
            n_proc,
            threads,
        )

        def handle(record: dict[str, Any]) -> None:
            if record["status"] == "ok":
                summary.succeeded += 1
                logger.info(
                    "ok %s (%.1f s, cc %.3f)", record["input_path"], record["runtime_s"], record["similarity_cc"]
                )
                if record.get("warning"):
                    summary.warnings.append(record["warning"])
                    logger.warning("%s", record["warning"])
            else:
                summary.failed += 1
                summary.failures.append(record["error"])
                logger.error("failed %s", record["error"])

        with tqdm(total=len(todo), desc=f"preprocess {shard or ''}".strip(), unit="scan", disable=not progress) as bar:
            if n_proc == 1 or len(todo) <= 1:
                with ants_environment(threads_per_worker, seed):
                    for job in todo:
                        handle(_run_job(job))
                        bar.update()
            elif todo:

                def done(record: dict[str, Any]) -> None:
                    handle(record)
                    bar.update()

                _run_in_pool(todo, n_proc, threads, seed, done)
        summary.qc_path = str(layout.qc_table)
        _qc_page(collect_qc(layout.root, write=True), layout)
        logger.info(
            "shard %s done: %d ok, %d failed, %d skipped",
            shard or "1/1",
            summary.succeeded,
            summary.failed,
            summary.skipped,
        )
    return summary
