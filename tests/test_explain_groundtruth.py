"""End-to-end check of the explanations against the demo cohort's planted atrophy (the ground truth).

A small tri-planar model is trained through train.json + triplanar.json, then explain.json runs on held-out
subjects (validation + test splits: never trained on). The planted regions are a parameter of the cohort only:
the code under test never sees them.
"""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from bundle_utils import run, workflow
from scipy.stats import spearmanr

from axial_monai.data import prepare_demo_cohort
from axial_monai.explain import rank_of, region_relevance
from axial_monai.handlers import InterpretabilityHandler
from axial_monai.networks import TriPlanarAxialNet
from axial_monai.run_settings import load_weights
from axial_monai.transforms import load_volume

REGION_SETS = {
    "hippocampus-amygdala": ("Left_Hippocampus", "Right_Hippocampus", "Left_Amygdala", "Right_Amygdala"),
    "thalamus": ("Left_Thalamus_Proper", "Right_Thalamus_Proper"),
}
NET = {"num_slices": [28, 28, 36], "image_size": 48, "num_workers": 0}


@pytest.fixture(scope="module", params=list(REGION_SETS))
def explained(request, tmp_path_factory):
    regions = REGION_SETS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    cohort = Path(
        prepare_demo_cohort(
            str(root), n_subjects=40, spacing=3.0, strength=0.9, val_fraction=0.25, test_fraction=0.25, regions=regions
        )
    )
    out = root / "run"
    run(workflow(["train", "triplanar"], dataset_dir=str(cohort), output_dir=str(out), epochs=15, batch_size=2, **NET))
    datalist = json.loads((cohort / "datalist.json").read_text())
    heldout = [
        {**item, "image": str(cohort / item["image"]), "atrophy_mask": str(cohort / item["atrophy_mask"])}
        for item in datalist["validation"] + datalist["test"]
    ]
    (root / "heldout.json").write_text(json.dumps({"heldout": heldout}))
    explain = workflow(
        ["inference", "explain"],
        "infer",
        input=str(root / "heldout.json"),
        datalist_key="heldout",
        output_dir=str(out),
        atlas=str(cohort / "atlas.nii.gz"),
        atlas_labels=str(cohort / "atlas_labels.csv"),
        template=str(cohort / "template.nii.gz"),
        cams=["gradcam"],
        **NET,
    )
    run(explain)
    return {"regions": regions, "cohort": cohort, "out": out / "explain", "heldout": heldout, "ckpt": out / "models"}


def _sid(item):
    return Path(item["image"]).name.replace(".nii.gz", "")


def test_pointing_game_on_heldout_ad_subjects(explained):
    ad = [item for item in explained["heldout"] if item["label"] == 1]
    hits = []
    for item in ad:
        cam = nib.load(explained["out"] / _sid(item) / "attention_cam.nii.gz")
        mask = np.asarray(nib.load(item["atrophy_mask"]).dataobj) > 0
        peak = np.unravel_index(np.argmax(cam.get_fdata()), cam.shape)
        hits.append(bool(mask[peak]))
        np.testing.assert_array_equal(cam.affine, nib.load(item["image"]).affine)
    assert len(ad) >= 8
    assert np.mean(hits) > 0.5, hits  # most held-out AD-like subjects


def test_planted_regions_rank_top3_by_relevance_mass(explained):
    table = pd.read_csv(explained["out"] / "cohort" / "relevance_attention_cam_pred-AD.csv")
    best = min(rank_of(table, explained["regions"]))
    assert best <= 3, list(table["name"][:5])


def test_region_tables_and_cohort_files(explained):
    cohort_dir = explained["out"] / "cohort"
    for name in ("attention_all", "attention_cam_all", "attention_cam_correct", "explainable_mri_attention_all"):
        assert (cohort_dir / f"{name}.nii.gz").is_file(), name
    scan = explained["out"] / _sid(explained["heldout"][0])
    for name in ("attention", "gradcam", "attention_cam"):
        img = nib.load(scan / f"{name}.nii.gz")
        assert 0 <= img.get_fdata().min() and img.get_fdata().max() <= 1
        assert (scan / f"regions_{name}.csv").is_file()
    attention = pd.read_csv(scan / "attention.csv")
    assert attention.groupby("plane")["attention"].sum().round(5).eq(1).all()
    rows = pd.read_csv(cohort_dir / "explanations.csv")
    assert len(rows) == len(explained["heldout"])


@pytest.mark.parametrize("explained", ["hippocampus-amygdala"], indirect=True)
def test_randomised_weights_break_the_region_ranking(explained):
    """Adebayo et al.'s model-randomisation check: explanations must depend on the learned weights."""
    cohort = explained["cohort"]
    atlas = nib.load(cohort / "atlas.nii.gz")
    labels = np.asarray(atlas.dataobj).astype(int)
    names = pd.read_csv(cohort / "atlas_labels.csv").set_index("index")["name"].to_dict()
    kwargs = {"num_slices": NET["num_slices"], "image_size": NET["image_size"], "backbone": "resnet18", "freeze": 0.0}
    trained = TriPlanarAxialNet(**kwargs)
    trained.load_state_dict(load_weights(explained["ckpt"] / "model.pt"))
    torch.manual_seed(1)
    random = TriPlanarAxialNet(**kwargs)
    loader = load_volume()
    relevance = {}
    for tag, net in (("trained", trained), ("random", random)):
        handler = InterpretabilityHandler(
            str(explained["out"].parent / f"sanity-{tag}"),
            net.eval(),
            ["CN", "AD"],
            cams=["gradcam"],
            atlas=None,
            plots=False,
        )
        total = None
        for item in [i for i in explained["heldout"] if i["label"] == 1]:
            image = loader({"image": item["image"]})["image"]
            table = region_relevance(handler.explain(image)["attention_cam"], labels, names).set_index("name")["mass"]
            total = table if total is None else total.add(table, fill_value=0)
        relevance[tag] = total
    # the ranking that matters: the trained model's 20 most relevant regions (the rest are mostly empty or
    # outside the sliced box, where any two maps agree trivially)
    top = relevance["trained"].sort_values(ascending=False).index[:20]
    rho = spearmanr(relevance["trained"][top], relevance["random"].reindex(top, fill_value=0)).statistic
    assert rho < 0.5, rho
