"""Run settings saved with the weights: evaluation, inference and explanation rebuild the trained network from them.

One tiny run is trained with settings that all differ from the configs' defaults (axial plane, 6 slices, 32 px,
classes sMCI/pMCI); the default evaluate, inference and explain configs then get nothing but the run folder.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from bundle_utils import run, workflow
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

from axial_monai import cli
from axial_monai.errors import InputError, SettingsError
from axial_monai.handlers import AtomicCheckpointSaver
from axial_monai.networks import AxialNet
from axial_monai.run import RunSettings, load_run_settings, load_weights, mean_control
from axial_monai.run.migrate import attach_control_mean, attach_run_settings
from axial_monai.run.training import training_settings
from axial_monai.transforms import load_volume

#: every network setting differs from train.json's defaults (plane 1, 24 slices, 64 px, CN/AD)
RUN = {"plane": 2, "num_slices": 6, "image_size": 32, "class_names": ["sMCI", "pMCI"]}
LOADER = {"num_workers": 0}


def _root_error(err: BaseException) -> BaseException:
    """The first error of a chain (monai.bundle wraps errors raised while a config is parsed)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


@pytest.fixture(scope="module")
def mci_run(tiny_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("mci-run")
    run(workflow(["train"], dataset_dir=tiny_cohort, output_dir=str(out), epochs=1, batch_size=2, **RUN, **LOADER))
    return out


def _test_items(cohort: str) -> list[dict]:
    items = json.loads((Path(cohort) / "datalist.json").read_text())["test"]
    return [{**item, "image": str(Path(cohort) / item["image"])} for item in items]


def _reference_probabilities(run_dir: Path, image: str) -> np.ndarray:
    """Softmax of the network built by hand with the run's settings, on one scan loaded as the configs load it."""
    net = AxialNet(num_classes=2, backbone="resnet18", plane=2, num_slices=6, image_size=32, freeze=0.0).eval()
    net.load_state_dict(load_weights(run_dir / "models" / "model.pt"))
    volume = load_volume("image", intensity="percentile")({"image": image})["image"]
    with torch.no_grad():
        return torch.softmax(net(volume.as_tensor()[None]), 1)[0].numpy()


def test_checkpoint_carries_the_run_settings(mci_run, tiny_cohort):
    checkpoint = torch.load(mci_run / "models" / "model.pt", weights_only=True)  # plain data only
    assert set(checkpoint) == {"model", "run"}
    settings = checkpoint["run"]
    assert settings["network"]["class"] == "axial_monai.networks.axialnet.AxialNet"
    kwargs = settings["network"]["kwargs"]
    assert {k: kwargs[k] for k in ("plane", "num_slices", "image_size")} == {
        "plane": 2,
        "num_slices": 6,
        "image_size": 32,
    }
    assert kwargs["backbone"] == "resnet18" and kwargs["normalize"] == "imagenet" and kwargs["num_classes"] == 2
    assert settings["class_names"] == ["sMCI", "pMCI"] and settings["task"] == "pMCI vs sMCI"
    assert settings["intensity"] == "percentile"
    manifest = json.loads((Path(tiny_cohort) / "cohort.json").read_text())
    assert settings["grid"]["shape"] == manifest["shape"]  # read from the training images' headers
    np.testing.assert_allclose(settings["grid"]["affine"], manifest["affine"])
    assert settings["grid"]["orientation"] == "RAS" and settings["grid"]["spacing"] == [3.0, 3.0, 3.0]
    assert settings["template"]["source"] == str(Path(tiny_cohort) / "template.nii.gz")
    assert tuple(settings["template"]["image"].shape) == tuple(manifest["shape"])
    assert {"torch", "monai", "axial-monai"} <= set(settings["versions"])
    restored = RunSettings.load(mci_run)
    assert restored.brain_mask.shape == tuple(manifest["shape"]) and 0.1 < restored.brain_mask.mean() < 0.9


def test_evaluate_inference_and_explain_use_the_run(mci_run, tiny_cohort):
    shutil.rmtree(mci_run / "eval-test")
    # no volume cache: its default uint8 storage rounds the normalised intensities, inference reads them exactly
    run(workflow(["train", "evaluate"], output_dir=str(mci_run), cache="none", **LOADER))
    run(workflow(["inference"], "infer", output_dir=str(mci_run), **LOADER))
    atlas = {
        "atlas": str(Path(tiny_cohort) / "atlas.nii.gz"),
        "atlas_labels": str(Path(tiny_cohort) / "atlas_labels.csv"),
    }
    run(
        workflow(
            ["inference", "explain"],
            "infer",
            output_dir=str(mci_run),
            methods=["attention", "gradcam"],
            plots=False,
            **atlas,
            **LOADER,
        )
    )

    items = _test_items(tiny_cohort)
    evaluated = pd.read_csv(mci_run / "eval-test" / "predictions.csv").set_index("file")
    inferred = pd.read_csv(mci_run / "inference" / "predictions.csv").set_index("file")
    explained = pd.read_csv(mci_run / "explain" / "cohort" / "explanations.csv")
    for table in (evaluated, inferred, explained):
        assert {"prob_sMCI", "prob_pMCI"} <= set(table.columns) and "prob_AD" not in table.columns
        assert set(table["pred_label"]) <= {"sMCI", "pMCI"}
    assert sorted(evaluated.index) == sorted(inferred.index) == sorted(i["image"] for i in items)
    columns = ["prob_sMCI", "prob_pMCI"]
    np.testing.assert_allclose(evaluated.loc[inferred.index, columns], inferred[columns], atol=1e-5)
    for item in items[:3]:  # the network the configs built is the trained one: same probabilities by hand
        expected = _reference_probabilities(mci_run, item["image"])
        np.testing.assert_allclose(inferred.loc[item["image"], columns].to_numpy(float), expected, atol=1e-5)
        sid = Path(item["image"]).name.removesuffix(".nii.gz")
        row = explained.set_index("scan").loc[sid]
        np.testing.assert_allclose(row[columns].to_numpy(float), expected, atol=1e-4)
        attention = pd.read_csv(mci_run / "explain" / sid / "attention.csv")
        assert attention["plane"].unique().tolist() == [2] and len(attention) == 6  # the axial plane, 6 slices


def test_explicit_setting_that_contradicts_the_run_is_refused(mci_run):
    with pytest.raises(RuntimeError) as caught:
        run(workflow(["inference"], "infer", output_dir=str(mci_run), num_slices=24, **LOADER))
    err = _root_error(caught.value)
    assert isinstance(err, SettingsError)
    assert "num_slices=24" in str(err) and "num_slices=6" in str(err) and "\n" not in str(err)
    with pytest.raises(RuntimeError) as caught:  # evaluation checks the same way
        run(workflow(["train", "evaluate"], output_dir=str(mci_run), class_names=["CN", "AD"], **LOADER))
    assert "class_names=['CN', 'AD']" in str(_root_error(caught.value))
    # an explicit value that agrees with the run is fine; so is plane given by name
    settings = load_run_settings(mci_run / "models" / "model.pt", {"num_slices": 6, "plane": "axial", "backbone": None})
    assert settings.network_kwargs["plane"] == 2


def test_backbone_mismatch_is_one_line_naming_the_backbone(mci_run, tmp_path):
    with pytest.raises(RuntimeError) as caught:
        run(workflow(["inference"], "infer", output_dir=str(mci_run), backbone="resnet34", **LOADER))
    message = str(_root_error(caught.value))
    assert "backbone='resnet34'" in message and "backbone='resnet18'" in message and "\n" not in message
    # weights of another backbone under this run's settings (a damaged or hand-made file): one line, no key lists
    checkpoint = torch.load(mci_run / "models" / "model.pt", weights_only=True)
    other = AxialNet(backbone="resnet34", plane=2, num_slices=6, image_size=32, freeze=0.0)
    torch.save({"model": other.state_dict(), "run": checkpoint["run"]}, tmp_path / "model.pt")
    with pytest.raises(InputError) as caught:
        load_run_settings(tmp_path / "model.pt")
    message = str(caught.value)
    assert "backbone='resnet18'" in message and "another backbone" in message and "\n" not in message
    assert "Missing key" not in message and "Unexpected key" not in message


def test_a_copied_checkpoint_alone_is_enough(mci_run, tiny_cohort, tmp_path):
    copy = tmp_path / "shared" / "model.pt"
    copy.parent.mkdir()
    shutil.copy(mci_run / "models" / "model.pt", copy)
    scans = [item["image"] for item in _test_items(tiny_cohort)[:2]]
    out = tmp_path / "out"
    run(workflow(["inference"], "infer", ckpt_path=str(copy), output_dir=str(out), input=scans, **LOADER))
    preds = pd.read_csv(out / "inference" / "predictions.csv").set_index("file")
    reference = pd.read_csv(mci_run / "inference" / "predictions.csv").set_index("file")
    np.testing.assert_allclose(
        preds[["prob_sMCI", "prob_pMCI"]], reference.loc[preds.index, ["prob_sMCI", "prob_pMCI"]], rtol=0, atol=1e-6
    )  # other batches (2 of the scans here, all of them there): float rounding of the batched convolutions only


def test_weights_only_checkpoint_is_refused_then_attached(mci_run, tiny_cohort, tmp_path):
    legacy = tmp_path / "models" / "model.pt"
    legacy.parent.mkdir()
    torch.save(load_weights(mci_run), legacy)  # what training saved before run settings existed
    with pytest.raises(RuntimeError) as caught:
        run(workflow(["inference"], "infer", output_dir=str(tmp_path), **LOADER))
    message = str(_root_error(caught.value))
    assert "without the run settings" in message and "attach_run_settings" in message and "Retrain" in message
    attach_run_settings(legacy, dataset_dir=tiny_cohort, **RUN)
    attached = RunSettings.load(legacy)
    assert attached.network_kwargs == RunSettings.load(mci_run).network_kwargs
    assert attached.control_count == RunSettings.load(mci_run).control_count  # the mean control scan too
    with pytest.raises(InputError, match="another backbone"):  # settings that do not fit the weights
        attach_run_settings(legacy, tmp_path / "wrong.pt", dataset_dir=tiny_cohort, **{**RUN, "backbone": "resnet34"})


def _loaded_mean(images: list[str]) -> np.ndarray:
    load = load_volume("image", intensity="percentile")
    return np.mean([np.asarray(load({"image": image})["image"])[0] for image in images], axis=0)


def test_checkpoint_carries_the_mean_control_scan(mci_run, tiny_cohort, tmp_path, caplog):
    """Training stores the mean of its control scans (label != positive_class), as the network sees them."""
    training = json.loads((Path(tiny_cohort) / "datalist.json").read_text())["training"]
    training = [{**item, "image": str(Path(tiny_cohort) / item["image"])} for item in training]
    controls = [item["image"] for item in training if item["label"] == 0]  # sMCI: class 1 (pMCI) is positive
    assert 0 < len(controls) < len(training)
    stored = torch.load(mci_run / "models" / "model.pt", weights_only=True)["run"]["controls"]
    assert stored["mean"].dtype == torch.float16 and stored["count"] == len(controls)
    settings = RunSettings.load(mci_run)
    assert settings.control_mean.shape == settings.grid.shape and settings.summary()["controls"] == {
        "count": len(controls)
    }
    # from the training dataset's volume cache (uint8: steps of 1/255), then float16
    np.testing.assert_allclose(settings.control_mean.astype(np.float32), _loaded_mean(controls), atol=3e-3)
    # at most `limit` controls, evenly spaced; a scan that cannot be read is left out with a warning
    scans = [*training, {"image": str(tmp_path / "missing.nii.gz"), "label": 0}]
    images, labels = [item["image"] for item in scans], [item["label"] for item in scans]
    load = load_volume("image", intensity="percentile")

    def read(i):
        return load({"image": images[i]})["image"]

    mean, count = mean_control(labels, read, images, 1, settings.grid, limit=3)
    assert count == 2 and "missing.nii.gz" in caplog.text
    np.testing.assert_allclose(mean, _loaded_mean([controls[0], controls[len(controls) // 2]]), atol=1e-6)
    assert mean_control([1] * len(labels), read, images, 1, settings.grid) == (None, 0)


def test_checkpoint_without_the_mean_control_scan_explains_from_the_template_then_attached(
    mci_run, tiny_cohort, tmp_path, capsys
):
    """A 0.2.4 checkpoint: the default map (Integrated Gradients from the mean control scan) starts from the template's
    brain instead, and explanation.json says so; attach_control_mean adds the scan and the default uses it."""
    old = tmp_path / "models" / "model.pt"
    old.parent.mkdir()
    checkpoint = torch.load(mci_run / "models" / "model.pt", weights_only=True)
    del checkpoint["run"]["controls"]
    torch.save(checkpoint, old)
    scans = [item["image"] for item in _test_items(tiny_cohort)[:1]]
    explain = {"output_dir": str(tmp_path), "input": scans, "atlas": None, "plots": False, **LOADER}
    run(workflow(["inference", "explain"], "infer", **explain))
    sid = Path(scans[0]).name.removesuffix(".nii.gz")
    record = json.loads((tmp_path / "explain" / sid / "explanation.json").read_text())
    assert record["baselines"]["ig_baseline"].startswith("template: the model carries no mean control scan")
    # no control among the given training scans: refused, nothing written
    only_pmci = [i for i in _test_items(tiny_cohort) if i["label"] == 1]
    (tmp_path / "pmci.json").write_text(json.dumps({"training": only_pmci}))
    with pytest.raises(InputError, match="No usable control scan"):
        attach_control_mean(old, datalist=str(tmp_path / "pmci.json"))
    assert RunSettings.load(old).control_mean is None
    assert cli.main(["attach-controls", str(old)]) == 0  # from the run's own training split
    assert f"mean of {RunSettings.load(mci_run).control_count} training control scans" in capsys.readouterr().out
    restored, original = RunSettings.load(old), RunSettings.load(mci_run)
    # from the files here, from the volume cache (uint8) at training: equal up to that rounding
    np.testing.assert_allclose(restored.control_mean.astype(np.float32), original.control_mean, atol=3e-3)
    assert restored.control_count == original.control_count and restored.network_kwargs == original.network_kwargs
    assert all(torch.equal(a, b) for a, b in zip(load_weights(old).values(), load_weights(mci_run).values()))
    run(workflow(["inference", "explain"], "infer", **explain))
    assert (tmp_path / "explain" / sid / "integrated_gradients.nii.gz").is_file()
    record = json.loads((tmp_path / "explain" / sid / "explanation.json").read_text())
    assert record["baselines"]["ig_baseline"].startswith("controls: the mean control scan")


def test_training_refuses_images_on_several_grids(tiny_cohort, tmp_path):
    import nibabel as nib

    items = _test_items(tiny_cohort)[:2]
    moved = nib.load(items[1]["image"])
    shifted = moved.affine.copy()
    shifted[:3, 3] += 6.0  # two voxels
    nib.save(nib.Nifti1Image(np.asarray(moved.dataobj), shifted), tmp_path / "shifted.nii.gz")
    datalist = {"training": [items[0], {**items[1], "image": str(tmp_path / "shifted.nii.gz")}]}
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    recipe = functools.partial(AxialNet, num_classes=2, backbone="resnet18")
    with pytest.raises(InputError, match=r"unusable: .*shifted\.nii\.gz.*shifted by.*not on one grid"):
        training_settings(recipe, ["CN", "AD"], dataset_dir=str(tmp_path), datalist=str(tmp_path / "datalist.json"))


@pytest.mark.parametrize("saver_class", [AtomicCheckpointSaver, CheckpointSaver])
def test_checkpoint_is_replaced_atomically(saver_class, tmp_path, monkeypatch):
    """A crash while the new best checkpoint is written leaves the previous one whole; MONAI's own saver (the
    control) deletes the old file first and writes in place, so the same crash leaves a broken ``model.pt``."""
    net = torch.nn.Linear(2, 2)
    scores = {1: 0.5, 2: 0.9}

    def step(engine, batch):
        if engine.state.epoch == 2:
            with torch.no_grad():
                net.weight.add_(1.0)

    engine = Engine(step)

    @engine.on(Events.EPOCH_COMPLETED)
    def _metric(e):
        e.state.key_metric_name = "mcc"
        e.state.metrics = {"mcc": scores[e.state.epoch]}

    saver_class(str(tmp_path), {"model": net}, save_key_metric=True, key_metric_filename="model.pt").attach(engine)
    first = {k: v.clone() for k, v in net.state_dict().items()}
    real_save, calls = torch.save, []

    def crash_on_second_save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:
            Path(f).write_bytes(b"half a checkpoint")
            raise OSError("disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crash_on_second_save)
    with pytest.raises(OSError, match="disk full"):
        engine.run([0], max_epochs=2)
    if saver_class is CheckpointSaver:
        with pytest.raises(Exception):  # noqa: B017 - whatever torch raises on a truncated file
            torch.load(tmp_path / "model.pt", weights_only=True)
        return
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(saved[k], first[k]) for k in first)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # the temporary file is gone
