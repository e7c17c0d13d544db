"""The shipped configs are found from a checkout and from a regular (non-editable) install, whose console scripts
run a cross-validation."""

import configparser
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from setuptools import find_packages
from test_crossval import TINY, write_tree

from axial_monai.configs import CONFIG_DIR, config_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the project (the checkout gets no build folders), without build isolation."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "axial_monai", source / "axial_monai", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "bundle" / "configs", source / "bundle" / "configs")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), "."],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (built,) = tmp.glob("axial_monai-*.whl")
    return built


def _site_dirs() -> list[str]:
    """This interpreter's site-packages folders, where the dependencies (torch, monai, ...) are installed."""
    paths = sysconfig.get_paths()
    found = [paths["purelib"], paths["platlib"], *site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        found.append(site.getusersitepackages())
    return [p for p in dict.fromkeys(found) if Path(p).is_dir()]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A fresh venv with the wheel pip-installed (non-editable; nothing downloaded) and the run environment.

    The venv sees the already-installed dependencies through a ``.pth`` file that lists this interpreter's
    site-packages folders: plain path lines are appended to ``sys.path``, the ``.pth`` files in those folders are not
    executed, so the editable install of the checkout (a meta-path finder set up by such a ``.pth``) stays off.

    Returns:
        ``{"bin": scripts folder, "site": the venv's site-packages, "env": environment, "cwd": a folder outside
        the checkout}``.
    """
    tmp = tmp_path_factory.mktemp("install")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # no PYTHONPATH, here and in every run below: with the checkout on it, its egg-info makes pip skip the install
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    # this interpreter's pip installs into the venv (--python): no ensurepip, no index, no dependency resolution
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    venv_site = Path(
        subprocess.run([python, "-I", "-c", query], capture_output=True, text=True, check=True).stdout.strip()
    )
    assert venv_site.is_relative_to(venv)
    # after the install: pip would otherwise see the checkout's editable axial-monai as installed already
    (venv_site / "_dependencies.pth").write_text("\n".join(_site_dirs()) + "\n")
    env.update(OMP_NUM_THREADS="1", AXIAL_MONAI_CACHE=str(tmp / "cache"))
    cwd = tmp / "work"
    cwd.mkdir()
    return {"bin": venv / "bin", "site": venv_site, "env": env, "cwd": cwd}


def _run(installed: dict, script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``script`` of the venv from a folder outside the checkout, without PYTHONPATH."""
    command = [str(installed["bin"] / script), *args]
    return subprocess.run(command, cwd=installed["cwd"], env=installed["env"], capture_output=True, text=True)


def test_config_path_finds_the_repository_configs():
    assert CONFIG_DIR == ROOT / "bundle" / "configs"
    assert config_path("train") == CONFIG_DIR / "train.json"
    assert config_path("train.json") == config_path("train")
    assert config_path("logging.conf").is_file()
    with pytest.raises(FileNotFoundError, match=r"'nope\.json'.*train\.json"):
        config_path("nope")


def test_setup_cfg_lists_every_package():
    """setup.cfg lists the packages (not `find:`, see there): a new subpackage must be added to it."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    listed = set(setup["options"]["packages"].split())
    assert listed == {*find_packages(where=str(ROOT), include=["axial_monai*"]), "axial_monai._bundle_configs"}


def test_wheel_ships_the_configs(wheel, tmp_path):
    """Unpack the wheel of a copy of the project elsewhere and locate the configs from there."""
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    shipped = sorted(p.name for p in (unpacked / "axial_monai" / "_bundle_configs").iterdir())
    assert shipped == sorted(p.name for p in CONFIG_DIR.iterdir())
    # a fresh interpreter that sees only the unpacked wheel (-I: no PYTHONPATH, no checkout on sys.path)
    probe = "import sys; sys.path.insert(0, sys.argv[1]); from axial_monai.configs import config_path; "
    probe += "print(config_path('train'))"
    found = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(unpacked)], capture_output=True, text=True, check=True
    )
    path = Path(found.stdout.strip())
    assert path == unpacked / "axial_monai" / "_bundle_configs" / "train.json" and path.is_file()


def test_installed_package_is_the_venv_copy(installed):
    """The venv imports axial_monai from its own site-packages: not the checkout, not the editable install."""
    probe = "import json, sys, axial_monai; print(json.dumps([axial_monai.__file__, sys.path]))"
    found = _run(installed, "python", "-c", probe)
    assert found.returncode == 0, found.stderr[-3000:]
    module, path = json.loads(found.stdout)
    assert Path(module) == installed["site"] / "axial_monai" / "__init__.py"
    # the checkout is nowhere on the path: the venv's site-packages is the only folder with an axial_monai package
    assert [p for p in path if (installed["cwd"] / p / "axial_monai").exists()] == [str(installed["site"])]
    for script in ("axial-monai", "axial-monai-preprocess", "axial-monai-crossval"):  # they run the venv's python
        head = (installed["bin"] / script).read_text().splitlines()[:3]  # a shebang, or pip's /bin/sh exec trick
        assert str(installed["bin"] / "python") in "\n".join(head), (script, head)


@pytest.mark.parametrize(
    "command, expected",
    [
        (["axial-monai", "demo", "--help"], ["usage: axial-monai demo", "--output_dir", "--epochs"]),
        (["axial-monai-crossval", "-h"], ["usage: axial-monai-crossval BIDS_DIR", "--raw_images", "--horizon"]),
        (
            ["axial-monai-preprocess", "-h"],
            ["usage: axial-monai-preprocess BIDS_DIR OUT_DIR", "--template", "--resolution"],
        ),
    ],
    ids=["demo", "crossval", "preprocess"],
)
def test_installed_console_scripts_answer_help(installed, command, expected):
    shown = _run(installed, *command)
    assert shown.returncode == 0, shown.stderr[-3000:]
    for text in expected:
        assert text in shown.stdout, (text, shown.stdout)


def test_installed_crossval_runs_on_a_bids_tree(installed):
    """A 2-fold, 1-epoch cross-validation through the venv's console script, with the configs shipped in the wheel."""
    bids = write_tree(installed["cwd"] / "bids")
    out = installed["cwd"] / "cv"
    overrides = json.dumps(TINY)  # 1 epoch, 4 slices of 32 px
    done = _run(
        installed,
        "axial-monai-crossval",
        str(bids),
        str(out),
        "--raw_images",
        "--k",
        "2",
        "--noprogress",
        "--overrides",
        overrides,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert str(out / "summary.csv") in done.stdout
    record = json.loads((out / "crossval.json").read_text())
    assert record["k"] == 2 and [Path(p) for p in record["config_files"]] == [
        installed["site"] / "axial_monai" / "_bundle_configs" / "train.json"
    ]
    folds = pd.read_csv(out / "folds.csv")
    assert sorted(folds["fold"].unique()) == [0, 1] and set(folds["level"]) == {"scan", "subject"}
    scans = folds[folds["level"] == "scan"]
    assert scans["n_scans"].sum() == record["n_scans"] == 28  # every AD/CN scan of the tree tested once
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) and (summary["n_folds"] == 2).all()
    assert all((out / f"fold-{i}" / "models" / "model.pt").is_file() for i in (0, 1))
    assert any((Path(installed["env"]["AXIAL_MONAI_CACHE"]) / "volumes").iterdir())  # not the user's ~/.cache
