"""The ``axial-monai`` command line: one console script, one python-fire function per subcommand.

Usage::

    axial-monai -h                                   # the subcommands
    axial-monai SUBCOMMAND --help                    # its arguments and options, one line each
    axial-monai check-bids /data/ADNI_BIDS --task ADvsCN
    axial-monai datalist /data/ADNI_BIDS --task ADvsCN --derivatives /data/out --out datalist.json
    axial-monai report runs/axial
    axial-monai demo                                 # train the demo model into runs/axial
    axial-monai predict scan.nii.gz --model runs/axial --explain
    axial-monai predict /media/dicom_study --model runs/axial      # one prediction per T1 series
    axial-monai preprocess scan.nii.gz /media/dicom_study --out preprocessed
    axial-monai export runs/axial bundles/axial_demo
    axial-monai deploy bundles/axial_demo apps/axial_demo   # the MONAI Deploy application: DICOM in, DICOM out
    axial-monai attach-controls runs/old             # a run trained before 0.2.5: its explanation baseline

``python -m axial_monai ...`` is the same command. ``-h`` and ``--help`` always mean help, anywhere on the line
(fire would otherwise read ``-h`` as the first option starting with "h"). Bad input (a missing file, a bad value)
ends with one line ``axial-monai SUBCOMMAND: error: ...`` and exit status 2, never a traceback.

Adding a subcommand (e.g. ``predict``, ``export``, ``demo``): write one function in this module, decorated with
``@subcommand("name")``, with type hints, a one-line summary and a Google ``Args:`` section with one line per
argument (that line is its ``--help`` text). Import heavy modules inside the function so that ``--help`` stays
fast. Print what the user needs and return the exit status (0 on success). A subcommand that wraps a bundle run
prints :func:`bundle_command` (the equivalent ``python -m monai.bundle ...`` line) before it runs it. That is all:
the function is listed in ``axial-monai -h`` and gets ``--help`` from its docstring.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .commandline import Subcommands, bundle_command
from .errors import SettingsError
from .layout import RunLayout

__all__ = ["COMMANDS", "subcommand", "main"]

PROG = "axial-monai"
#: subcommand name -> function, in the order they are defined.
COMMANDS = Subcommands(PROG)
#: ``@subcommand("name")`` registers the decorated function as the subcommand ``name``.
subcommand = COMMANDS.register


# --- subcommands ------------------------------------------------------------------------------------------------


@subcommand("check-bids")
def check_bids(
    bids_dir: str,
    task: str | None = None,
    horizon: int = 36,
    derivatives: str | None = None,
    diagnosis_map: dict | str | None = None,
    strict: bool = False,
) -> int:
    """Check a Clinica BIDS tree for training: one line per problem (file, line, Clinica step), counts per task.

    Args:
        bids_dir: Clinica BIDS root (participants.tsv, sub-X/sub-X_sessions.tsv, sub-X/ses-Y/anat/*_T1w.nii.gz).
        task: ADvsCN or pMCIvsSMCI (default: both; a task named here without scans of a class is an error).
        horizon: months between an MCI session and the follow-up that makes it pMCI (AD) or sMCI (MCI).
        derivatives: preprocessing output (axial-monai-preprocess OUT_DIR): also check the preprocessed images.
        diagnosis_map: other diagnosis spellings, as JSON '{"Dementia": "AD"}' or adnimerge.
        strict: exit status 1 on warnings too.
    """
    from .data.bids_check import check_bids_tree

    report = check_bids_tree(bids_dir, None if task is None else [task], horizon, derivatives, diagnosis_map)
    print("\n".join(report.lines()))
    return 0 if report.usable and not (strict and report.problems) else 1


@subcommand("datalist")
def datalist(
    bids_dir: str,
    out: str = "datalist.json",
    task: str = "ADvsCN",
    derivatives: str | None = None,
    k: int | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    seed: int = 0,
    horizon: int = 36,
    space: str | None = None,
    missing_image: str = "raise",
    diagnosis_map: dict | str | None = None,
    joint: bool = True,
    include_qc_failed: bool = False,
) -> int:
    """Write a subject-wise stratified training/validation/test datalist (or --k folds) of a Clinica BIDS tree.

    Args:
        bids_dir: Clinica BIDS root.
        out: datalist JSON to write (with --k: OUT_fold-<i>.json per fold).
        task: ADvsCN or pMCIvsSMCI.
        derivatives: preprocessing output with the *_desc-preproc_T1w.nii.gz images (default: raw images).
        k: number of folds; default one hold-out split.
        test_fraction: share of the subjects in the test split of the hold-out split.
        val_fraction: share of the other subjects in the validation split.
        seed: seed of the splits.
        horizon: months of follow-up for pMCIvsSMCI.
        space: template label of the preprocessed images, if there are several.
        missing_image: raise or drop labelled sessions without an image.
        diagnosis_map: other diagnosis spellings, as JSON '{"Dementia": "AD"}' or adnimerge.
        joint: split on the union of both tasks' subjects, as the cross-validation (--nojoint: this task only).
        include_qc_failed: keep the scans that the preprocessing's QC gate failed (default: left out, and counted).
    """
    import os

    from .crossval.__main__ import CLASS_NAMES
    from .crossval.holdout import class_counts, write_datalists
    from .crossval.runner import TRAIN_CONFIG
    from .data.clinica import TASKS, splittable_scans

    if task not in TASKS:
        raise SettingsError(f"--task must be one of {list(TASKS)}, not {task!r}.")
    table, others, told = splittable_scans(
        bids_dir, task, derivatives, horizon, space, missing_image, diagnosis_map, include_qc_failed, joint
    )
    print(told, end="")
    written = write_datalists(table, out, k, test_fraction, val_fraction, seed, others)
    for path, splits in written:
        counts = class_counts(splits, CLASS_NAMES[task])
        print(f"{path}: no subject in two splits (leakage guard passed)")
        for split, part in counts.groupby("split", sort=False):
            classes = ", ".join(f"{r['class']} {r.scans} scans / {r.subjects} subjects" for _, r in part.iterrows())
            print(f"  {split:<10} {classes}")
    first = str(written[0][0])
    settings = {"dataset_dir": os.path.dirname(os.path.abspath(first)), "datalist": first}
    if task != "ADvsCN":
        settings["class_names"] = CLASS_NAMES[task]
    print("train on it with:\n  " + bundle_command("training", TRAIN_CONFIG, settings))
    return 0


@subcommand("report")
def report(
    run_dir: str,
    out: str | None = None,
    title: str | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    max_scans: int = 6,
    anatomy: str | None = None,
) -> int:
    """Write one self-contained HTML report of a training, cross-validation or explain run.

    Args:
        run_dir: output directory of the run (bundle output_dir, crossval OUT_DIR, or an explain folder).
        out: HTML file to write (default RUN_DIR/report.html).
        title: report title (default: the run folder name).
        n_resamples: bootstrap resamples of the confidence intervals.
        confidence: coverage of the confidence intervals.
        seed: seed of the bootstrap.
        max_scans: explained scans shown one by one (all are in the cohort figures and tables).
        anatomy: NIfTI under the cohort maps (default: nilearn's MNI152 template).
    """
    from .report import ReportOptions, write_report

    path = write_report(run_dir, out, ReportOptions(title, n_resamples, confidence, seed, max_scans, anatomy))
    print(f"report written to {path}")
    return 0


@subcommand("predict")
def predict(
    *scans: str,
    model: str | None = None,
    explain: bool = False,
    out: str = "predictions",
    transform: str = "SyNQuick",
    resolution: float = 1.0,
    cache_dir: str | None = None,
    trust_bundle_code: bool = False,
    trusted_key: str | None = None,
    profile: str | None = None,
) -> int:
    """Predict (and explain) raw T1 scans with a trained run or an exported bundle: preprocessing included.

    Args:
        scans: T1 NIfTI files or folders of them (raw or preprocessed; not BIDS), or folders holding DICOM series
            (one prediction per 3D T1 series; the other series are listed with why).
        model: the model (required): a run folder (training output_dir), its models/model.pt, or an exported bundle
            (folder or zip), whose files are checked against its manifest and whose code never runs.
        explain: also write attention and GradCAM maps, region tables and overlays per scan.
        out: output folder: OUT/<scan>/prediction.json, overview.png (and maps), OUT/predictions.csv, skipped.csv.
        transform: the paper profile's registration to the model's template: SyNQuick, SyN, Affine or Rigid.
        resolution: voxel size (mm) of the registration when the model's grid is coarser (ANTs is tuned for ~1 mm).
        cache_dir: where preprocessed scans are cached by content (default $AXIAL_MONAI_CACHE or ~/.cache/axial_monai).
        trust_bundle_code: run the bundle's own configs and scripts/ (the sender's code, with your rights) instead of
            this installation's; also AXIAL_MONAI_TRUST_BUNDLE_CODE=1.
        trusted_key: an Ed25519 public key (PEM file): the bundle must be signed by its private key.
        profile: preprocessing of raw scans: fast (deepbet, N4, greedy: seconds) or paper (N4, ANTs SyNQuick:
            minutes); default: the profile of the model's training scans, else fast.
    """
    from .configs import flag
    from .predict import predict_scans

    if model is None:
        raise SettingsError("--model is required: a run folder, its models/model.pt or an exported bundle folder.")
    results = predict_scans(
        scans,
        model,
        out=out,
        explain=explain,
        transform=transform,
        resolution=resolution,
        cache_dir=cache_dir,
        trust_bundle_code=flag(trust_bundle_code, "trust_bundle_code"),
        trusted_key=trusted_key,
        profile=profile,
    )
    failed = [r for r in results if r.problem]
    for result in failed:
        print(f"not predicted: {result.scan}: {result.problem}", file=sys.stderr)
    print(f"{len(results) - len(failed)} of {len(results)} scans predicted; results in {out}")
    return 1 if failed else 0


@subcommand("preprocess")
def preprocess(
    *scans: str,
    out: str = "preprocessed",
    template: str = "MNI152NLin2009cAsym",
    resolution: float | None = None,
    profile: str = "fast",
    transform: str = "SyNQuick",
    n_proc: int = 1,
    shard: str | None = None,
    cache_dir: str | None = None,
) -> int:
    """Preprocess raw T1 scans onto a template: NIfTI files, DICOM series folders, or one BIDS tree.

    Args:
        scans: T1 NIfTI files or folders of them, folders holding DICOM series (one output per 3D T1 series; the
            other series are listed with why), or one Clinica BIDS tree (then as axial-monai-preprocess).
        out: output folder: OUT/<scan>_space-..._desc-preproc_T1w.nii.gz, <scan>_qc.json and preprocess.csv (a BIDS
            tree: OUT/derivatives/axial-monai).
        template: shipped template name or NIfTI path.
        resolution: resample the template to this voxel size in mm (default: its own 1 mm grid).
        profile: fast (deepbet, N4, greedy: seconds) or paper (N4, ANTs SyNQuick, template mask: minutes).
        transform: the paper profile's ANTs registration: SyNQuick, SyN, Affine or Rigid.
        n_proc: worker processes (BIDS tree only).
        shard: i/n: only the i-th of n parts of the scans (BIDS tree only).
        cache_dir: where DICOM series read as NIfTI are kept (default $AXIAL_MONAI_CACHE or ~/.cache/axial_monai).
    """
    from .preprocess.bids import is_bids_tree

    if not scans:
        raise SettingsError("Give at least one scan: a NIfTI file, a DICOM folder or a BIDS tree.")
    if any(is_bids_tree(s) for s in scans):
        if len(scans) > 1:
            raise SettingsError(f"Give one BIDS tree alone, not with other inputs: {list(scans)}.")
        from .preprocess.batch import preprocess_bids

        summary = preprocess_bids(
            scans[0], out, template=template, resolution=resolution, profile=profile, transform=transform,
            n_proc=n_proc, shard=shard,
        )  # fmt: skip
        print(f"{summary.succeeded} done, {summary.skipped} already done, {summary.failed} failed: {summary.qc_path}")
        for failure in summary.failures:
            print(f"failed: {failure}", file=sys.stderr)
        return 1 if summary.failed else 0
    from .preprocess_scans import preprocess_scans

    table = preprocess_scans(
        scans, out, template=template, resolution=resolution, profile=profile, transform=transform,
        cache_dir=cache_dir,
    )  # fmt: skip
    failed = table[table["status"] != "ok"]
    for _, row in failed.iterrows():
        print(f"not preprocessed: {row['scan']}: {row['problem']}", file=sys.stderr)
    print(f"{len(table) - len(failed)} of {len(table)} scans preprocessed; results in {out}/preprocess.csv")
    return 1 if len(failed) else 0


@subcommand("export")
def export(
    run_dir: str,
    out: str,
    name: str | None = None,
    version: str = "0.1.0",
    changelog: str | None = None,
    torchscript: bool = True,
    overwrite: bool = False,
    with_control_mean: bool = False,
    url_base: str | None = None,
    sign_key: str | None = None,
) -> int:
    """Export a trained run as a MONAI model-zoo bundle (folder + zip) that runs without this repository.

    Args:
        run_dir: the run folder (training output_dir) or its models/model.pt.
        out: the bundle folder to write (OUT.zip is written next to it); its name is the bundle's, in the model
            zoo's <data>_<modality>_<task> form (e.g. adni_mri_classification).
        name: bundle name (default: the folder name of OUT).
        version: bundle version in configs/metadata.json.
        changelog: changelog entry of this version (default: the export date and the run's task).
        torchscript: also write models/model.ts (scripted; shipped only if it equals the network on its grid).
        overwrite: replace an existing OUT folder.
        with_control_mean: also ship the run's mean control scan (derived from training subjects: check that their
            terms allow sharing it; at least 20 scans). Without it the explanations start from the template.
        url_base: where the files over 1 MB will be hosted (large_files.yml lists <url_base>/<path>).
        sign_key: an Ed25519 private key (PEM file): sign the bundle's manifest (manifest.sig), so that a receiver
            with the public key knows who sent it (axial-monai predict --trusted_key).
    """
    from .configs import flag
    from .export import export_bundle

    bundle = export_bundle(
        run_dir, out, name=name, version=version, changelog=changelog, torchscript=torchscript, overwrite=overwrite,
        with_control_mean=flag(with_control_mean, "with_control_mean"), url_base=url_base, sign_key=sign_key,
    )  # fmt: skip
    print(f"bundle: {bundle.folder}\narchive: {bundle.archive}")
    if bundle.large_files:
        print(f"files over 1 MB (listed with their md5 in large_files.yml): {', '.join(bundle.large_files)}")
    print(
        "the receiver runs it with their own axial-monai (no code of the bundle runs):\n"
        f"  axial-monai predict SCAN --model {bundle.folder.name}\n"
        "or, with MONAI alone, from the bundle folder (this runs the bundle's scripts/):\n"
        "  python -m monai.bundle run inferring --config_file configs/inference.json --input /data/scans\n"
        f"or, as a MONAI Deploy application (DICOM in, DICOM out): axial-monai deploy {bundle.folder.name} APP"
    )
    return 0


@subcommand("deploy")
def deploy(bundle: str, out: str, overwrite: bool = False) -> int:
    """Write the MONAI Deploy application of an exported bundle: a DICOM study in, DICOM SR and picture out.

    Args:
        bundle: the exported bundle folder (axial-monai export), with its compiled models/model.ts.
        out: the application folder to write.
        overwrite: replace an existing OUT folder.
    """
    from .deploy import write_application

    app = write_application(bundle, out, overwrite=overwrite)
    print(f"application: {app}\nrun it on a DICOM study folder:\n  python {app} -i STUDY -o RESULTS")
    return 0


@subcommand("attach-controls")
def attach_controls(
    run_dir: str, out: str | None = None, dataset_dir: str | None = None, datalist: str | None = None
) -> int:
    """Add the mean control scan, the default explanation baseline, to a run trained before axial-monai 0.2.5.

    Args:
        run_dir: the run folder (training output_dir) or its models/model.pt.
        out: where to write the checkpoint (default: over the run's).
        dataset_dir: where the training scans are now (default: the run's).
        datalist: the datalist with their training split (default: the run's).
    """
    from .run import RunSettings
    from .run.migrate import attach_control_mean

    path = attach_control_mean(run_dir, out, dataset_dir, datalist)
    print(f"{path}: now carries the mean of {RunSettings.load(path).control_count} training control scans")
    return 0


@subcommand("benchmark")
def benchmark(
    cohort: str,
    out: str,
    task: str = "ADvsCN",
    derivatives: str | None = None,
    models: str | Sequence[str] = "all",
    k: int = 5,
    seed: int = 0,
    overrides: dict | str | None = None,
    transfer: bool = False,
    conversion: str | None = None,
    transfer_overrides: dict | str | None = None,
    explain: dict | str | bool | None = None,
    val_fraction: float = 0.2,
    missing_image: str = "raise",
    diagnosis_map: dict | str | None = None,
    include_qc_failed: bool = False,
    progress: bool = True,
) -> int:
    """Cross-validate every model on the same folds and write the paper's comparison table (paper_table.md).

    Args:
        cohort: a Clinica BIDS tree, or a datalist JSON (all its splits are cross-validated as one cohort).
        out: output folder (a rerun resumes per model and fold).
        task: ADvsCN or pMCIvsSMCI (BIDS cohorts).
        derivatives: preprocessing output with the *_desc-preproc_T1w.nii.gz images (BIDS cohorts).
        models: comma-separated names among axial, majority_vote_2d, mean_pool, slice_transformer, densenet3d,
            triplanar; "all" (default) for every one.
        k: number of folds.
        seed: seed of the folds.
        overrides: bundle settings for every model, as JSON, e.g. '{"epochs": 100}'.
        transfer: a BIDS cohort: also the conversion task (pMCIvsSMCI) from ImageNet and by double transfer.
        conversion: a datalist JSON of the conversion task (instead of --transfer), labels 0 stable, 1 converter.
        transfer_overrides: bundle settings of the double transfer run only, as JSON, e.g. to keep the main task's
            head and fine-tune gently: '{"initialised_network#reset": [], "learning_rate": 5e-5}'.
        explain: explain every fold of the reference model (--explain, or a JSON object of explain.json settings).
        val_fraction: share of each fold's training subjects used for validation.
        missing_image: raise or drop labelled sessions without an image (BIDS cohorts).
        diagnosis_map: other diagnosis spellings, as JSON '{"Dementia": "AD"}' or adnimerge (BIDS cohorts).
        include_qc_failed: keep the scans that the preprocessing's QC gate failed (BIDS cohorts).
        progress: show progress bars.
    """
    import json
    import shlex

    from .crossval.__main__ import CLASS_NAMES, _parse_overrides
    from .paper_table import MODELS, cohort_tables, run_benchmark

    names = list(MODELS) if models in ("all", None) else models
    names = [m.strip() for m in (names.split(",") if isinstance(names, str) else names) if m.strip()]
    settings = _parse_overrides(overrides)
    options = {"missing_image": missing_image, "diagnosis_map": diagnosis_map, "include_qc_failed": include_qc_failed}
    table, conversion_table, told = cohort_tables(cohort, task, derivatives, transfer, conversion, **options)
    print(told, end="")
    if not Path(cohort).is_file():
        settings.setdefault("class_names", CLASS_NAMES[task])
    explain_settings = None if explain in (None, False) else ({} if explain is True else _parse_overrides(explain))
    command = [PROG, "benchmark", cohort, out, "--task", task, "--models", ",".join(names), "--k", k, "--seed", seed]
    command += ["--derivatives", derivatives] if derivatives else []
    command += ["--overrides", json.dumps(settings)] if settings else []
    command += ["--transfer"] if transfer else []
    command += ["--conversion", conversion] if conversion else []
    transfer_settings = _parse_overrides(transfer_overrides)
    command += ["--transfer_overrides", json.dumps(transfer_settings)] if transfer_settings else []
    command += ["--explain", json.dumps(explain_settings)] if explain_settings is not None else []
    run_benchmark(
        table,
        out,
        names,
        k=k,
        seed=seed,
        overrides=settings,
        conversion=conversion_table,
        conversion_overrides={"class_names": CLASS_NAMES["pMCIvsSMCI"]},
        transfer_overrides=transfer_settings,
        val_fraction=val_fraction,
        explain=explain_settings,
        task=task,
        command=shlex.join(str(part) for part in command),
        progress=progress,
    )
    print(f"wrote {Path(out) / 'paper_table.md'} (and paper_table.csv, comparisons.csv, cost.csv, paper_table.png)")
    return 0


@subcommand("demo")
def demo(output_dir: str = "runs/axial", epochs: int | None = None) -> int:
    """Train and evaluate AxialNet on the built-in demo cohort, as the README's first command does.

    Args:
        output_dir: where the run goes (checkpoint with its run settings, TensorBoard logs, test metrics).
        epochs: number of epochs (default: train.json's).
    """
    import json
    import os

    from monai.bundle import ConfigWorkflow

    from .configs import config_path

    settings = {"output_dir": os.path.abspath(output_dir)}
    if epochs is not None:
        settings["epochs"] = int(epochs)
    print("training the demo; the same as:\n  " + bundle_command("training", str(config_path("train")), settings))
    workflow = ConfigWorkflow(
        config_file=str(config_path("train")),
        meta_file=str(config_path("metadata")),
        logging_file=str(config_path("logging.conf")),
        workflow_type="train",
        **settings,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    report = json.loads(RunLayout(settings["output_dir"]).metrics().read_text())["metrics"]
    scores = ", ".join(f"{k} {v:.3f}" for k, v in report.items() if isinstance(v, float))
    print(f"test split of the demo cohort: {scores}")
    print(f"next: axial-monai predict SCAN.nii.gz --model {output_dir} --explain")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``axial-monai`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    return COMMANDS.main(argv)


if __name__ == "__main__":
    sys.exit(main())
