"""Switch each proven mechanism off and show that its test fails: the evidence behind docs/testing.md's table.

For every mechanism of the table "mechanism | test | fails when" in ``docs/testing.md``: make a scratch copy of
the working tree (``git ls-files -co --exclude-standard``: tracked and untracked, not ignored), apply one small
textual edit that switches the mechanism off (an exact ``old -> new`` replacement in one file; ``old`` must occur
exactly once, so the script fails loudly when the code moves), and run only that mechanism's test(s) in the copy::

    PYTHONPATH=<copy> OMP_NUM_THREADS=1 python -m pytest -q -x -p no:cacheprovider <test ids>

A mechanism is proven when its test fails there. The failing assertion (the ``>`` source line and the first
``E`` lines of pytest's report) is recorded. A test that still passes with its mechanism switched off is a defect
of the test and is reported as such (``PASSES``), never hidden. The unmodified tests are not rerun here: the
normal suite shows that they pass.

Not part of CI: every mechanism retrains or re-registers (minutes each on 2 cores). Developer command (from the
repository root)::

    nice -n 10 python benchmarks/switch_off.py > switch_off.log 2>&1        # every mechanism
    python benchmarks/switch_off.py --only early_stopping --only cosine_lr  # some of them
    python benchmarks/switch_off.py --dry-run                               # only check that every edit applies

Writes ``benchmarks/results/switch_off.md`` (a table, then per mechanism the edit, the command and the failing
assertion) and ``switch_off.json`` beside it. A run with ``--only`` replaces only its own entries.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import ROOT, machine, write_result

#: pytest arguments of every run (the test ids follow)
PYTEST = ("-m", "pytest", "-q", "-x", "-p", "no:cacheprovider")
#: ``E`` lines of pytest's failure report kept per mechanism
ERROR_LINES = 3
#: longer ``E`` lines (reprs of whole arrays) are cut to this many characters
LINE_CHARS = 240
#: a run that takes longer than this is stopped and recorded as "error"
TIMEOUT_S = 3600


@dataclass(frozen=True)
class Mechanism:
    """A mechanism, the edit that switches it off and the test(s) that must then fail."""

    name: str
    what: str
    switched_off: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


_TRAINING = "tests/test_training.py::"
_PREPROCESS = "tests/test_preprocess_mechanisms.py::"
_CACHE = "tests/test_volume_cache.py::"

MECHANISMS = (
    Mechanism(
        name="early_stopping",
        what="early stopping fires (patience 1 ends training before max_epochs)",
        switched_off="the EarlyStopHandler is not among the validation handlers",
        file="bundle/configs/train.json",
        old='            "@validate#saver",\n            "@validate#early_stop"\n',
        new='            "@validate#saver"\n',
        tests=(_TRAINING + "test_early_stopping_ends_training_before_max_epochs",),
    ),
    Mechanism(
        name="cosine_lr",
        what="the LR follows the cosine formula epoch by epoch",
        switched_off="the LrScheduleHandler is removed from train#handlers",
        file="bundle/configs/train.json",
        old='            {"_target_": "LrScheduleHandler", "lr_scheduler": "@lr_scheduler", "print_lr": true},\n',
        new="",
        tests=(_TRAINING + "test_learning_rate_follows_the_cosine_formula_epoch_by_epoch",),
    ),
    Mechanism(
        name="best_checkpoint",
        what="model.pt holds the weights of the best-val_mcc epoch",
        switched_off=(
            "the saver keeps the last epoch: the best checkpoint goes to best.pt, model.pt is rewritten after "
            "every validation"
        ),
        file="bundle/configs/train.json",
        old='"save_key_metric": true, "key_metric_filename": "model.pt", "key_metric_greater_or_equal": true}',
        new=(
            '"save_key_metric": true, "key_metric_filename": "best.pt", "key_metric_greater_or_equal": true, '
            '"save_interval": 1, "interval_filename": "model.pt"}'
        ),
        tests=(_TRAINING + "test_checkpoint_holds_the_weights_of_the_best_validation_epoch",),
    ),
    Mechanism(
        name="seeded_training",
        what="two seeded CPU runs give identical weights, predictions and metrics",
        switched_off="set_determinism is removed from initialize",
        file="bundle/configs/train.json",
        old='"initialize": ["$monai.utils.set_determinism(seed=@seed)", ',
        new='"initialize": [',
        tests=(_TRAINING + "test_two_seeded_runs_give_identical_weights_and_predictions",),
    ),
    Mechanism(
        name="inference_equals_evaluation",
        what="inference gives the probabilities of the evaluation",
        switched_off="inference does not load the checkpoint (CheckpointLoader removed from its handlers)",
        file="bundle/configs/inference.json",
        old=(
            '        {"_target_": "CheckpointLoader", "load_path": "@ckpt_path", "load_dict": {"model": "@network"}, '
            '"map_location": "@device"},\n'
        ),
        new="",
        tests=("tests/test_bundle.py::test_inference_gives_the_probabilities_of_the_evaluation",),
    ),
    Mechanism(
        name="traced_equals_eager",
        what="the traced TorchScript export equals the eager network",
        switched_off=(
            "the export does not load the checkpoint (MONAI's ckpt_export loads it with ignite's "
            "Checkpoint.load_objects, made a no-op in the test process: the loading is MONAI's code, not this "
            "repository's)"
        ),
        file="tests/test_bundle.py",
        old='    ts = tmp_path / "model.ts"\n',
        new=(
            '    ts = tmp_path / "model.ts"\n'
            '    __import__("monai.bundle.scripts").bundle.scripts.Checkpoint.load_objects = lambda **kwargs: None\n'
        ),
        tests=("tests/test_bundle.py::test_verify_net_in_out_and_export",),
    ),
    Mechanism(
        name="n4",
        what="N4 removes a planted bias field",
        switched_off="N4 is skipped (the image goes to the registration uncorrected)",
        file="axial_monai/preprocess/pipeline.py",
        old='    moving = ants.n4_bias_field_correction(image, **(n4_kwargs or {})) if n4 else image.clone("float")\n',
        new='    moving = image.clone("float")\n',
        tests=(_PREPROCESS + "test_n4_removes_a_planted_bias_field",),
    ),
    Mechanism(
        name="preprocessing_seed",
        what="a seeded preprocessing rerun is identical (one ITK thread per worker)",
        switched_off="the workers do not get the seed (the pool initializer is given None)",
        file="axial_monai/preprocess/batch.py",
        old="        initargs=(threads, seed),\n",
        new="        initargs=(threads, None),\n",
        tests=(_PREPROCESS + "test_seeded_rerun_is_identical",),
    ),
    Mechanism(
        name="killed_worker",
        what='a killed worker leaves a "died" QC row and the other scans finish',
        switched_off=("the jobs in flight are not rerun alone after a crash: each of them is recorded as died at once"),
        file="axial_monai/preprocess/batch.py",
        old="        for job in lost:\n            done(_run_alone(job, threads, seed))\n",
        new='        for job in lost:\n            done(_crash_record(job, BrokenProcessPool("switched off")))\n',
        tests=(_PREPROCESS + "test_killed_worker_leaves_a_died_row_and_the_others_finish",),
    ),
    Mechanism(
        name="cache_decodes_once",
        what="the volume cache decodes each scan once (disk), whatever the number of epochs",
        switched_off="the dataset ignores its cache and decodes the scan on every access",
        file="axial_monai/data/volume_cache.py",
        old='        if self.cache == "none":\n            return super()._transform(index)\n',
        new="        if True:\n            return super()._transform(index)\n",
        tests=(_CACHE + "test_each_scan_is_decoded_once_and_restored_exactly",),
    ),
    Mechanism(
        name="cache_memory",
        what="the memory cache keeps the decoded scans in RAM",
        switched_off="the dataset ignores its cache and decodes the scan on every access",
        file="axial_monai/data/volume_cache.py",
        old='        if self.cache == "none":\n            return super()._transform(index)\n',
        new="        if True:\n            return super()._transform(index)\n",
        tests=(_CACHE + "test_memory_mode_caches_in_ram",),
    ),
    Mechanism(
        name="cache_reused",
        what="a second dataset (another run, another fold) on the same disk cache decodes nothing",
        switched_off="a stored entry is never found valid (every dataset decodes its scans again)",
        file="axial_monai/data/volume_cache.py",
        old="        if self.store is None:\n            return None\n        try:\n",
        new="        if True:\n            return None\n        try:\n",
        tests=(_CACHE + "test_second_dataset_on_the_same_cache_decodes_nothing",),
    ),
    Mechanism(
        name="cache_in_the_bundle",
        what="train.json's datasets decode each scan once, and a second run decodes nothing (disk cache)",
        switched_off="the dataset ignores its cache and decodes the scan on every access",
        file="axial_monai/data/volume_cache.py",
        old='        if self.cache == "none":\n            return super()._transform(index)\n',
        new="        if True:\n            return super()._transform(index)\n",
        tests=(_CACHE + "test_bundle_training_decodes_each_scan_once[disk]",),
    ),
    Mechanism(
        name="orientation",
        what="an LPS (or axis-permuted) copy of a scan gives the same tensor, slices and logits",
        switched_off="Orientationd is removed from load_volume",
        file="axial_monai/transforms/pipeline.py",
        old="                Orientationd(self.keys, axcodes=_AXCODES),\n",
        new="",
        tests=("tests/test_orientation.py::test_reoriented_copy_gives_the_same_tensor_slices_and_logits[LPS]",),
    ),
    Mechanism(
        name="shipped_early_stopping",
        what="the shipped settings let early stopping act (patience + 1 <= epochs / val_interval)",
        switched_off="early_stop_patience is 20 with 20 epochs (the old default)",
        file="bundle/configs/train.json",
        old='    "early_stop_patience": 10,\n',
        new='    "early_stop_patience": 20,\n',
        tests=(_TRAINING + "test_shipped_settings_let_early_stopping_act[train]",),
    ),
    Mechanism(
        name="metrics_positive",
        what="every metric equals its hand value for positive 0 and 1",
        switched_off="positive is ignored (class 1 is always the positive class of sensitivity and specificity)",
        file="axial_monai/metrics.py",
        old="    is_pos, pred_pos = labels == positive, pred == positive\n",
        new="    is_pos, pred_pos = labels == 1, pred == 1\n",
        tests=("tests/test_metrics.py::test_scores_match_hand_built_confusion_matrices",),
    ),
    Mechanism(
        name="auc_null",
        what="an AUC with one class present is null in metrics.json",
        switched_off="NaN is written as is (json_safe keeps NaN)",
        file="axial_monai/io.py",
        old="    if isinstance(value, float) and math.isnan(value):\n        return None\n",
        new="    if False:\n        return None\n",
        tests=("tests/test_metrics.py::test_auc_with_one_class_is_null_in_metrics_json",),
    ),
    Mechanism(
        name="duplicate_prediction",
        what="a scan predicted twice stops the run",
        switched_off="duplicates are dropped (the prediction writer keeps the first row of each file)",
        file="axial_monai/handlers/prediction_writer.py",
        old="        if repeated:\n",
        new='        df = df.drop_duplicates("file")\n        if False:\n',
        tests=("tests/test_metrics.py::test_a_scan_predicted_twice_stops_the_run",),
    ),
    Mechanism(
        name="duplicate_prediction_ddp",
        what="a scan predicted on two ranks (DDP, 2 CPU processes) stops the run",
        switched_off="duplicates are dropped (the prediction writer keeps the first row of each file)",
        file="axial_monai/handlers/prediction_writer.py",
        old="        if repeated:\n",
        new='        df = df.drop_duplicates("file")\n        if False:\n',
        tests=("tests/test_metrics.py::test_a_scan_predicted_on_two_ranks_stops_the_run",),
    ),
    Mechanism(
        name="num_scans",
        what="num_scans counts the scored predictions",
        switched_off="num_scans is len(dataset)",
        file="axial_monai/handlers/metrics_json.py",
        old="        num_scans = int(idist.all_reduce(self._count)) if idist.get_world_size() > 1 else self._count\n",
        new="        num_scans = len(engine.data_loader.dataset)\n",
        tests=("tests/test_metrics.py::test_num_scans_counts_the_scored_predictions_not_the_dataset",),
    ),
    Mechanism(
        name="crossval_settings_hash",
        what="a cross-validation rerun with changed settings is refused and overwrites nothing",
        switched_off="the settings hash does not tell settings apart (every run gets the same hash)",
        file="axial_monai/crossval/runner.py",
        old="    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()\n",
        new='    return "0" * 64\n',
        tests=("tests/test_crossval.py::test_rerun_with_changed_settings_is_refused_and_overwrites_nothing",),
    ),
    Mechanism(
        name="weights_only",
        what="a pickled payload in a checkpoint is refused and never runs",
        switched_off="weights_only=True is dropped from the one checkpoint reader (weights_only=False)",
        file="axial_monai/networks/checkpoints.py",
        old='        return torch.load(path, map_location="cpu", weights_only=True)\n',
        new='        return torch.load(path, map_location="cpu", weights_only=False)\n',
        tests=("tests/test_checkpoint_safety.py::test_run_settings_and_weights_refuse_a_pickled_payload",),
    ),
    Mechanism(
        name="resume_random_state",
        what="a killed training resumes to the same weights and metrics as an uninterrupted run",
        switched_off="the random states (torch, numpy, python, augmentation) are not part of the saved training state",
        file="bundle/configs/train.json",
        old=(
            '            "random": {"_target_": "axial_monai.handlers.RandomStates", '
            '"augmentation": "$@train#prepare_batch.augmentation"},\n'
        ),
        new="",
        tests=("tests/test_resume.py::test_killed_run_resumes_to_the_same_weights_and_metrics",),
    ),
    Mechanism(
        name="lps_preprocessing",
        what="an LPS copy is preprocessed like its RAS twin",
        switched_off="the image direction is dropped on reading (read_t1w sets the identity direction)",
        file="axial_monai/preprocess/pipeline.py",
        old='    image = ants.image_read(path, pixeltype="float")\n',
        new='    image = ants.image_read(path, pixeltype="float")\n    image.set_direction(np.eye(3))\n',
        tests=(_PREPROCESS + "test_lps_copy_is_preprocessed_like_its_ras_twin",),
    ),
    Mechanism(
        name="preprocessing_atomic_outputs",
        what="a worker killed while writing its output leaves nothing at the output path",
        switched_off="outputs are written in place instead of atomically (no temporary file + rename)",
        file="axial_monai/preprocess/batch.py",
        old=(
            '        with atomic_path(job.output, suffix=".nii.gz", clean_stale=True) as tmp:'
            "  # one worker per output\n"
            "            ants.image_write(brain, str(tmp))\n"
        ),
        new=(
            "        Path(job.output).parent.mkdir(parents=True, exist_ok=True)\n"
            "        ants.image_write(brain, job.output)\n"
        ),
        tests=(_PREPROCESS + "test_a_worker_killed_while_writing_leaves_nothing_at_the_output_path",),
    ),
    Mechanism(
        name="preprocessing_resume",
        what="preprocessing killed mid-scan resumes without redoing finished scans",
        switched_off="finished scans are not skipped (every scan is processed again)",
        file="axial_monai/preprocess/batch.py",
        old="    todo = [job for job in jobs if not _is_done(job)]\n",
        new="    todo = list(jobs)\n",
        tests=(_PREPROCESS + "test_preprocessing_killed_mid_scan_resumes_without_redoing_finished_scans",),
    ),
    Mechanism(
        name="offline",
        what="train, inference, explain and predict make no network call",
        switched_off='a download is attempted (train.json asks for the ImageNet weights: "pretrained": "imagenet")',
        file="bundle/configs/train.json",
        old='    "pretrained": "none",\n',
        new='    "pretrained": "imagenet",\n',
        tests=("tests/test_offline.py::test_train_infer_explain_and_predict_offline",),
    ),
    Mechanism(
        name="header_read_once",
        what="the start of training reads each header once (grid, item checks, the run's check), a changed file again",
        switched_off="load_header reads the file on every call (no cache)",
        file="axial_monai/input_check.py",
        old="    return _load_header(real, stat.st_size, stat.st_mtime_ns)\n",
        new="    return nib.load(real)\n",
        tests=("tests/test_input_check.py::test_each_header_is_read_once_until_the_file_changes",),
    ),
    Mechanism(
        name="cache_key_covers_every_setting",
        what="every setting of the cached loading chain is in its cache key",
        switched_off="the normalisation's lower percentile is left out of its cache_key()",
        file="axial_monai/transforms/intensity.py",
        old='"lower": float(self.lower), ',
        new="",
        tests=(_CACHE + "test_every_setting_of_the_cached_chain_changes_its_key",),
    ),
    Mechanism(
        name="uncacheable_transform_refused",
        what="a transform without cache_key() is not cached (its settings are unknown)",
        switched_off="cache_key describes such a transform by its class name",
        file="axial_monai/data/volume_cache.py",
        old='    raise SettingsError(\n        f"The cached transform',
        new='    return type(transform).__qualname__\n    raise SettingsError(\n        f"The cached transform',
        tests=(_CACHE + "test_a_transform_without_cache_key_is_not_cached",),
    ),
    Mechanism(
        name="bf16_evaluation_probabilities",
        what="a bf16 evaluation scores every test scan with probabilities, and its accuracy is theirs",
        switched_off="the evaluation's postprocessing leaves the logits (no softmax)",
        file="bundle/configs/train.json",
        old='"transforms": [{"_target_": "Activationsd", "keys": "pred", "softmax": true}]',
        new='"transforms": [{"_target_": "Activationsd", "keys": "pred", "softmax": false}]',
        tests=("tests/test_amp.py::test_bf16_training_through_the_bundle",),
    ),
    Mechanism(
        name="explanation_groups",
        what="the cohort maps of the correct and incorrect scans exist exactly for the groups that have scans",
        switched_off="correctly and wrongly classified scans swap groups",
        file="axial_monai/explain/accumulator.py",
        old='groups.append("correct" if result.label == result.prediction else "incorrect")',
        new='groups.append("incorrect" if result.label == result.prediction else "correct")',
        tests=("tests/test_explain_bundle.py::test_cohort_outputs",),
    ),
    Mechanism(
        name="bad_input_corpus_complete",
        what="every bad input built and every entry point of the bad-input corpus is in its table",
        switched_off="the inf-voxels case is left out of CASES (its builder stays)",
        file="tests/test_bad_inputs.py",
        old='    ("inf-voxels", inference, with_inf, "has 1 NaN or infinite voxels"),\n',
        new="",
        tests=("tests/test_bad_inputs.py::test_every_bad_input_and_entry_point_of_this_module_is_in_the_corpus",),
    ),
    Mechanism(
        name="qc_failures_left_out",
        what="datalists, cross-validations and the benchmark leave out the scans the QC gate failed",
        switched_off="drop_qc_failed keeps every scan",
        file="axial_monai/data/clinica.py",
        old="    if derivatives_dir is None or table.empty:\n",
        new="    if True:\n",
        tests=("tests/test_clinica.py::test_splittable_scans_leave_out_qc_failures_and_add_the_other_task",),
    ),
    Mechanism(
        name="one_message_for_bad_items",
        what="a refusal of bad training items lists the damaged voxel data of the others in the same message",
        switched_off="refuse_or_drop ignores the further problems it is given",
        file="axial_monai/errors.py",
        old="        listed = [*bad, *(more() if more is not None else ())]\n",
        new="        listed = list(bad)\n",
        tests=("tests/test_bad_inputs.py::test_training_refuses_bad_items_all_at_once_or_drops_them",),
    ),
    Mechanism(
        name="model_ts_normalises",
        what="model.ts takes raw intensities and normalises them as the loading chain does",
        switched_off="the export compiles the network without its normalisation",
        file="axial_monai/export/compiled.py",
        old="    module = network if normalizer is None else NormalizedInputNetwork(network, normalizer).eval()\n",
        new="    module = network\n",
        tests=("tests/test_export.py::test_the_compiled_model_is_the_eager_one_on_its_grid_and_refuses_any_other",),
    ),
    Mechanism(
        name="deploy_compiled_equals_eager",
        what="the deployed application refuses a compiled answer that is not the eager network's",
        switched_off="finish_study takes model.ts's probabilities unchecked",
        file="axial_monai/deploy/study.py",
        old="        if gap <= TOLERANCE:\n",
        new="        if True:\n",
        tests=("tests/test_deploy.py::test_a_compiled_model_that_is_not_the_eager_one_is_refused",),
    ),
    Mechanism(
        name="deploy_own_configs_only",
        what="the application refuses a model.ts whose configs (which the SDK evaluates) are not this installation's",
        switched_off="check_compiled_configs accepts any config",
        file="axial_monai/deploy/folder.py",
        old="    if carried != json.loads(json.dumps(deploy_config())):\n",
        new="    if False:\n",
        tests=("tests/test_deploy.py::test_a_model_ts_with_configs_of_its_own_is_refused",),
    ),
    Mechanism(
        name="deploy_explicit_model",
        what="the application runs its own model.ts, not a models/ folder of the working directory",
        switched_off="the application leaves the SDK's model path at its default (./models)",
        file="axial_monai/deploy/app.py",
        old='        self.sdk_argv = [sys.argv[0], *(argv or []), "--model", str(self.model)]\n',
        new="        self.sdk_argv = [sys.argv[0], *(argv or [])]\n",
        tests=("tests/test_deploy.py::test_an_on_grid_series_gets_the_probabilities_of_predict",),
    ),
    Mechanism(
        name="brain_mask_cache",
        what="deepbet's brain mask is extracted once per content (voxels, affine, deepbet)",
        switched_off="the cached mask is never read (every call extracts the brain again)",
        file="axial_monai/preprocess/fast.py",
        old='            if tuple(stored["shape"]) == shape:\n',
        new="            if False:\n",
        tests=("tests/test_preprocess_fast.py::test_brain_masks_are_kept_by_content",),
    ),
)
BY_NAME = {m.name: m for m in MECHANISMS}

#: rows of docs/testing.md's table that are not switched off here, and why
NOT_HERE = {
    "every bad input of the corpus gets its one-line message (test_bad_inputs.py::test_bad_input, 33 cases)": (
        "each case has its own check: switching them off is 33 edits, one per case, not one mechanism"
    )
}

#: what earlier runs of this script found, shown with the mechanism's result
NOTES = {
    "preprocessing_atomic_outputs": (
        "The first run of this script switched this off against "
        "`test_preprocessing_killed_mid_scan_resumes_without_redoing_finished_scans`, which docs/testing.md named "
        "for it, and that test PASSED: it kills the run while a scan is being registered, not while its output is "
        "written, and a scan counts as done only by its QC record, written after the output, so with in-place "
        "writes the killed scan is still redone (that test proves the resume: see preprocessing_resume). The test "
        "named above kills a worker halfway through its write instead."
    ),
    "seeded_training": (
        "The first run of this script found this test PASSING with `set_determinism` removed: the test's two runs "
        "ran in one process, and building a MONAI `DataLoader` resets torch's default generator to its initial "
        "seed (`monai/data/dataloader.py`), so the network, built after the loaders, got the same initial weights "
        "in both runs, seeded or not. The test now starts each run from other global random states (torch, numpy, "
        "python), as two processes would; the result below is with that fix."
    ),
}


def _source_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return [f for f in listed.stdout.splitlines() if (ROOT / f).is_file()]


def _scratch_copy(work: Path) -> Path:
    """A copy of the working tree (tracked and untracked files, not ignored ones) in ``work``."""
    for rel in _source_files():
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    return work


def switch_off(root: Path, mechanism: Mechanism) -> None:
    """Apply the mechanism's edit to the tree at ``root``; ``old`` must occur exactly once in the file."""
    path = root / mechanism.file
    text = path.read_text()
    found = text.count(mechanism.old)
    if found != 1:
        raise RuntimeError(
            f"{mechanism.name}: the text to switch off occurs {found} times in {mechanism.file}, expected once "
            f"(the code moved: update MECHANISMS in benchmarks/switch_off.py):\n{mechanism.old}"
        )
    path.write_text(text.replace(mechanism.old, mechanism.new))


def _scrub(line: str, copy: Path) -> str:
    """A report line without machine paths: the copy's root becomes ``.``, the home folder ``~``, a temporary path
    ``<tmp>/<name>``."""
    line = line.replace(str(copy) + os.sep, "").replace(str(copy), ".").replace(str(Path.home()), "~")
    line = re.sub(r"(?:/tmp|/var/tmp)/[^\s'\",)\]]*/([^\s'\",)\]/]+)", r"<tmp>/\1", line)
    return re.sub(r" at 0x[0-9a-f]+", " at 0x...", line)  # object addresses differ from run to run


def _cut(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 5] + " ..."


def _failure(output: str) -> dict:
    """The failing test, the failing source line (``>``) and the first ``E`` lines of a pytest report."""
    lines = output.splitlines()
    failed = [line.removeprefix("FAILED ").split(" - ")[0] for line in lines if line.startswith("FAILED ")]
    errors = [line for line in lines if line.startswith("E ")]
    first_e = next((i for i, line in enumerate(lines) if line.startswith("E ")), len(lines))
    source = [line for line in lines[:first_e] if line.startswith(">")]
    return {
        "failed_test": failed[0] if failed else None,
        "assertion": source[-1][1:].strip() if source else None,
        "errors": [_cut(line) for line in errors[:ERROR_LINES]],
    }


def run_one(mechanism: Mechanism, parent: Path) -> dict:
    """Copy the tree, switch the mechanism off, run its tests; the outcome and the failing assertion."""
    copy = _scratch_copy(parent / mechanism.name)
    switch_off(copy, mechanism)
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, *PYTEST, *mechanism.tests],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        returncode, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        returncode, output = None, f"timed out after {TIMEOUT_S} s\n{err.stdout or ''}"
    seconds = time.perf_counter() - start
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    # pytest: 0 all passed, 1 a test failed (or a fixture raised: "error", which is no evidence, nor is any other
    # status, e.g. nothing collected)
    failed = returncode == 1 and bool(summary) and re.search(r"\d+ failed", summary[-1]) is not None
    outcome = "PASSES" if returncode == 0 else "fails" if failed else "error"
    result = {
        **{k: v for k, v in asdict(mechanism).items() if k != "tests"},
        "tests": list(mechanism.tests),
        "command": "PYTHONPATH=<copy> OMP_NUM_THREADS=1 python " + " ".join([*PYTEST, *mechanism.tests]),
        "returncode": returncode,
        "outcome": outcome,
        "pytest_summary": _scrub(summary[-1], copy) if summary else None,
        "seconds": round(seconds, 1),
        **_failure(output),
    }
    result["errors"] = [_scrub(line, copy) for line in result["errors"]]
    if result["assertion"] is not None:
        result["assertion"] = _scrub(result["assertion"], copy)
    if outcome == "error":
        result["output_tail"] = [_scrub(line, copy) for line in output.splitlines()[-30:]]
    return result


def _cell(text: str | None) -> str:
    return "" if not text else text.replace("|", "\\|").replace("\n", " ")


def _edit_lines(mechanism: dict) -> str:
    old = ["- " + line for line in mechanism["old"].rstrip("\n").splitlines()]
    new = ["+ " + line for line in mechanism["new"].rstrip("\n").splitlines()] if mechanism["new"] else []
    return "\n".join(old + new)


def markdown(report: dict) -> str:
    """The report as markdown: a table, then per mechanism the edit, the command and the failing assertion."""
    entries = [report["mechanisms"][m.name] for m in MECHANISMS if m.name in report["mechanisms"]]
    lines = [
        "# Mechanisms switched off: their tests fail",
        "",
        "Each mechanism of the table in `docs/testing.md` was switched off by one textual edit in a scratch copy of",
        "the working tree, and only its test was run there (`python -m pytest -q -x -p no:cacheprovider <test>`,",
        "`PYTHONPATH=<copy>`, `OMP_NUM_THREADS=1`). *fails* is the expected outcome: the test notices. A test that",
        "*PASSES* with its mechanism switched off would be a defect of that test.",
        "",
        f"Command: `{report['command']}` (one mechanism: `--only NAME`). Machine: {report['machine_text']}. "
        f"The {len(entries)} test runs took {sum(e['seconds'] for e in entries) / 60:.0f} minutes in all.",
        "",
        "| mechanism | switched off by | file | test | outcome | failing assertion |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        tests = ", ".join(f"`{t.split('::', 1)[-1]}`" for t in e["tests"])
        first_error = e["errors"][0].removeprefix("E").strip() if e["errors"] else ""
        assertion = f"`{e['assertion']}`" if e["assertion"] else ""
        shown = f"{assertion}: `{first_error}`" if assertion and first_error else assertion or f"`{first_error}`"
        outcome = "**PASSES (defect)**" if e["outcome"] == "PASSES" else e["outcome"]
        lines.append(
            f"| {_cell(e['what'])} | {_cell(e['switched_off'])} | `{e['file']}` | {tests} | {outcome} | "
            f"{_cell(shown) if e['outcome'] == 'fails' else ''} |"
        )
    lines += ["", "Not switched off here: " + "; ".join(f"{row}: {why}" for row, why in NOT_HERE.items()) + "."]
    defects = [e["name"] for e in entries if e["outcome"] != "fails"]
    if defects:
        lines += ["", f"**Not proven:** {', '.join(defects)} (see below)."]
    for e in entries:
        lines += [
            "",
            f"## {e['name']}: {e['outcome']}",
            "",
            f"{e['what']}. Switched off: {e['switched_off']}. Edit of `{e['file']}`:",
            "",
            "```diff",
            _edit_lines(e),
            "```",
            "",
            f"Command (in the copy): `{e['command']}` -> exit status {e['returncode']}, "
            f"`{e['pytest_summary']}`, {e['seconds']:.0f} s.",
            "",
            *([NOTES[e["name"]], ""] if e["name"] in NOTES else []),
            "```",
            *([f"FAILED {e['failed_test']}"] if e["failed_test"] else []),
            *([f">   {e['assertion']}"] if e["assertion"] else []),
            *[_cut(line) for line in e["errors"]],
            *e.get("output_tail", []),
            "```",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=list(BY_NAME), help="mechanism(s) to run (default: all)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "switch_off.md"))
    parser.add_argument("--dry-run", action="store_true", help="only check that every edit applies to this tree")
    parser.add_argument("--render", action="store_true", help="only write the markdown again from the JSON")
    args = parser.parse_args()
    names = args.only or list(BY_NAME)

    if args.dry_run:
        with tempfile.TemporaryDirectory(prefix="axial-switch-off-") as parent:
            for name in names:
                switch_off(_scratch_copy(Path(parent) / name), BY_NAME[name])
                print(f"{name}: the edit of {BY_NAME[name].file} applies")
        return

    out_md = Path(args.out)
    out_json = out_md.with_suffix(".json")
    if args.render:
        out_md.write_text(markdown(json.loads(out_json.read_text())))
        return
    report = json.loads(out_json.read_text()) if out_json.is_file() else {"mechanisms": {}}
    info = machine()
    report.update(
        command="nice -n 10 python benchmarks/switch_off.py",
        machine=info,
        machine_text=f"{info['cpu_count']} CPU cores, python {info['python']}, torch {info['torch']}",
        date=time.strftime("%Y-%m-%d", time.gmtime()),
    )
    with tempfile.TemporaryDirectory(prefix="axial-switch-off-") as parent:
        for name in names:
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {BY_NAME[name].switched_off}", flush=True)
            result = run_one(BY_NAME[name], Path(parent))
            report["mechanisms"][name] = result
            shown = result["errors"][0] if result["errors"] else result["pytest_summary"]
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {result['outcome']} ({result['seconds']:.0f} s) {shown}")
            if result["outcome"] != "fails":
                print(f"!!! {name}: the test does not fail with the mechanism switched off ({result['outcome']})")
            write_result(report, out_json)
            out_md.write_text(markdown(report))
            shutil.rmtree(Path(parent) / name, ignore_errors=True)
    print(f"{'mechanism':<30}{'outcome':<8}")
    for name, result in report["mechanisms"].items():
        print(f"{name:<30}{result['outcome']:<8}")
    sys.exit(0 if all(r["outcome"] == "fails" for r in report["mechanisms"].values()) else 1)


if __name__ == "__main__":
    main()
