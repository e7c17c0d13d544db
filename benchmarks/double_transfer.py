"""Benchmark: when does double transfer help on the phantom conversion task, and how often over seeds?

The AXIAL paper's claim is that a model first trained for AD vs CN classifies sMCI vs pMCI better than one that
starts from ImageNet. On the phantoms, the conversion task is a weaker dose of the main task's atrophy in the same
regions, on fewer subjects (an MCI cohort is smaller). This script takes one cross-validation of the reference model
on the main task (``--main-run``, or it runs one: 60 subjects at ``--main-strength``, ``--main-epochs``), then, for
each conversion strength and each cohort seed, cross-validates the conversion task on the same folds from:

* the backbone's start ("ImageNet only"; here the backbone's ``pretrained`` setting of the benchmark);
* double transfer as the product does it (``paper_table.double_transfer``: the main task's same fold, head
  re-initialised, the same learning rate);
* the main task's same fold with its head kept, fine-tuned at ``--transfer-lr``;

and scores the main task's fold models on the conversion cohort without training on it at all (zero shot). It
writes one row per cohort (AUCs, ΔAUC against ImageNet only and DeLong's p) and the share of seeds where each
transfer helped, to ``--out/double_transfer.{csv,md}``.

    python benchmarks/double_transfer.py --strengths 0.35 --seeds 1 2 3 [--main-run RUN] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_table import ROOT, SETTINGS, renamed_datalist  # noqa: E402


def main_task(work: Path, args: argparse.Namespace) -> Path:
    """The reference model cross-validated on the main task's phantom cohort (AD vs CN), resumed if done."""
    from axial_monai.crossval.runner import TRAIN_CONFIG, run_cross_validation
    from axial_monai.data.demo import prepare_demo_cohort
    from axial_monai.paper_table import datalist_table

    cohort = prepare_demo_cohort(
        n_subjects=60, spacing=3.0, atrophy="morphological", strength=args.main_strength, seed=0, root=str(work)
    )
    table = datalist_table(renamed_datalist(cohort, "", work / "adcn.json"))
    out = work / "main"
    settings = {**SETTINGS, "epochs": args.main_epochs}
    summary = run_cross_validation(table, out, k=args.k, seed=0, config_files=[TRAIN_CONFIG], overrides=settings)
    auc = summary.query("level == 'subject' and metric == 'auc'")["mean"].iloc[0]
    print(f"main task: AUC {auc:.3f} (mean over folds)", flush=True)
    return out


def one_cohort(main_run: Path, work: Path, strength: float, seed: int, args: argparse.Namespace) -> dict:
    """The conversion task of one phantom cohort from both starts: its row of the result table."""
    from axial_monai.crossval.compare import paired_comparisons
    from axial_monai.crossval.runner import TRAIN_CONFIG, run_cross_validation
    from axial_monai.data.demo import prepare_demo_cohort
    from axial_monai.paper_table import datalist_table, double_transfer

    cohort = prepare_demo_cohort(
        n_subjects=args.subjects, spacing=3.0, atrophy="morphological", strength=strength, seed=seed, root=str(work)
    )
    folder = work / f"strength-{strength}-seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    table = datalist_table(renamed_datalist(cohort, f"mci{seed}-", folder / "mci.json"))
    settings = {**SETTINGS, "epochs": args.epochs}
    common = {"k": args.k, "seed": 0, "val_fraction": 0.2, "progress": False}
    result = double_transfer(table, folder, main_run, settings, **common)
    auc = result["table"].query("metric == 'auc'").set_index("model")["estimate"]
    test = result["test"].iloc[0]
    # the third start: every weight of the main task's fold, its head too (a converter read as the main task's AD),
    # fine-tuned at a tenth of the learning rate: at the full rate, 4 epochs on 32 subjects undo what was learned
    kept = folder / "conversion" / "double_transfer_keep_head_low_lr"
    keep_head = {**settings, "initialised_network#reset": [], "learning_rate": args.transfer_lr}
    run_cross_validation(
        table, kept, config_files=[TRAIN_CONFIG], overrides=keep_head, init_from=str(main_run), **common
    )
    pooled = {name: pd.read_csv(folder / "conversion" / name / "predictions.csv") for name in ("imagenet",)}
    pooled["keep_head"] = pd.read_csv(kept / "predictions.csv")
    kept_test = paired_comparisons(pooled, "keep_head", positive=1).iloc[0]
    zero_shot = zero_shot_auc(table, main_run, args.k)
    return {
        "strength": strength,
        "seed": seed,
        "subjects": int(test.n_subjects),
        "auc_zero_shot": zero_shot,
        "auc_imagenet": auc["imagenet"],
        "auc_double_transfer": auc["double_transfer"],
        "delta_auc": test.auc_difference,
        "delong_p": test.auc_p,
        "auc_keep_head": auc["imagenet"] + kept_test.auc_difference,
        "delta_auc_keep_head": kept_test.auc_difference,
        "delong_p_keep_head": kept_test.auc_p,
        "acc_imagenet": test.acc_model,
        "acc_double_transfer": test.acc_reference,
        "acc_keep_head": kept_test.acc_reference,
    }


def zero_shot_auc(table: pd.DataFrame, main_run: Path, k: int) -> float:
    """AUC of the main task's fold models on the conversion cohort without any training on it: each subject scored
    by one fold's model (the subjects split evenly over the folds), one scan per subject."""
    from sklearn.metrics import roc_auc_score

    from axial_monai.run import RunSettings, load_weights
    from axial_monai.transforms import load_volume

    scores, labels = [], []
    subjects = sorted(table["subject"].unique())
    for fold in range(k):
        ckpt = main_run / f"fold-{fold}" / "models" / "model.pt"
        run = RunSettings.load(ckpt)
        network = run.build_network().eval()
        network.load_state_dict(load_weights(ckpt))
        loader = load_volume("image", intensity=run.intensity)
        for subject in subjects[fold::k]:
            row = table[table["subject"] == subject].iloc[0]
            with torch.inference_mode():
                logits = network(loader({"image": row["image"]})["image"][None])
            scores.append(float(torch.softmax(logits, -1)[0, 1]))
            labels.append(int(row["label"]))
    return float(roc_auc_score(labels, scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--main-run", default=None, help="a cross-validation of the reference model (default: run one)")
    parser.add_argument("--main-strength", type=float, default=0.5, help="atrophy of the main task's cohort")
    parser.add_argument("--main-epochs", type=int, default=16)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.35])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--transfer-lr", type=float, default=5e-5, help="learning rate of the keep-head start")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "paper_table"))
    parser.add_argument("--work", default=None, help="where the cohorts and the runs go (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="axial-double-transfer-"))
    main_run = Path(args.main_run) if args.main_run else main_task(work, args)
    rows = []
    for strength in args.strengths:
        for seed in args.seeds:
            rows.append(one_cohort(main_run, work, strength, seed, args))
            print(json.dumps(rows[-1]), flush=True)
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "double_transfer.csv", index=False)
    command = " ".join(["python", os.path.relpath(__file__, ROOT), *sys.argv[1:]]).replace(str(work), "$WORK")
    (out / "double_transfer.md").write_text(markdown(frame, command))


def markdown(frame: pd.DataFrame, command: str) -> str:
    """The result table (AUCs to 3 decimals, p-values to 3 significant digits) and the share of seeds where each
    transfer helped."""
    from axial_monai.paper_table import markdown_table

    shown = frame.copy()
    for column in shown.columns:
        if column.startswith(("auc", "delta", "acc")):
            shown[column] = shown[column].map("{:.3f}".format)
        elif "_p" in column:
            shown[column] = shown[column].map("{:.2g}".format)
    lines = ["# Double transfer on the phantom conversion task, over cohort seeds", "", markdown_table(shown), ""]
    for strength, part in frame.groupby("strength"):
        lines.append(
            f"Strength {strength}: double transfer had the higher AUC than ImageNet only on "
            f"{(part.delta_auc > 0).sum()}/{len(part)} seeds with the head re-initialised (significant at 5 %: "
            f"{(part.delong_p < 0.05).sum()}), and on {(part.delta_auc_keep_head > 0).sum()}/{len(part)} with the "
            f"head kept (significant: {(part.delong_p_keep_head < 0.05).sum()})."
        )
    from common import machine

    about = machine()
    where = f"{about['processor']}, {about['cpu_count']} CPU cores, torch {about['torch']}"
    written = f"Written by `{command}`; `$WORK` is its working folder. Machine: {where} (busy with other jobs)."
    return "\n".join([*lines, "", written, ""])


if __name__ == "__main__":
    main()
