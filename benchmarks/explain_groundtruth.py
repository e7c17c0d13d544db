"""Benchmark: do the explanations point at the planted atrophy? A matrix over seeds, regions, atrophy models, methods.

For each cell (seed x region set x atrophy model) one model is trained through the bundle's ``train.json`` on a
demo cohort whose AD-like subjects carry atrophy in the region set; then every explanation method is run with
``axial_monai.explain.explain_scan`` (the function behind ``explain.json``) on the held-out AD-like subjects
(validation + test splits: never trained on; validation only chose the checkpoint) and scored against their
planted masks, over the brain voxels the network reads:

* ``pointing_game``: the map's maximum lies in the mask (tie-aware), mean over subjects;
* ``mass_ratio``: share of the map's mass in the mask / the mask's share of the voxels (1 = chance);
* ``auprc`` (``sklearn.metrics.average_precision_score``, voxels as samples) and ``prevalence`` (chance level);
* ``best_rank``: rank of the best planted region among atlas regions, by mean relevance of the mean map over the
  held-out AD-like subjects (``best_rank_mass``: by relevance mass, which favours large regions); ``top_regions``:
  the three regions ranked first (by mean), to see what outranks a planted region;
* ``rand_spearman``: Spearman correlation, per subject, between the map of the trained network and the map after
  cascading randomisation of all its blocks from the head down (Adebayo et al. 2018), mean over the first
  ``--cascade-subjects`` subjects; ``rand_spearman_max``: the largest value over the cascade's stages;
* ``test_accuracy``, ``test_auc`` of the model on the test split.

The methods are scored with the Gaussian anti-aliasing (``antialias=True``, the default before 0.2.3) under their
own names; ``--raw-methods`` are also scored without anti-aliasing (``<method>_raw``) and ``--normalized-methods``
with ``antialias="normalized"`` (``<method>_normalized``: the default of ``explain.json`` since 0.2.3), on the same
trained model; ``--controls-ig`` adds ``integrated_gradients_controls``: Integrated Gradients from the mean control
scan of the training split (``control_mean.nii.gz`` in the training's folder), positive part, normalised
anti-aliasing. A training already in ``--work`` is reused, so new maps can be scored on kept models.

Outputs (``--out``, default ``benchmarks/results/explain_groundtruth``): ``cells.csv`` (one row per cell x method;
finished cells are skipped on a rerun, so an interrupted run resumes), ``summary.md`` (mean +- sd over seeds) and
``summary.json``; with ``--detection``, ``detection.csv`` and ``detection.png``: test AUC against atrophy strength
for the bundle's default training configuration (``train.json`` as shipped, 2 mm demo cohort of 80 subjects).
With ``--ci``, the ground-truth test ``tests/test_explain_groundtruth.py`` itself runs once per seed (its
configuration is the ``ci`` section of ``benchmarks/explain_groundtruth.json``) and ``ci.csv`` records its verdict
and measured values, the configuration (``config``), and whether each row, old ones included, passes the thresholds
in the JSON today (``passes_current_thresholds``).

    nice -n 10 python benchmarks/explain_groundtruth.py --seeds 0,1,2,3,4 > gt.log 2>&1 &     # the matrix
    nice -n 10 python benchmarks/explain_groundtruth.py --ci --seeds 0,1,2,3,4                 # the CI test, 5 seeds
    python benchmarks/explain_groundtruth.py --detection --detection-seeds 0,1,2 --skip-matrix  # detection curve

The regions only parameterise the cohort: the code under test never sees them.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE = ROOT / "benchmarks" / "explain_groundtruth.json"
CONFIG = json.loads(CONFIG_FILE.read_text())
#: train.json's optimizer (its ``fused`` flag is part of the ``ci.csv`` configuration since 0.3.3)
CONFIG_TRAIN_OPTIMIZER = json.loads((ROOT / "bundle" / "configs" / "train.json").read_text())["optimizer"]
ALL_METHODS = (
    "attention",
    "gradcam",
    "gradcampp",
    "attention_cam",
    "gradient",
    "smoothgrad",
    "integrated_gradients",
    "occlusion",
    "attention_gradient",
    "attention_smoothgrad",
    "attention_integrated_gradients",
    "attention_occlusion",
)
#: one training (a cell of the matrix); KEY adds the method
TRAINING = ["seed", "region_set", "atrophy"]
KEY = [*TRAINING, "method"]
METRICS = ["pointing_game", "mass_ratio", "auprc", "prevalence", "auprc_ratio", "best_rank", "best_rank_mass",
           "rand_spearman", "rand_spearman_max", "test_accuracy", "test_auc"]  # fmt: skip
#: the issue's goals for the best method (mean over seeds and region sets)
#: test AUC from which a training counts as having learned the planted atrophy (the second summary table)
LEARNED_AUC = 0.9
GOALS = {"pointing_game": 0.8, "rank1_share": 0.9, "mass_ratio": 5.0, "auprc_ratio": 3.0, "rand_spearman": 0.2}


def _workflow(configs: list[str], workflow_type: str, **override):
    from monai.bundle import ConfigWorkflow

    from axial_monai.configs import config_path

    files = [str(config_path(c)) for c in configs]
    wf = ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(config_path("metadata")),
        logging_file=str(config_path("logging.conf")),
        workflow_type=workflow_type,
        **override,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf


def _network(run_dir: Path, device: str):
    """The trained network of the cell, built from the run settings saved with its checkpoint (eval mode)."""
    from axial_monai.run import load_run_settings, load_weights

    ckpt = run_dir / "models" / "model.pt"
    net = load_run_settings(ckpt).build_network()
    net.load_state_dict(load_weights(ckpt))
    return net.to(device).eval()


def run_cell(task: dict) -> list[dict]:
    """Train one model and score every method on its held-out AD-like subjects; one row per method."""
    import nibabel as nib
    import torch

    from axial_monai.data.demo import prepare_demo_cohort
    from axial_monai.explain import (
        ExplainSettings,
        auprc,
        best_region_rank,
        cascading_randomization,
        explain_scan,
        map_spearman,
        mean_scan,
        pointing_game,
        randomization_stages,
        read_mask,
        region_ranking,
        relevance_mass_ratio,
    )
    from axial_monai.run import RunSettings
    from axial_monai.transforms import load_volume

    torch.set_num_threads(task["threads"])
    seed, region_set, atrophy = task["seed"], task["region_set"], task["atrophy"]
    regions = CONFIG["region_sets"][region_set]
    work = Path(task["work"]) / f"{region_set}-{atrophy}-{seed}"
    start = time.perf_counter()
    cohort = Path(
        prepare_demo_cohort(
            str(Path(task["work"]) / "cohorts"),
            regions=regions,
            strength=CONFIG["strength"][atrophy],
            atrophy=atrophy,
            seed=seed,
            **{**CONFIG["cohort"], **task["profile"].get("cohort", {})},
        )
    )
    device = task["device"]
    if not (work / "eval-test" / "metrics.json").is_file():  # a finished training in --work is reused
        _workflow(
            ["train"], "train", dataset_dir=str(cohort), output_dir=str(work), seed=seed,
            device=f"$torch.device('{device}')",
            **{**CONFIG["train"], **task["profile"].get("train", {}),
               **({"epochs": task["epochs"]} if task["epochs"] else {})},
        )  # fmt: skip
    train_s = time.perf_counter() - start
    test = json.loads((work / "eval-test" / "metrics.json").read_text())["metrics"]
    net = _network(work, device)

    datalist = json.loads((cohort / "datalist.json").read_text())
    ad = [i for i in datalist["validation"] + datalist["test"] if i["label"] == 1][: task["ad_subjects"]]
    labels = np.asarray(nib.load(cohort / "atlas.nii.gz").dataobj).astype(np.int64)
    names = pd.read_csv(cohort / "atlas_labels.csv").set_index("index")["name"].to_dict()
    brain = np.asarray(nib.load(cohort / "template.nii.gz").dataobj) > 0
    # occlusion costs hundreds of forward passes per scan: it is run on the first `occlusion_subjects` subjects;
    # the methods keep the Gaussian anti-aliasing under their own names (as in every earlier cells.csv);
    # `raw_methods` are also scored without anti-aliasing, as `<method>_raw`, and `normalized_methods` with the
    # normalised anti-aliasing (the product's default), as `<method>_normalized`
    cheap = [m for m in task["methods"] if "occlusion" not in m]
    common = {"batch_size": task["batch_size"], "seed": seed}
    # the matrix's `integrated_gradients` (and occlusion) keep the zeros baseline and magnitude of every earlier
    # cells.csv; Integrated Gradients from the mean control scan is `integrated_gradients_controls`
    zeros = {"ig_baseline": "zeros", "ig_sign": "absolute", "occlusion_baseline": "zeros"}
    gaussian = {**common, **zeros, "antialias": True}
    settings = {
        True: ExplainSettings(methods=task["methods"], **gaussian),
        False: ExplainSettings(methods=cheap or ["attention"], **gaussian),
    }
    variants = {
        suffix: ExplainSettings(methods=task[f"{suffix}_methods"], antialias=mode, **common, **zeros)
        for suffix, mode in (("raw", False), ("normalized", "normalized"))
        if task.get(f"{suffix}_methods")
    }
    loader = load_volume()
    if task.get("controls_ig"):  # the product's default: IG from the mean control scan of the training split
        # the one the checkpoint carries (training stores it since 0.2.5); else the mean of all training controls
        baseline = RunSettings.load(work).control_mean
        if baseline is None:
            baseline = work / "control_mean.nii.gz"
            if not baseline.is_file():
                controls = [cohort / i["image"] for i in datalist["training"] if i["label"] == 0]
                mean_scan(controls, loader, baseline)
        variants["controls"] = ExplainSettings(
            methods=["integrated_gradients"], antialias="normalized", control_mean=baseline, **common
        )
    names_all = list(task["methods"]) + [f"{m}_{s}" for s, v in variants.items() for m in v.methods]

    def maps_of(network, image, full: bool) -> dict[str, np.ndarray]:
        maps = dict(explain_scan(network, image, settings[full], label=1).maps)
        for suffix, variant in variants.items():
            maps.update({f"{m}_{suffix}": v for m, v in explain_scan(network, image, variant, label=1).maps.items()})
        return maps

    scores = {m: {k: [] for k in ("pointing_game", "mass_ratio", "auprc", "prevalence")} for m in names_all}
    sums, counts = {}, {}
    kept = []  # (image, support, maps, with occlusion) of the subjects used for the randomisation check
    start = time.perf_counter()
    for n, item in enumerate(ad):
        image = loader({"image": str(cohort / item["image"])})["image"]
        mask = np.asarray(nib.load(cohort / item["atrophy_mask"]).dataobj) > 0
        full = n < task["occlusion_subjects"]
        support = read_mask(net, image.shape[1:]) & (image[0].numpy() != 0)
        maps = maps_of(net, image, full)
        for method, volume in maps.items():
            if method not in scores:
                continue
            s = scores[method]
            s["pointing_game"].append(pointing_game(volume, mask, support))
            s["mass_ratio"].append(relevance_mass_ratio(volume, mask, support))
            ap, prevalence = auprc(volume, mask, support)
            s["auprc"].append(ap)
            s["prevalence"].append(prevalence)
            sums[method] = volume.astype(np.float64) + sums.get(method, 0.0)
            counts[method] = counts.get(method, 0) + 1
        if n < task["cascade_subjects"]:
            kept.append((image, support, maps, full and n < task["occlusion_cascade_subjects"]))
    explain_s = time.perf_counter() - start

    # randomisation: the head, the attention, the middle of the cascade and the fully randomised network
    stage_names = randomization_stages(net)
    evaluated = sorted({0, 1, len(stage_names) // 2, len(stage_names) - 1})
    rand = {m: [] for m in names_all}  # per evaluated stage: mean Spearman over the kept subjects
    for step, (_, randomized) in enumerate(cascading_randomization(net, seed=seed)):
        if step not in evaluated:
            continue
        per_method = {m: [] for m in names_all}
        for image, support, maps, full in kept:
            randomized_maps = maps_of(randomized, image, full)
            for method in names_all:
                if method in maps and method in randomized_maps:
                    per_method[method].append(map_spearman(maps[method], randomized_maps[method], support))
        for method in names_all:
            values = per_method[method]
            rand[method].append(float(np.nanmean(values)) if values else float("nan"))

    reference = read_mask(net, brain.shape) & brain
    rows = []
    for method in names_all:
        mean_map = sums[method] / counts[method]
        s = {k: float(np.nanmean(v)) for k, v in scores[method].items()}
        by_mean = region_ranking(mean_map, labels, names, reference, "mean")
        rows.append(
            {
                "seed": seed,
                "region_set": region_set,
                "atrophy": atrophy,
                "method": method,
                "strength": CONFIG["strength"][atrophy],
                "n_ad": counts[method],
                **s,
                "auprc_ratio": s["auprc"] / s["prevalence"] if s["prevalence"] > 0 else float("nan"),
                "best_rank": best_region_rank(by_mean, regions),
                "top_regions": ";".join(by_mean["name"].head(3)),
                "best_rank_mass": best_region_rank(region_ranking(mean_map, labels, names, reference, "mass"), regions),
                "rand_spearman": rand[method][-1],
                "rand_spearman_max": float(np.nanmax(rand[method])),
                "rand_stages": json.dumps({stage_names[i]: round(r, 4) for i, r in zip(evaluated, rand[method])}),
                "test_accuracy": test["accuracy"],
                "test_auc": test["auc"],
                "train_s": round(train_s, 1),
                "explain_s": round(explain_s, 1),
                "device": device,
                "profile": task["profile_name"],
            }
        )
    return rows


def run_detection(task: dict) -> list[dict]:
    """Test AUC of one training at one atrophy strength.

    ``detection_config`` ``"bundle"``: ``train.json`` as shipped on a default demo cohort (80 subjects, 2 mm);
    ``"benchmark"``: the cohort and training of the matrix (``benchmarks/explain_groundtruth.json``).
    """
    import torch

    from axial_monai.data.demo import prepare_demo_cohort

    torch.set_num_threads(task["threads"])
    bundle = task["detection_config"] == "bundle"
    cohort_args = {} if bundle else dict(CONFIG["cohort"])
    train_args = {"num_workers": 0} if bundle else dict(CONFIG["train"])
    if task.get("detection_subjects"):
        cohort_args["n_subjects"] = task["detection_subjects"]
    if task["epochs"]:
        train_args["epochs"] = task["epochs"]
    cohort = prepare_demo_cohort(
        str(Path(task["work"]) / "cohorts"),
        strength=task["strength"],
        atrophy=task["atrophy"],
        seed=task["seed"],
        **cohort_args,
    )
    out = (
        Path(task["work"]) / f"detection-{task['detection_config']}-{task['atrophy']}-{task['strength']}-{task['seed']}"
    )
    start = time.perf_counter()
    if not (out / "eval-test" / "metrics.json").is_file():
        _workflow(
            ["train"], "train", dataset_dir=cohort, output_dir=str(out), seed=task["seed"],
            device=f"$torch.device('{task['device']}')", **train_args,
        )  # fmt: skip
    test = json.loads((out / "eval-test" / "metrics.json").read_text())["metrics"]
    return [
        {
            "seed": task["seed"],
            "config": task["detection_config"],
            "atrophy": task["atrophy"],
            "strength": task["strength"],
            "test_auc": test["auc"],
            "test_accuracy": test["accuracy"],
            "train_s": round(time.perf_counter() - start, 1),
            "device": task["device"],
        }
    ]


def run_ci(seed: int, report: Path, python: str) -> dict:
    """Run tests/test_explain_groundtruth.py with ``AXIAL_GT_SEED=seed``; its verdict and measured values."""
    env = {**os.environ, "AXIAL_GT_SEED": str(seed), "AXIAL_GT_REPORT": str(report), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_explain_groundtruth.py"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    measured = json.loads(report.read_text()) if report.is_file() else {}
    # the shared bundle's default (Integrated Gradients from the template) as template_<score> columns
    measured.update({f"template_{k}": v for k, v in measured.pop("template_baseline", {}).items()})
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return {
        "seed": seed,
        "passed": proc.returncode == 0,
        "pytest": tail,
        "wall_s": round(time.perf_counter() - start),
        **measured,
    }


def ci_config() -> str:
    """Short description of the ``ci`` section's cohort and training (the ``config`` column of ``ci.csv``)."""
    ci = CONFIG["ci"]
    cohort, train = {**CONFIG["cohort"], **ci.get("cohort", {})}, {**CONFIG["train"], **ci.get("train", {})}
    patience = train.get("early_stop_patience")
    stop = "no early stop" if patience is not None and patience >= train["epochs"] else f"patience {patience}"
    antialias = json.loads((ROOT / "bundle" / "configs" / "explain.json").read_text())["antialias"]
    smoothing = "" if antialias is True else f", antialias {antialias}"  # rows before 0.2.3: Gaussian
    slices = f", {train['num_slices']} slices" if train["num_slices"] != 24 else ""  # rows before 0.3.3: 24
    fused = ", fused AdamW" if CONFIG_TRAIN_OPTIMIZER.get("fused") else ""  # rows before 0.3.3: per-tensor AdamW
    return f"{cohort['n_subjects']} subjects, {train['epochs']} epochs{slices}, {stop}{smoothing}{fused}"


def ci_verdicts(frame: pd.DataFrame) -> pd.Series:
    """Whether each ``ci.csv`` row passes today's thresholds (rows keep the verdict of their own time in ``passed``).

    The same checks as ``tests/test_explain_groundtruth.py``: held-out AUC, at least 8 AD-like subjects, and the
    five map checks.
    """
    t = CONFIG["ci"]["thresholds"]

    def maps(prefix: str) -> pd.Series:
        return (
            (frame[f"{prefix}pointing_game"] >= t["pointing_game"])
            & (frame[f"{prefix}mass_ratio"] >= t["mass_ratio"])
            & (frame[f"{prefix}auprc_over_prevalence"] >= t["auprc_over_prevalence"])
            & (frame[f"{prefix}best_rank"] <= t["best_rank"])
            & (frame[f"{prefix}rand_spearman"] < t["rand_spearman"])
        )

    verdict = (frame["heldout_auc"] >= t["heldout_auc"]) & (frame["n_ad"] >= 8) & maps("")
    if "template_pointing_game" in frame:  # rows since 0.3.0 also check the shared bundle's default map
        verdict &= maps("template_") | frame["template_pointing_game"].isna()
    return verdict


def _dispatch(task: dict) -> list[dict]:
    logging.basicConfig(level=logging.WARNING)
    return run_detection(task) if task["kind"] == "detection" else run_cell(task)


def _locked(path: Path) -> FileLock:
    """A lock on the CSV at ``path``: several benchmark processes (e.g. one per torch) may write it."""
    return FileLock(f"{path}.lock")


def _append(path: Path, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    if path.is_file():
        frame = pd.concat([pd.read_csv(path), frame], ignore_index=True)
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _mean_sd(values: pd.Series, digits: int = 2) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _method_table(cells: pd.DataFrame, title: str) -> tuple[list[str], dict, str | None]:
    """The per-method table over ``cells`` with the goal checks; returns its lines, the summary and the best method.

    Only methods scored on every training of ``cells`` compete for best: a method scored on a subset (e.g. a variant
    added later) is compared on equal terms in the paired table of :func:`summarize`.
    """
    lines, summary = [title + "\n"], {}
    trainings = cells.groupby(TRAINING).ngroups
    lines.append(
        "| method | cells (seeds) | pointing game | planted region ranked 1st | mass ratio | AUPRC / prevalence "
        "| rand. Spearman (full cascade) | max over cascade | goals met |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    per_method = []
    for method, part in cells.groupby("method", sort=False):
        rank1 = float((part["best_rank"] == 1).mean())
        checks = {
            "pointing_game": part["pointing_game"].mean() >= GOALS["pointing_game"],
            "rank1_share": rank1 >= GOALS["rank1_share"],
            "mass_ratio": part["mass_ratio"].mean() >= GOALS["mass_ratio"],
            "auprc_ratio": part["auprc_ratio"].mean() >= GOALS["auprc_ratio"],
            "rand_spearman": part["rand_spearman"].mean() < GOALS["rand_spearman"],
        }
        missed = [k for k, ok in checks.items() if not ok]
        verdict = "all" if not missed else "misses " + ", ".join(missed)
        summary[method] = {
            "cells": int(len(part)),
            "seeds": int(part["seed"].nunique()),
            "pointing_game": float(part["pointing_game"].mean()),
            "rank1_share": rank1,
            "mass_ratio": float(part["mass_ratio"].mean()),
            "auprc_ratio": float(part["auprc_ratio"].mean()),
            "rand_spearman": float(part["rand_spearman"].mean()),
            "missed_goals": missed,
        }
        if part.groupby(TRAINING).ngroups == trainings:
            per_method.append((len(missed), _shortfall(summary[method]), -part["pointing_game"].mean(), method))
        lines.append(
            f"| {method} | {len(part)} ({part['seed'].nunique()}) | {_mean_sd(part['pointing_game'])} | {rank1:.0%} "
            f"| {_mean_sd(part['mass_ratio'], 1)} | {_mean_sd(part['auprc_ratio'], 1)} "
            f"| {_mean_sd(part['rand_spearman'])} "
            f"| {_mean_sd(part['rand_spearman_max'])} | {verdict} |"
        )
    return lines, summary, (sorted(per_method)[0][-1] if per_method else None)


def _shortfall(scores: dict) -> float:
    """How far a method falls short of the goals: the sum of its relative shortfalls (0 when it meets them all)."""
    total = 0.0
    for key, goal in GOALS.items():
        if key == "rand_spearman":  # an upper bound, on a correlation: shortfall in absolute terms
            total += max(0.0, scores[key] - goal)
        else:
            total += max(0.0, (goal - scores[key]) / goal)
    return total


def summarize(cells: pd.DataFrame) -> tuple[str, dict]:
    """Markdown tables (per method over all cells, over the learned cells, then per cell) and the goal checks."""
    devices = "; ".join(
        f"{device}: seeds {sorted(int(s) for s in part['seed'].unique())}" for device, part in cells.groupby("device")
    )
    lines = [f"Cells computed on {devices}.\n"]
    table, methods, best = _method_table(
        cells, "## Per method: mean ± sd over seeds, region sets and atrophy models (held-out AD-like subjects)"
    )
    lines += table
    summary = {"goals": GOALS, "methods": methods, "best_method": best}
    lines.append(
        f"\nGoals: pointing game ≥ {GOALS['pointing_game']}, planted region ranked first in ≥ "
        f"{GOALS['rank1_share']:.0%} of runs, mass ratio ≥ {GOALS['mass_ratio']}, AUPRC ≥ {GOALS['auprc_ratio']} × "
        f"prevalence, randomisation Spearman < {GOALS['rand_spearman']}. Best method (fewest missed goals, then "
        f"the smallest sum of relative shortfalls from the goals, then pointing game, among the methods scored on "
        f"every training): **{best}**.\n"
    )
    learned = cells[cells["test_auc"] >= LEARNED_AUC]
    n_cells = cells.groupby(TRAINING).ngroups
    n_learned = learned.groupby(TRAINING).ngroups
    table, methods, best = _method_table(
        learned,
        f"## Per method, only the trainings that learned the atrophy (test AUC ≥ {LEARNED_AUC}: {n_learned} of "
        f"{n_cells} trainings)",
    )
    lines += table
    lines.append(
        "\nA model that did not learn the atrophy has nothing to explain; this table separates the quality of the "
        f"explanation from the success of the training. Best method here: **{best}**.\n"
    )
    summary.update(learned_auc=LEARNED_AUC, learned_trainings=n_learned, trainings=n_cells, learned_methods=methods)
    per_training = cells.groupby(TRAINING)["method"].nunique()
    common = per_training[per_training == cells["method"].nunique()].index
    if 0 < len(common) < n_cells:
        paired = cells.set_index(TRAINING).loc[common].reset_index()
        table, methods, best = _method_table(
            paired,
            f"## Paired comparison: the {len(common)} trainings on which every method was scored (seeds "
            f"{sorted(int(v) for v in paired['seed'].unique())})",
        )
        lines += table
        lines.append(f"\nThe same models and subjects for every method. Best method here: **{best}**.\n")
        summary.update(paired_trainings=len(common), paired_methods=methods, paired_best_method=best)
        paired = paired[paired["test_auc"] >= LEARNED_AUC]
        table, methods, best = _method_table(
            paired, f"## Paired, only the {paired.groupby(TRAINING).ngroups} of them that learned the atrophy"
        )
        lines += table
        lines.append(f"\nBest method here: **{best}**.\n")
        summary.update(paired_learned_methods=methods, paired_learned_best_method=best)
    lines.append("## Per cell: mean ± sd over seeds\n")
    lines.append("| region set | atrophy | method | seeds | test acc. | pointing game | rank (mean) | rank (mass) "
                 "| mass ratio | AUPRC | prevalence | rand. Spearman |")  # fmt: skip
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (region_set, atrophy, method), part in cells.groupby(["region_set", "atrophy", "method"], sort=False):
        lines.append(
            f"| {region_set} | {atrophy} | {method} | {part['seed'].nunique()} | {_mean_sd(part['test_accuracy'])} "
            f"| {_mean_sd(part['pointing_game'])} | {_mean_sd(part['best_rank'], 1)} "
            f"| {_mean_sd(part['best_rank_mass'], 1)} "
            f"| {_mean_sd(part['mass_ratio'], 1)} | {_mean_sd(part['auprc'], 3)} | {_mean_sd(part['prevalence'], 3)} "
            f"| {_mean_sd(part['rand_spearman'])} |"
        )
    return "\n".join(lines) + "\n", summary


def detection_table(frame: pd.DataFrame, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        "## Detection curve: test AUC against atrophy strength\n",
        "`bundle`: train.json as shipped (2 mm demo cohort of 80 subjects, 24 coronal slices at 64 px, 20 epochs); "
        "`benchmark`: the matrix's configuration (3 mm, 40 subjects, 24 slices at 32 px, 15 epochs).\n",
        "| configuration | atrophy | strength | seeds | test AUC | test accuracy |",
        "|---|---|---|---|---|---|",
    ]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if "config" not in frame.columns:
        frame = frame.assign(config="bundle")
    for (config, atrophy), part in frame.groupby(["config", "atrophy"]):
        stats = part.groupby("strength")["test_auc"].agg(["mean", "std", "count"]).reset_index()
        label = f"{config}, {atrophy}"
        ax.errorbar(stats["strength"], stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=label)
        for strength, sub in part.groupby("strength"):
            lines.append(
                f"| {config} | {atrophy} | {strength:g} | {sub['seed'].nunique()} | {_mean_sd(sub['test_auc'])} "
                f"| {_mean_sd(sub['test_accuracy'])} |"
            )
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("atrophy strength")
    ax.set_ylabel("test AUC")
    ax.set_ylim(0.3, 1.02)
    ax.legend()
    ax.set_title("Detection limit of the training")
    fig.tight_layout()
    fig.savefig(out / "detection.png", dpi=100)
    plt.close(fig)
    return "\n".join(lines) + "\n"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v != ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--region-sets", default=",".join(CONFIG["region_sets"]))
    parser.add_argument("--atrophy", default="intensity,morphological")
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    parser.add_argument("--cascade-subjects", type=int, default=3, help="subjects of the randomisation check")
    parser.add_argument("--occlusion-subjects", type=int, default=5, help="subjects explained by occlusion")
    parser.add_argument("--occlusion-cascade-subjects", type=int, default=1)
    parser.add_argument("--raw-methods", default="gradient,smoothgrad", help="also scored without anti-aliasing")
    parser.add_argument(
        "--normalized-methods", default="smoothgrad", help="also scored with antialias='normalized'"
    )  # fmt: skip
    parser.add_argument(
        "--controls-ig", action="store_true",
        help="also score integrated_gradients_controls: Integrated Gradients from the mean control scan of the "
        "training split, positive part (evidence for AD), normalised anti-aliasing",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, help="noise/path samples or windows per pass")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--profile", default=None, choices=sorted(CONFIG["profiles"]),
        help="a larger cohort/training of the matrix (section 'profiles' of the JSON); use its own --out",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=None, help="override the configured epochs (smoke runs only)")
    parser.add_argument("--ad-subjects", type=int, default=None, help="explain only the first N AD-like subjects")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (1 is fastest on busy cores)")
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument("--detection", action="store_true")
    parser.add_argument("--detection-strengths", default="0.1,0.2,0.3,0.4")
    parser.add_argument("--detection-seeds", default="0,1,2")
    parser.add_argument("--detection-atrophy", default="intensity")
    parser.add_argument(
        "--detection-config",
        choices=("bundle", "benchmark"),
        default="bundle",
        help="bundle: train.json as shipped (2 mm, 80 subjects); benchmark: the matrix's smaller configuration",
    )
    parser.add_argument("--ci", action="store_true", help="run the CI ground-truth test once per seed")
    parser.add_argument("--python", default=sys.executable, help="interpreter for --ci (e.g. another torch)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temp folder)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "explain_groundtruth"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="axial-gt-"))
    work.mkdir(parents=True, exist_ok=True)
    import torch

    machine = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
               "device": args.device, "profile": args.profile,
               "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None}  # fmt: skip

    if args.ci:
        path = out / "ci.csv"
        import subprocess as sp

        version = sp.run([args.python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
        for seed in _ints(args.seeds):
            row = run_ci(seed, work / f"ci-report-{seed}.json", args.python)
            row["torch"] = version.stdout.strip()
            row["config"] = ci_config()
            print(json.dumps(row), flush=True)
            with _locked(path):
                _append(path, [row])
        with _locked(path):  # every row, old ones included, judged by the thresholds in the JSON today
            frame = pd.read_csv(path)
            frame["passes_current_thresholds"] = ci_verdicts(frame)
            frame.to_csv(path, index=False)
            print(frame.groupby("config", sort=False)["passes_current_thresholds"].agg(["sum", "count"]))
        return

    tasks = []
    done = pd.read_csv(out / "cells.csv") if (out / "cells.csv").is_file() else pd.DataFrame(columns=KEY)
    done_keys = {tuple(r) for r in done[TRAINING].itertuples(index=False)}
    methods = args.methods.split(",")
    if not args.skip_matrix:
        for seed in _ints(args.seeds):
            for atrophy in args.atrophy.split(","):
                for region_set in args.region_sets.split(","):
                    if (seed, region_set, atrophy) in done_keys:
                        continue
                    tasks.append({"kind": "cell", "seed": seed, "region_set": region_set, "atrophy": atrophy})
    if args.detection:
        det = pd.read_csv(out / "detection.csv") if (out / "detection.csv").is_file() else None
        finished = (
            set()
            if det is None
            else {tuple(r) for r in det[["seed", "atrophy", "strength", "config"]].itertuples(index=False)}
        )
        for seed in _ints(args.detection_seeds):
            for atrophy in args.detection_atrophy.split(","):
                for strength in (float(s) for s in args.detection_strengths.split(",")):
                    if (seed, atrophy, strength, args.detection_config) not in finished:
                        tasks.append({"kind": "detection", "seed": seed, "atrophy": atrophy, "strength": strength})
    # interleave: the matrix of the first seeds, then the detection curve of the first seed, and so on, so that a
    # run cut short still covers both
    order = {seed: n for n, seed in enumerate(_ints(args.seeds) + _ints(args.detection_seeds))}
    tasks.sort(key=lambda t: 2 * order.get(t["seed"], 0) + (3 if t["kind"] == "detection" else 0))
    common = {"work": str(work), "device": args.device, "threads": args.threads, "methods": methods,
              "cascade_subjects": args.cascade_subjects, "batch_size": args.batch_size, "epochs": args.epochs,
              "occlusion_subjects": args.occlusion_subjects, "detection_config": args.detection_config,
              "raw_methods": [m for m in args.raw_methods.split(",") if m],
              "normalized_methods": [m for m in args.normalized_methods.split(",") if m],
              "controls_ig": args.controls_ig,
              "occlusion_cascade_subjects": args.occlusion_cascade_subjects,
              "ad_subjects": args.ad_subjects, "profile_name": args.profile or "base",
              "profile": CONFIG["profiles"][args.profile] if args.profile else {}}  # fmt: skip
    tasks = [{**t, **common} for t in tasks]
    print(f"{len(tasks)} task(s) to run in {work}", flush=True)
    start = time.perf_counter()
    context = mp.get_context("spawn")
    with context.Pool(max(1, args.workers), maxtasksperchild=1) as pool:
        for rows in pool.imap_unordered(_dispatch, tasks):
            name = "detection.csv" if "test_auc" in rows[0] and "method" not in rows[0] else "cells.csv"
            _append(out / name, rows)
            first = {k: rows[0][k] for k in list(rows[0])[:4]}
            print(f"[{time.perf_counter() - start:.0f} s] {name}: {json.dumps(first)}", flush=True)

    text = ""
    if (out / "cells.csv").is_file():
        table, summary = summarize(pd.read_csv(out / "cells.csv"))
        text += table
        summary["machine"] = machine
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if (out / "detection.csv").is_file():
        text += "\n" + detection_table(pd.read_csv(out / "detection.csv"), out)
    command = "python benchmarks/explain_groundtruth.py " + " ".join(sys.argv[1:])
    header = f"# Explanations against planted atrophy\n\n`{command}`; machine: {json.dumps(machine)}\n\n"
    (out / "summary.md").write_text(header + text)
    print(text)


if __name__ == "__main__":
    main()
