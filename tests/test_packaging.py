"""The shipped configs are found from a checkout and from a regular (non-editable) install."""

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

from axial_monai.configs import CONFIG_DIR, config_path

ROOT = Path(__file__).resolve().parents[1]


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


def test_wheel_ships_the_configs(tmp_path):
    """Build a wheel of a copy of the project, unpack it elsewhere and locate the configs from there."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "axial_monai", source / "axial_monai", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "bundle" / "configs", source / "bundle" / "configs")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = tmp_path.glob("axial_monai-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    shipped = sorted(p.name for p in (site / "axial_monai" / "_bundle_configs").iterdir())
    assert shipped == sorted(p.name for p in CONFIG_DIR.iterdir())
    # a fresh interpreter that sees only the unpacked wheel (-I: no PYTHONPATH, no checkout on sys.path)
    probe = "import sys; sys.path.insert(0, sys.argv[1]); from axial_monai.configs import config_path; "
    probe += "print(config_path('train'))"
    found = subprocess.run([sys.executable, "-I", "-c", probe, str(site)], capture_output=True, text=True, check=True)
    path = Path(found.stdout.strip())
    assert path == site / "axial_monai" / "_bundle_configs" / "train.json" and path.is_file()
