"""Benchmark: do the explanations point at the planted atrophy? (demo cohort ground truth)

Trains a small TriPlanarAxialNet through ``train.json`` + ``triplanar.json`` on a demo cohort whose AD-like
subjects carry atrophy in ``--regions``, runs ``explain.json`` on the held-out subjects (validation + test
splits), and scores the per-subject attention-weighted CAM against the planted masks:

* pointing game: share of held-out AD-like subjects whose map maximum lies inside their atrophy mask;
* ranks of the planted regions by relevance mass in the cohort attention-weighted CAM of predicted-AD scans;
* model-randomisation check (Adebayo et al.): Spearman correlation between the trained and a randomly
  initialised network's relevance mass over the trained model's 20 most relevant regions.

    python benchmarks/explain_groundtruth.py --regions Left_Hippocampus,Right_Hippocampus,Left_Amygdala,Right_Amygdala
    python benchmarks/explain_groundtruth.py --regions Left_Thalamus_Proper,Right_Thalamus_Proper

The code under test never sees the regions: they only parameterise the cohort.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from monai.bundle import ConfigWorkflow
from scipy.stats import spearmanr

from axial_monai.configs import config_path
from axial_monai.data import prepare_demo_cohort
from axial_monai.explain import rank_of, region_relevance
from axial_monai.handlers import InterpretabilityHandler
from axial_monai.io import nifti_stem
from axial_monai.networks import TriPlanarAxialNet
from axial_monai.run_settings import load_weights
from axial_monai.transforms import load_volume

ROOT = Path(__file__).resolve().parents[1]


def _run(configs: list[str], workflow_type: str, **override) -> None:
    wf = ConfigWorkflow(
        config_file=[str(config_path(c)) for c in configs],
        meta_file=str(config_path("metadata")),
        logging_file=str(config_path("logging.conf")),
        workflow_type=workflow_type,
        **override,
    )
    wf.initialize()
    wf.run()
    wf.finalize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", default="Left_Hippocampus,Right_Hippocampus,Left_Amygdala,Right_Amygdala")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--spacing", type=float, default=3.0)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--num-slices", default="28,28,36")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    regions = tuple(args.regions.split(","))
    num_slices = [int(n) for n in args.num_slices.split(",")]
    work = Path(tempfile.mkdtemp(prefix="axial-gt-"))
    start = time.perf_counter()
    cohort = Path(
        prepare_demo_cohort(
            str(work),
            n_subjects=40,
            spacing=args.spacing,
            strength=0.9,
            val_fraction=0.25,
            test_fraction=0.25,
            regions=regions,
        )
    )
    net_args = {"num_slices": num_slices, "image_size": args.image_size, "num_workers": 0}
    run_dir = work / "run"
    _run(
        ["train", "triplanar"],
        "train",
        dataset_dir=str(cohort),
        output_dir=str(run_dir),
        epochs=args.epochs,
        batch_size=2,
        **net_args,
    )
    datalist = json.loads((cohort / "datalist.json").read_text())
    heldout = [
        {**i, "image": str(cohort / i["image"]), "atrophy_mask": str(cohort / i["atrophy_mask"])}
        for i in datalist["validation"] + datalist["test"]
    ]
    (work / "heldout.json").write_text(json.dumps({"heldout": heldout}))
    atlas = {"atlas": str(cohort / "atlas.nii.gz"), "atlas_labels": str(cohort / "atlas_labels.csv")}
    _run(
        ["inference", "explain"],
        "infer",
        input=str(work / "heldout.json"),
        datalist_key="heldout",
        output_dir=str(run_dir),
        template=str(cohort / "template.nii.gz"),
        cams=["gradcam"],
        plots=False,
        **atlas,
        **net_args,
    )
    explain = run_dir / "explain"
    ad = [i for i in heldout if i["label"] == 1]
    hits = []
    for item in ad:
        cam = nib.load(explain / nifti_stem(item["image"]) / "attention_cam.nii.gz").get_fdata()
        hits.append(
            bool((np.asarray(nib.load(item["atrophy_mask"]).dataobj) > 0)[np.unravel_index(cam.argmax(), cam.shape)])
        )
    table = pd.read_csv(explain / "cohort" / "relevance_attention_cam_pred-AD.csv")

    labels = np.asarray(nib.load(cohort / "atlas.nii.gz").dataobj).astype(int)
    names = pd.read_csv(cohort / "atlas_labels.csv").set_index("index")["name"].to_dict()
    kwargs = {"num_slices": num_slices, "image_size": args.image_size, "backbone": "resnet18", "freeze": 0.0}
    trained = TriPlanarAxialNet(**kwargs)
    trained.load_state_dict(load_weights(run_dir / "models" / "model.pt"))
    torch.manual_seed(1)
    relevance = {}
    for tag, net in (("trained", trained), ("random", TriPlanarAxialNet(**kwargs))):
        handler = InterpretabilityHandler(
            str(work / tag), net.eval(), ["CN", "AD"], cams=["gradcam"], atlas=None, plots=False
        )
        total = None
        for item in ad:
            image = load_volume()({"image": item["image"]})["image"]
            mass = region_relevance(handler.explain(image)["attention_cam"], labels, names).set_index("name")["mass"]
            total = mass if total is None else total.add(mass, fill_value=0)
        relevance[tag] = total
    top = relevance["trained"].sort_values(ascending=False).index[:20]
    rho = spearmanr(relevance["trained"][top], relevance["random"].reindex(top, fill_value=0)).statistic
    test_metrics = json.loads((run_dir / "eval-test" / "metrics.json").read_text())["metrics"]
    result = {
        "command": " ".join(["python", "benchmarks/explain_groundtruth.py", *sys.argv[1:]]),
        "regions": list(regions),
        "test_accuracy": test_metrics["accuracy"],
        "pointing_game": f"{sum(hits)}/{len(hits)}",
        "planted_ranks_by_mass": dict(zip(regions, rank_of(table, regions))),
        "top5_by_mass": list(table["name"][:5]),
        "spearman_trained_vs_random_top20": round(float(rho), 3),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"explain_groundtruth_{regions[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
