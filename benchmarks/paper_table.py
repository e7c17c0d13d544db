"""Benchmark: the AXIAL paper's comparison table on phantoms, with ``axial-monai benchmark``.

Two demo cohorts of the real MNI template with morphological atrophy and per-subject anatomical variation (a smooth
random deformation, bias field, noise; see ``axial_monai.data.demo``):

* the main task, "AD vs CN": the hippocampi and amygdalae shrink by a moderate ``--strength`` of their volume;
* the conversion task, "pMCI vs sMCI": other subjects, where the converters carry a subtle shrinkage of the same
  regions (``--conversion-strength``): the signal that transfer from the main task should help to find.

The conversion subjects are renamed (``mci-sub-...``) so that no id is shared with the main cohort. Every model of
the paper is cross-validated on the same folds, then the reference model does the conversion task from its
backbone's start and by double transfer. The table and its parts go to ``--out`` (default
``benchmarks/results/paper_table``), with the command and the machine in ``paper_table.md``.

    python benchmarks/paper_table.py [--subjects 60] [--k 5] [--epochs 10] [--models all] [--explain]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"num_slices": 16, "image_size": 64, "batch_size": 4, "num_workers": 0}


def renamed_datalist(cohort: str, prefix: str, out: Path) -> Path:
    """The cohort's datalist with absolute image paths and its subjects renamed ``<prefix><subject>``."""
    listed = json.loads((Path(cohort) / "datalist.json").read_text())
    for items in listed.values():
        for item in items:
            item["image"] = str(Path(cohort) / item["image"])
            item.pop("atrophy_mask", None)
            item["subject"] = prefix + item["subject"]
    out.write_text(json.dumps(listed, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=60)
    parser.add_argument("--spacing", type=float, default=3.0)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--conversion-strength", type=float, default=0.25)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", default="all")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "paper_table"))
    parser.add_argument("--work", default=None, help="where the cohorts and the runs go (default: a temporary folder)")
    args = parser.parse_args()
    from axial_monai import cli
    from axial_monai.data.demo import prepare_demo_cohort

    work = Path(args.work or tempfile.mkdtemp(prefix="axial-paper-table-"))
    work.mkdir(parents=True, exist_ok=True)
    common = {"n_subjects": args.subjects, "spacing": args.spacing, "atrophy": "morphological", "root": str(work)}
    main_cohort = prepare_demo_cohort(strength=args.strength, seed=0, **common)
    conversion = prepare_demo_cohort(strength=args.conversion_strength, seed=1, **common)
    adcn = renamed_datalist(main_cohort, "", work / "adcn.json")
    mci = renamed_datalist(conversion, "mci-", work / "mci.json")
    settings = {**SETTINGS, "epochs": args.epochs}
    argv = ["benchmark", adcn, work / "runs", "--models", args.models, "--k", args.k, "--conversion", mci]
    argv += ["--overrides", json.dumps(settings), "--progress", "False"]
    argv += ["--explain"] if args.explain else []
    status = cli.main([str(a) for a in argv])
    if status:
        sys.exit(status)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("paper_table.md", "paper_table.csv", "comparisons.csv", "cost.csv", "paper_table.png"):
        shutil.copy(work / "runs" / name, out / name)
    text = (out / "paper_table.md").read_text().replace(str(work), "$WORK")  # no machine paths in the result
    command = " ".join(["python", os.path.relpath(__file__, ROOT), *sys.argv[1:]]).replace(str(work), "$WORK")
    (out / "paper_table.md").write_text(text + f"\nWritten by `{command}`; `$WORK` is its working folder.\n")
    print(text)


if __name__ == "__main__":
    main()
