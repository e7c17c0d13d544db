"""The model zoo's checks of a bundle, as its CI runs them, offline (run by tests/test_export.py).

Run from the bundle folder, in an environment that has MONAI and the bundle's requirements but not axial-monai:

    python zoo_checks.py SCHEMA OUT_DIR

It follows Project-MONAI/model-zoo ``ci/verify_bundle.py`` (full mode) and the layout checks of its
``ci/unit_tests``: the necessary and preferred files, version and changelog, ``verify_metadata`` against the
schema (a local copy: nothing is downloaded), ``check_properties()`` of every workflow with no overrides (the zoo
runs the inference one), ``verify_net_in_out``, ``ckpt_export`` in its default mode (TorchScript scripting, no
``key_in_ckpt``, the bundle folder on ``sys.path`` as the zoo puts it) and loading the shipped ``models/model.ts``.
It prints ``ZOO-CHECKS <json>``: each check with ``"pass"`` or the error.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import torch
from monai.bundle import ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out

META, INFER = "configs/metadata.json", "configs/inference.json"
WORKFLOWS = {
    "inference": ([INFER], "infer"),
    "explain": ([INFER, "configs/explain.json"], "infer"),
    "train": (["configs/train.json"], "train"),
    "evaluate": (["configs/train.json", "configs/evaluate.json"], "train"),
}


def layout() -> None:
    for path in ("configs/metadata.json", "LICENSE", "models/model.pt", INFER, "docs/README.md"):
        if not os.path.isfile(path):
            raise FileNotFoundError(path)
    for folder in ("configs", "models", "docs"):
        if not os.path.isdir(folder):
            raise FileNotFoundError(folder)


def version() -> None:
    meta = json.load(open(META))
    if meta["version"] not in meta.get("changelog", {}):
        raise ValueError(f"version {meta['version']} is not in the changelog")


def properties(files: list[str], kind: str) -> None:
    workflow = ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=META,
        logging_file="configs/logging.conf",
        workflow_type=kind,
    )
    workflow.initialize()
    missing = workflow.check_properties()
    if missing:
        raise ValueError(f"check_properties: {missing}")


def torchscript(out: str) -> None:
    sys.path.insert(0, os.getcwd())  # the zoo's verify_bundle puts the bundle folder on the path
    ckpt_export(
        net_id="network_def",
        filepath=os.path.join(out, "verify_model.ts"),
        ckpt_file="models/model.pt",
        meta_file=META,
        config_file=INFER,
        bundle_root=".",
    )
    torch.jit.load("models/model.ts")


def main(schema: str, out: str) -> None:
    checks = {
        "layout": layout,
        "version_changelog": version,
        "verify_metadata": lambda: verify_metadata(meta_file=META, filepath=schema),
        **{f"check_properties_{name}": (lambda f=f, k=k: properties(f, k)) for name, (f, k) in WORKFLOWS.items()},
        "verify_net_in_out": lambda: verify_net_in_out(
            net_id="network_def", meta_file=META, config_file=INFER, bundle_root="."
        ),
        "ckpt_export_scripted": lambda: torchscript(out),
    }
    results = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "pass"
        except Exception as err:  # noqa: BLE001 - every check is reported
            results[name] = f"{type(err).__name__}: {err} | {traceback.format_exc(limit=-3)}"
    print("ZOO-CHECKS " + json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
