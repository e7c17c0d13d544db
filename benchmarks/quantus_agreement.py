"""Benchmark: our ground-truth scores of explanations against Quantus's, on the same maps.

The maps are those of a cross-validation run with ``--explain`` (e.g. the reference model of
``benchmarks/paper_table.py``: ``<work>/runs/axial``): each fold's model explains its own test scans, and the demo
cohort holds the true atrophy mask of each AD scan. For every AD test scan and map (``--maps``), both libraries
score the same arrays over the same voxels (the brain: the scan's non-zero voxels; the map is set to 0 outside):

* the pointing game: ours (``axial_monai.explain.groundtruth.pointing_game``) against Quantus ``PointingGame``;
* the share of relevance inside the mask: ours (``relevance_mass_ratio`` times the mask's share of the brain)
  against Quantus ``RelevanceMassAccuracy``;
* ranking: Quantus ``RelevanceRankAccuracy`` (the share of the mask among the map's top |mask| voxels) beside our
  AUPRC of the map as a voxel classifier of the mask (not the same figure: their rank correlation over scans).

``pip install quantus`` (not a dependency of the package). Writes ``quantus_agreement.csv`` (one row per scan and
map) and ``quantus_agreement.md`` to ``--out``.

    python benchmarks/quantus_agreement.py RUN_DIR COHORT_DIR [--maps integrated_gradients,attention]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]


def scan_rows(run_dir: Path, cohort: Path, maps: list[str]) -> list[dict]:
    import quantus

    from axial_monai.explain.groundtruth import auprc, pointing_game, relevance_mass_ratio

    masks = {}
    for items in json.loads((cohort / "datalist.json").read_text()).values():
        masks.update({item["subject"]: cohort / item["atrophy_mask"] for item in items if item["label"] == 1})
    metrics = {
        "PointingGame": quantus.PointingGame(disable_warnings=True),
        "RelevanceMassAccuracy": quantus.RelevanceMassAccuracy(disable_warnings=True),
        "RelevanceRankAccuracy": quantus.RelevanceRankAccuracy(disable_warnings=True),
    }
    rows = []
    for fold in sorted(run_dir.glob("fold-*")):
        tested = json.loads((fold / "datalist.json").read_text())["test"]
        for item in tested:
            if item["subject"] not in masks:
                continue
            scan = np.asarray(nib.load(item["image"]).dataobj, np.float32)
            truth = np.asarray(nib.load(masks[item["subject"]]).dataobj) > 0
            brain = scan > 0
            folder = next((fold / "explain" / item["subject"]).glob("*"))
            for name in maps:
                volume = np.asarray(nib.load(folder / f"{name}.nii.gz").dataobj, np.float64)
                volume = np.where(brain, volume, 0.0)
                batch = {"x_batch": scan[None, None], "y_batch": np.array([1]), "a_batch": volume[None, None]}
                batch["s_batch"] = truth[None, None].astype(np.float32)
                theirs = {
                    key: float(metric(model=None, channel_first=True, **batch)[0]) for key, metric in metrics.items()
                }
                precision, prevalence = auprc(volume, truth, brain)
                rows.append(
                    {
                        "fold": fold.name,
                        "subject": item["subject"],
                        "map": name,
                        "negative_share": float((volume < 0).sum() / brain.sum()),
                        "pointing_game": pointing_game(volume, truth, brain),
                        "quantus_pointing_game": theirs["PointingGame"],
                        "mass_share": relevance_mass_ratio(volume, truth, brain) * prevalence,
                        "quantus_mass_accuracy": theirs["RelevanceMassAccuracy"],
                        "auprc": precision,
                        "quantus_rank_accuracy": theirs["RelevanceRankAccuracy"],
                    }
                )
    return rows


def summary(table: pd.DataFrame) -> pd.DataFrame:
    out = []
    for name, part in table.groupby("map", sort=False):
        ours, theirs = part.pointing_game, part.quantus_pointing_game
        mass, their_mass = part.mass_share, part.quantus_mass_accuracy
        out.append(
            {
                "map": name,
                "AD scans": len(part),
                "pointing game (ours / Quantus)": f"{ours.mean():.3f} / {theirs.mean():.3f}",
                "pointing game agrees": f"{(ours.round(6) == theirs).mean():.0%}",
                "mass in mask (ours / Quantus)": f"{mass.mean():.4f} / {their_mass.mean():.4f}",
                "largest mass difference": f"{(mass - their_mass).abs().max():.2e}",
                "rank accuracy (Quantus)": f"{part.quantus_rank_accuracy.mean():.3f}",
                "Spearman(AUPRC, rank accuracy)": f"{spearmanr(part.auprc, part.quantus_rank_accuracy)[0]:.3f}",
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("cohort", type=Path)
    parser.add_argument("--maps", default="integrated_gradients,attention")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "paper_table")
    args = parser.parse_args()
    import quantus

    table = pd.DataFrame(scan_rows(args.run_dir, args.cohort, args.maps.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "quantus_agreement.csv", index=False)
    from axial_monai.paper_table import markdown_table

    text = f"# Our explanation scores against Quantus {quantus.__version__}\n\n{markdown_table(summary(table))}\n"
    (args.out / "quantus_agreement.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
