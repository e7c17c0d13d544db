"""``axial-monai deploy BUNDLE OUT``: the MONAI Deploy application folder of an exported bundle.

The folder holds the bundle (checked against its manifest first, and copied as it is: data only), the application's
entry point (``app.py``; ``python OUT -i STUDY -o RESULTS`` runs it too), the ``app.yaml`` that MONAI Deploy's
packager reads, and ``requirements.txt``. The application's code is this package's :mod:`axial_monai.deploy.app`,
installed with it; the folder carries no code of the sender.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from .. import __version__
from ..errors import InputError, SettingsError
from ..export.compiled import deploy_config
from ..io import write_text
from ..run.layout import BundleLayout
from ..run.received import verify_manifest

__all__ = ["APP_FILES", "check_compiled_configs", "write_application"]

#: the files of an application folder besides ``bundle/``.
APP_FILES = ("app.py", "__main__.py", "app.yaml", "requirements.txt", "README.md")

_ENTRY = '''"""MONAI Deploy application of the bundle in ./bundle (written by axial-monai deploy)."""

import sys
from pathlib import Path

from axial_monai.deploy.launch import main

if __name__ == "__main__":
    sys.exit(main(bundle=Path(__file__).resolve().parent / "bundle"))
'''

_README = """# {name} {version}: MONAI Deploy application

Written by `axial-monai deploy` (axial-monai {package}). Run it on a folder of DICOM files (one study):

    pip install -r requirements.txt
    python app.py -i STUDY_FOLDER -o RESULTS_FOLDER

It writes `result.json`, `report.dcm` (a DICOM Structured Report: class, probabilities, model name and version, QC
figures, referencing the T1 series) and `picture.dcm` (a secondary capture of the explanation map over the scan, or
of the QC picture of a refused study). Exit status: 0 answered, 1 refused (`result.json` says why), 2 bad input.
Package it with MONAI Deploy's packager: `monai-deploy package . -c app.yaml -t NAME:TAG --platform x86_64`.
"""


def _app_yaml(name: str, version: str) -> str:
    return (
        "application:\n"
        f"  title: {name} (axial-monai MONAI Deploy application)\n"
        f"  version: {version}\n"
        "  inputFormats: [file]\n"
        "  outputFormats: [file]\n"
        "resources:\n"
        "  cpu: 2\n"
        "  gpu: 0  # runs on a GPU when there is one\n"
        "  memory: 8Gi\n"
    )


def check_compiled_configs(model: str | os.PathLike) -> None:
    """Refuse a ``model.ts`` whose ``extra/inference.json`` is not the one this installation writes
    (:func:`~axial_monai.export.compiled.deploy_config`): the SDK evaluates its ``$`` expressions, which would be the
    sender's code."""
    model = Path(model)
    try:
        with zipfile.ZipFile(model) as archive:
            names = [n for n in archive.namelist() if n.endswith("/extra/inference.json")]
            carried = json.loads(archive.read(names[0])) if len(names) == 1 else None
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        raise InputError(f"{model}: not a TorchScript archive ({err}).") from None
    if carried != json.loads(json.dumps(deploy_config())):
        raise InputError(
            f"{model}: its extra/inference.json is not the one axial-monai {__version__} writes; MONAI Deploy would "
            "run its expressions (the sender's code). Export the run again with this version."
        )


def write_application(bundle: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the MONAI Deploy application folder of the exported ``bundle`` into ``out``.

    Args:
        bundle: an exported bundle folder (``axial-monai export``), with its compiled ``models/model.ts``.
        out: the application folder to write.
        overwrite: replace an existing ``out``.

    Returns:
        ``out``.

    Raises:
        InputError: if the bundle fails its manifest or has no ``model.ts``.
        SettingsError: if ``out`` exists and ``overwrite`` is false.
    """
    bundle, out = Path(bundle).resolve(), Path(out).resolve()
    if not bundle.is_dir():
        raise InputError(f"{bundle}: not an exported bundle folder (axial-monai export writes one).")
    verify_manifest(bundle)
    if not (bundle / BundleLayout.TORCHSCRIPT).is_file():
        raise InputError(
            f"{bundle} has no {BundleLayout.TORCHSCRIPT}: export the run again with the compiled model "
            "(axial-monai export RUN OUT --torchscript true)."
        )
    check_compiled_configs(bundle / BundleLayout.TORCHSCRIPT)
    if out.exists() and not overwrite:
        raise SettingsError(f"{out} exists: choose another folder, or pass --overwrite true.")
    meta = json.loads((bundle / BundleLayout.METADATA).read_text())
    name, version = str(meta.get("name", bundle.name)), str(meta.get("version", "0.0.0"))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # renamed into place once complete
    try:
        shutil.copytree(bundle, work / "bundle")
        write_text(work / "app.py", _ENTRY)
        write_text(work / "__main__.py", _ENTRY)
        write_text(work / "app.yaml", _app_yaml(name, version))
        requirements = [f"axial-monai[deploy]=={__version__}", "monai-deploy-app-sdk>=4.0", "highdicom>=0.28"]
        write_text(work / "requirements.txt", "\n".join(requirements) + "\n")
        write_text(work / "README.md", _README.format(name=name, version=version, package=__version__))
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
