"""Export round trip: a trained run becomes a model-zoo bundle that runs where axial_monai cannot be imported.

The clean environment is a virtual environment whose site-packages reaches this interpreter's packages through a
plain path in a ``.pth`` file. Such a path is added to ``sys.path`` but its own ``.pth`` files are not run, so the
editable-install hook of axial_monai never activates; with the bundle folder as working directory and no
PYTHONPATH, ``import axial_monai`` fails there unless the bundle's ``scripts/`` folder is put on the path (which the
bundle's configs do).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from bundle_utils import run, workflow
from monai.bundle import ConfigParser

from axial_monai.explain import DEFAULT_METHOD
from axial_monai.export import LARGE_FILE_BYTES, export_bundle
from axial_monai.run import RunSettings, load_weights

#: written into the clean environment: at exit, every imported module and its file go to $AXIAL_AUDIT.
AUDIT = """import atexit, json, os, sys


def _dump():
    modules = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}
    with open(os.environ["AXIAL_AUDIT"], "w") as handle:
        json.dump(modules, handle)


# only the process started by the test: a helper process it spawns (e.g. multiprocessing's resource tracker)
# inherits the marker and must not overwrite the file with its own few modules
if os.environ.get("AXIAL_AUDIT") and not os.environ.get("AXIAL_AUDIT_PID"):
    os.environ["AXIAL_AUDIT_PID"] = str(os.getpid())
    atexit.register(_dump)
"""

#: run in the clean environment from the bundle folder: the model zoo's checks of a bundle.
ZOO_CHECKS = """import json, sys
import torch
from monai.bundle import ConfigWorkflow, ckpt_export, verify_net_in_out

meta, infer = "configs/metadata.json", "configs/inference.json"
shape = json.load(open(meta))["network_data_format"]["inputs"]["image"]["spatial_shape"]
result = {}
for name, files in {"inference": infer, "explain": [infer, "configs/explain.json"]}.items():
    workflow = ConfigWorkflow(
        config_file=files, meta_file=meta, logging_file="configs/logging.conf", workflow_type="infer",
        bundle_root=".", input=sys.argv[1], output_dir=sys.argv[2],
    )
    workflow.initialize()
    result[name] = workflow.check_properties()
verify_net_in_out(net_id="network_def", meta_file=meta, config_file=infer, bundle_root=".")
ts = sys.argv[2] + "/check.ts"
ckpt_export(
    net_id="network_def", filepath=ts, ckpt_file="models/model.pt", meta_file=meta, config_file=infer,
    bundle_root=".", use_trace=True, input_shape=[1, 1, *shape],
)
result["ts_output"] = list(torch.jit.load(ts)(torch.rand(1, 1, *shape)).shape)
print("ZOO-CHECKS " + json.dumps(result))
"""


def _clean_python(root: Path) -> Path:
    """A venv without pip whose site-packages links this interpreter's through a plain path (no editable hooks)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    outer = sysconfig.get_paths()["purelib"]
    (site / "outer_site_packages.pth").write_text(outer + "\n")
    (site / "sitecustomize.py").write_text(AUDIT)
    return python


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    return {**env, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **extra}


def _requirement_closure(names: list[str]) -> set[str]:
    """Distributions named and everything they require (markers evaluated), normalised names."""
    from packaging.requirements import Requirement

    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    todo, seen = [norm(n) for n in names], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(norm(requirement.name))
    return seen


@pytest.fixture(scope="module")
def exported(trained_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    bundle = export_bundle(trained_demo, root / "axial_demo")
    elsewhere = tmp_path_factory.mktemp("unzipped")
    with zipfile.ZipFile(bundle.archive) as archive:
        archive.extractall(elsewhere)
    return bundle, elsewhere / "axial_demo"


def test_bundle_layout_and_metadata(exported, trained_demo):
    bundle, _ = exported
    folder = bundle.folder
    for path in (
        "LICENSE",
        "large_files.yml",
        "configs/inference.json",
        "configs/explain.json",
        "configs/metadata.json",
        "configs/logging.conf",
        "models/model.pt",
        "models/model.ts",
        "models/template.nii.gz",
        "models/brain_mask.nii.gz",
        "models/control_mean.nii.gz",
        "docs/README.md",
        "docs/data_license.txt",
        "scripts/axial_monai/networks/axialnet.py",
    ):
        assert (folder / path).is_file(), path
    # weights only: a plain state dict, equal to the run's weights
    weights = torch.load(folder / "models" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    original = load_weights(trained_demo)
    assert weights.keys() == original.keys() and all(torch.equal(weights[k], original[k]) for k in original)
    # vendored code: verbatim copies, nothing of the preprocessing (ANTs), cross-validation or command line
    vendored = sorted(p.relative_to(folder / "scripts").as_posix() for p in (folder / "scripts").rglob("*.py"))
    repo = Path(__file__).resolve().parents[1]
    for rel in vendored:
        assert (folder / "scripts" / rel).read_bytes() == (repo / rel).read_bytes(), rel
    assert not [v for v in vendored if re.match(r"axial_monai/(preprocess|crossval|cli|export|run_settings)", v)]
    meta = json.loads((folder / "configs" / "metadata.json").read_text())
    settings = RunSettings.load(trained_demo)
    # the mean control scan (the default explanation baseline) on the input grid, and its terms in the data licence
    control = nib.load(folder / "models" / "control_mean.nii.gz")
    np.testing.assert_array_equal(control.get_fdata(), settings.control_mean.astype(np.float32))
    np.testing.assert_allclose(control.affine, settings.grid.affine)
    assert f"mean of {settings.control_count} control scans" in (folder / "docs" / "data_license.txt").read_text()
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == list(settings.grid.shape)
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "CN", "1": "AD"}
    assert meta["monai_version"] == metadata.version("monai") and meta["pytorch_version"] == metadata.version("torch")
    assert meta["required_packages_version"]["torchvision"] == metadata.version("torchvision")
    assert "axial-monai" not in meta["required_packages_version"] and "antspyx" not in meta["required_packages_version"]
    assert meta["version"] in meta["changelog"]
    report = json.loads((trained_demo / "eval-test" / "metrics.json").read_text())["metrics"]
    assert meta["eval_metrics"]["accuracy"] == pytest.approx(report["accuracy"])
    readme = (folder / "docs" / "README.md").read_text()
    assert f"| accuracy | {report['accuracy']:.3f} |" in readme and "## **Model Description**" in readme
    # every path of the configs is relative to bundle_root
    for name in ("inference", "explain"):
        text = (folder / "configs" / f"{name}.json").read_text()
        assert str(trained_demo) not in text and "/tmp" not in text and "/work" not in text
    # large files: over 25 MB, listed with their sha256
    large = [
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.stat().st_size > LARGE_FILE_BYTES
    ]
    assert sorted(large) == sorted(bundle.large_files) and "models/model.pt" in large
    listed = (folder / "large_files.yml").read_text()
    import hashlib

    for path in large:
        assert f'path: "{path}"' in listed and hashlib.sha256((folder / path).read_bytes()).hexdigest() in listed


def test_round_trip_in_a_clean_environment(exported, trained_demo, tiny_cohort, tmp_path):
    _, bundle = exported
    python = _clean_python(tmp_path / "venv")
    new_scan = tmp_path / "new" / "new_scan.nii.gz"
    new_scan.parent.mkdir()
    test_image = json.loads((Path(tiny_cohort) / "datalist.json").read_text())["test"][0]["image"]
    shutil.copy(Path(tiny_cohort) / test_image, new_scan)
    out = tmp_path / "bundle-out"

    # proof: the project's package cannot be imported here, except from the bundle's scripts/
    probe = subprocess.run([python, "-c", "import axial_monai"], cwd=bundle, env=_env(), capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'axial_monai'" in probe.stderr
    found = subprocess.check_output(
        [python, "-c", "import sys; sys.path.insert(0, 'scripts'); import axial_monai; print(axial_monai.__file__)"],
        cwd=bundle,
        env=_env(),
        text=True,
    )
    assert Path(found.strip()).resolve().is_relative_to(bundle.resolve())

    audit = tmp_path / "modules.json"
    command = [python, "-m", "monai.bundle", "run", "inferring", "--config_file", "configs/inference.json"]
    command += ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"]
    # a damaged file next to the new scan: skipped, listed, and the run ends with exit status 1 after the good scan
    broken = new_scan.parent / "broken_T1w.nii.gz"
    broken.write_bytes(b"not a nifti file")
    command += ["--input", str(new_scan.parent), "--output_dir", str(out)]
    done = subprocess.run(command, cwd=bundle, env=_env(AXIAL_AUDIT=str(audit)), capture_output=True, text=True)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 scan(s) were skipped" in done.stdout + done.stderr and "Traceback" not in done.stdout + done.stderr
    assert pd.read_csv(out / "inference" / "skipped.csv")["file"].tolist() == [str(broken)]

    # the predictions equal the original run's on the same scan
    exported_preds = pd.read_csv(out / "inference" / "predictions.csv")
    assert exported_preds["file"].tolist() == [str(new_scan)]
    reference_dir = tmp_path / "reference"
    run(
        workflow(
            ["inference"],
            "infer",
            input=[str(new_scan)],
            output_dir=str(reference_dir),
            ckpt_path=str(trained_demo / "models" / "model.pt"),
            num_workers=0,
        )
    )
    reference = pd.read_csv(reference_dir / "inference" / "predictions.csv")
    np.testing.assert_allclose(exported_preds[["prob_CN", "prob_AD"]], reference[["prob_CN", "prob_AD"]], atol=1e-5)

    # only what the bundle carries and what its metadata lists (with their own requirements) was imported, beyond what
    # MONAI imports by itself (its optional packages, when installed: a baseline run that loads no bundle)
    baseline_audit = tmp_path / "baseline.json"
    baseline = "import fire, ignite.engine, monai.bundle.__main__, monai.data, monai.engines, monai.handlers, "
    baseline += "monai.inferers, monai.networks.nets, monai.transforms, monai.visualize"
    subprocess.run([python, "-c", baseline], cwd=bundle, env=_env(AXIAL_AUDIT=str(baseline_audit)), check=True)
    monai_own = set(json.loads(baseline_audit.read_text()))
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    allowed = _requirement_closure(["monai", "torch", "numpy", *meta["required_packages_version"]])
    providers = metadata.packages_distributions()
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    outside = []
    for name, file in json.loads(audit.read_text()).items():
        if file is None or name in monai_own or Path(file).resolve().is_relative_to(stdlib):
            continue
        if Path(file).resolve().is_relative_to(bundle.resolve()):
            continue
        top = name.split(".")[0]
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(top, [])}
        if top in sys.stdlib_module_names or not dists or not dists & allowed:
            outside.append(f"{name} ({file})")
    loaded = json.loads(audit.read_text())
    assert Path(loaded["axial_monai"]).resolve().is_relative_to(bundle.resolve())
    assert "axial_monai.networks.axialnet" in loaded and "axial_monai.preprocess" not in loaded
    assert outside == []

    # the model zoo's checks, in the same clean environment
    checks = subprocess.run(
        [python, "-c", ZOO_CHECKS, str(new_scan), str(tmp_path / "zoo")],
        cwd=bundle,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert checks.returncode == 0, checks.stdout[-3000:] + checks.stderr[-3000:]
    result = json.loads(checks.stdout.split("ZOO-CHECKS ")[-1])
    assert result["inference"] == [] and result["explain"] == []
    assert result["ts_output"] == [1, 2]


def test_exported_configs_resolve_every_path_from_bundle_root(exported, tmp_path):
    bundle, _ = exported
    moved = tmp_path / "moved"
    shutil.copytree(bundle.folder, moved)
    parser = ConfigParser()
    parser.read_config(str(moved / "configs" / "inference.json"))
    parser.update({"bundle_root": str(moved)})
    assert parser.get_parsed_content("ckpt_path") == os.path.join(str(moved), "models", "model.pt")
    check = parser.get_parsed_content("input_check")
    meta = json.loads((moved / "configs" / "metadata.json").read_text())
    assert list(check.grid.shape) == meta["network_data_format"]["inputs"]["image"]["spatial_shape"]
    assert check.hint("x.nii.gz").endswith(f"--model {moved}")


def test_predict_runs_an_exported_bundle(exported, trained_demo, tiny_cohort, tmp_path):
    """``axial-monai predict --model BUNDLE`` gives what the run gives (a scan on the grid: no preprocessing)."""
    from axial_monai.predict import predict_scans

    scan = Path(tiny_cohort) / "images" / "sub-0001_T1w.nii.gz"
    quiet = {"echo": lambda *_: None, "cache_dir": tmp_path / "cache"}
    # explained with explain.json's defaults: the bundle's Integrated Gradients baseline is models/control_mean.nii.gz
    quiet["bundle_overrides"] = {"atlas": None, "plots": False}
    (by_bundle,) = predict_scans([scan], exported[0].folder, out=tmp_path / "bundle", explain=True, **quiet)
    (by_run,) = predict_scans([scan], trained_demo, out=tmp_path / "run", explain=True, **quiet)
    assert by_bundle.problem is None and not by_bundle.preprocessed
    assert by_bundle.probabilities == pytest.approx(by_run.probabilities, abs=1e-5)
    maps = [
        nib.load(tmp_path / out / "sub-0001_T1w" / f"{DEFAULT_METHOD}.nii.gz").get_fdata() for out in ("bundle", "run")
    ]
    assert maps[0].max() > 0
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-3)  # the same map: float16 mean in the checkpoint vs NIfTI
    assert json.loads((tmp_path / "bundle" / "sub-0001_T1w" / "prediction.json").read_text())["model"] == str(
        exported[0].folder
    )
