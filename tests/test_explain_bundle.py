"""explain.json through monai.bundle: the files, grids and invariants of the explanation outputs."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bundle_utils import run, workflow

from axial_monai.explain import DEFAULT_METHODS


@pytest.fixture(scope="module")
def explained(explained_demo, tiny_cohort):
    """The explanation of the demo run's test scans (``explained_demo``, shared with the report tests: the run
    folder is explained once per session, by one worker)."""
    datalist = json.loads((Path(tiny_cohort) / "datalist.json").read_text())
    return Path(explained_demo) / "explain", datalist["test"], Path(tiny_cohort)


def test_per_scan_maps_on_the_input_grid(explained):
    explain_dir, items, cohort = explained
    assert len([p for p in explain_dir.iterdir() if p.name != "cohort"]) == len(items)
    for item in items:
        scan = explain_dir / Path(item["image"]).name.replace(".nii.gz", "")
        source = nib.load(cohort / item["image"])
        brain = np.asarray(source.dataobj) > 0
        for name in DEFAULT_METHODS:
            img = nib.load(scan / f"{name}.nii.gz")
            np.testing.assert_array_equal(img.affine, source.affine)
            assert img.shape == source.shape
            data = img.get_fdata()
            assert data.min() >= 0 and data.max() <= 1 + 1e-6 and data.max() > 0
            assert np.all(data[~brain] == 0)
            regions = pd.read_csv(scan / f"regions_{name}.csv")
            assert {"name", "V", "mean", "std", "max", "min", "P", "mass_share"} <= set(regions.columns)
            assert regions["V"].is_monotonic_decreasing
        # a single-plane model: the attention map is constant inside each extracted slab and 0 outside
        att = nib.load(scan / "attention.nii.gz").get_fdata()
        table = pd.read_csv(scan / "attention.csv")
        assert table["plane"].unique().tolist() == [1]
        assert abs(table["attention"].sum() - 1) < 1e-5
        outside = np.ones(att.shape[1], bool)
        outside[table["slice"].to_numpy()] = False
        assert np.all(att[:, outside, :] == 0)
        assert (scan / "attention.png").stat().st_size > 1000
        assert (scan / "integrated_gradients.png").stat().st_size > 1000
        summary = json.loads((scan / "explanation.json").read_text())
        assert summary["methods"] == list(DEFAULT_METHODS) and summary["label"] == item["label"]


def test_cohort_outputs(explained):
    explain_dir, items, _ = explained
    cohort = explain_dir / "cohort"
    rows = pd.read_csv(cohort / "explanations.csv")
    assert len(rows) == len(items)
    assert {"scan", "pred", "pred_label", "prob_CN", "prob_AD", "label"} <= set(rows.columns)
    for stem in (
        "attention_all",
        "integrated_gradients_all",
        "explainable_mri_attention_all",
        "explainable_mri_integrated_gradients_all",
    ):
        assert (cohort / f"{stem}.nii.gz").is_file(), stem
    paper_map = nib.load(cohort / "attention_all.nii.gz").get_fdata()
    assert paper_map.max() == pytest.approx(1.0) and paper_map.min() == 0
    mri = nib.load(cohort / "explainable_mri_attention_all.nii.gz").get_fdata()
    assert mri.max() <= 11 + 1e-5  # template in [0, 1] + 10 x map in [0, 1]
    relevance = pd.read_csv(cohort / "relevance_integrated_gradients_all.csv")
    assert relevance["mass"].sum() == pytest.approx(1.0)
    assert (cohort / "integrated_gradients_all.png").is_file()
    groups = set(rows["pred"].eq(rows["label"]).map({True: "correct", False: "incorrect"}))
    for group in ("correct", "incorrect"):  # a map per group that has scans, and none for an empty group
        assert (cohort / f"integrated_gradients_{group}.nii.gz").is_file() == (group in groups), (group, groups)
    # the cohort mean is the mean of the per-scan maps written next to it (then min-max)
    scans = [
        nib.load(explain_dir / Path(i["image"]).name.replace(".nii.gz", "") / "integrated_gradients.nii.gz")
        for i in items
    ]
    mean = np.mean([s.get_fdata() for s in scans], axis=0)
    expected = (mean - mean.min()) / (mean.max() - mean.min())
    np.testing.assert_allclose(nib.load(cohort / "integrated_gradients_all.nii.gz").get_fdata(), expected, atol=1e-5)
    per_scan = pd.read_csv(cohort / "regions_per_scan_integrated_gradients.csv")
    assert set(per_scan["n_scans"]) <= set(range(1, len(items) + 1)) and (per_scan["scan_fraction"] <= 1).all()


def test_other_methods_through_the_bundle(trained_demo, tiny_cohort, tmp_path):
    """methods and antialias are config keys: a CAM and an attention-weighted voxel map (normalised anti-aliasing),
    on two scans."""
    datalist = json.loads((Path(tiny_cohort) / "datalist.json").read_text())
    items = [{**i, "image": str(Path(tiny_cohort) / i["image"])} for i in datalist["test"][:2]]
    (tmp_path / "two.json").write_text(json.dumps({"two": items}))
    run(
        workflow(
            ["inference", "explain"],
            "infer",
            input=str(tmp_path / "two.json"),
            datalist_key="two",
            ckpt_path=str(Path(trained_demo) / "models" / "model.pt"),
            output_dir=str(tmp_path),
            methods=["gradcam", "attention_gradient"],
            antialias="normalized",
            atlas=None,
            plots=False,
            num_slices=16,
            image_size=64,
            num_workers=0,
        )
    )
    for item in items:
        scan = tmp_path / "explain" / Path(item["image"]).name.replace(".nii.gz", "")
        assert sorted(p.name for p in scan.glob("*.nii.gz")) == ["attention_gradient.nii.gz", "gradcam.nii.gz"]
        assert nib.load(scan / "attention_gradient.nii.gz").get_fdata().max() == pytest.approx(1.0)
    assert (tmp_path / "explain" / "cohort" / "attention_gradient_all.nii.gz").is_file()
    assert (tmp_path / "explain" / "cohort" / "gradcam_all.nii.gz").is_file()


def test_default_map_is_integrated_gradients_from_the_stored_mean_control_scan(explained, trained_demo):
    """explain.json's default voxel map: Integrated Gradients, positive part, from the checkpoint's mean control."""
    from monai.transforms import Compose, EnsureTyped

    from axial_monai.explain import DEFAULT_METHOD, ExplainSettings, explain_scan
    from axial_monai.run import load_run_settings, load_weights
    from axial_monai.transforms import load_volume

    explain_dir, items, cohort = explained
    assert DEFAULT_METHOD == "integrated_gradients"
    settings = load_run_settings(str(trained_demo))
    assert settings.control_mean is not None and settings.control_count > 0
    network = settings.build_network()
    network.load_state_dict(load_weights(settings.source))
    load = Compose([load_volume(intensity=settings.intensity), EnsureTyped(keys="image")])
    wanted = ExplainSettings(methods=[DEFAULT_METHOD], control_mean=settings.control_mean)
    assert wanted.ig_sign == "positive" and wanted.ig_baseline == "controls"
    zeros = ExplainSettings(methods=[DEFAULT_METHOD], ig_baseline="zeros")
    for item in items[:2]:
        written = nib.load(explain_dir / Path(item["image"]).name.replace(".nii.gz", "") / f"{DEFAULT_METHOD}.nii.gz")
        image = load({"image": str(cohort / item["image"])})["image"]
        np.testing.assert_allclose(
            written.get_fdata(), explain_scan(network, image, wanted).maps[DEFAULT_METHOD], atol=1e-5
        )
        other = explain_scan(network, image, zeros).maps[DEFAULT_METHOD]
        assert not np.allclose(written.get_fdata(), other, atol=1e-3)  # the baseline is used


def test_empty_method_list_is_refused_before_any_scan(trained_demo, tiny_cohort, tmp_path):
    ckpt = str(Path(trained_demo) / "models" / "model.pt")
    wf = workflow(["inference", "explain"], "infer", ckpt_path=ckpt, output_dir=str(tmp_path), methods=[])
    with pytest.raises(RuntimeError) as failure:  # monai.bundle wraps the handler's ValueError
        run(wf)
    assert isinstance(failure.value.__cause__, ValueError)
    assert "methods must name at least one map" in str(failure.value.__cause__)
    assert not (tmp_path / "explain").exists()
