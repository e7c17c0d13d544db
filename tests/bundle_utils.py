"""Helpers to run the bundle's configs through monai.bundle in tests."""

from __future__ import annotations

from pathlib import Path

from monai.bundle import ConfigWorkflow

from axial_monai.configs import config_path

#: the repository's bundle folder (its ``models/`` must never be written by tests)
BUNDLE = Path(__file__).resolve().parents[1] / "bundle"

#: tiny network and loader settings shared by the bundle tests (CPU, seconds per epoch)
TINY = {"num_slices": 6, "image_size": 32, "batch_size": 2, "num_workers": 0}


def workflow(configs: list[str], workflow_type: str = "train", **override) -> ConfigWorkflow:
    """A ConfigWorkflow over the shipped ``<name>.json`` configs merged in order, with overrides."""
    files = [str(config_path(c)) for c in configs]
    return ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(config_path("metadata")),
        logging_file=str(config_path("logging.conf")),
        workflow_type=workflow_type,
        **override,
    )


def run(wf: ConfigWorkflow) -> None:
    """initialize -> check_properties (must be []) -> run -> finalize."""
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
