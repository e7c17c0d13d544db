"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest


def pytest_configure(config) -> None:
    """Under pytest-xdist each worker is one of several test processes on the same cores: one compute thread each,
    in the worker (torch, OpenMP, BLAS) and in the processes its tests start (the environment variables). Several
    processes with a thread per core each oversubscribe the cores, and OpenMP threads that wait for work spin."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        from threadpoolctl import threadpool_limits

        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = "1"
        torch.set_num_threads(1)
        threadpool_limits(1)


def pytest_collection_modifyitems(config, items) -> None:
    """The files marked ``slow`` run first (a stable sort: each file stays whole and in order): under pytest-xdist
    (``--dist loadfile``) a file of several minutes that starts last would end the suite minutes after the others."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def shared_resource(tmp_path_factory, name: str, build: Callable[[Path], str]) -> str:
    """``build(folder)`` once per test session, also when pytest-xdist runs it in several workers: the first worker
    builds it in the session's common temporary folder, under a file lock, and the others wait and take its result
    (the string ``build`` returns, kept in ``<name>.done``)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker has its own folder below the session's
        root = root.parent
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            done.write_text(str(build(folder)))
    return done.read_text()


@pytest.fixture(scope="session", autouse=True)
def volume_cache_dir(tmp_path_factory):
    """Tests keep every cache (volumes, preprocessed and received scans of predict) in a temporary folder, never in
    the user's ~/.cache: $AXIAL_MONAI_CACHE, which subprocesses inherit too."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AXIAL_MONAI_CACHE", str(root))
        yield root / "volumes"


@pytest.fixture
def no_network(monkeypatch):
    """Make any attempt to open a network connection fail loudly; yields the list of attempted addresses."""
    attempts: list = []

    def guard(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network access blocked in tests: {address}")

    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket.socket, "connect_ex", guard)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: guard(None, address))
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: guard(None, host))
    yield attempts


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a test module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): on 2
    shared, busy cores, two threads make the tiny trainings of the tests several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """A small 3 mm demo cohort (40 subjects, strong atrophy, 10 validation and 10 test subjects)."""
    from axial_monai.data.demo import prepare_demo_cohort

    def build(root: Path) -> str:
        return prepare_demo_cohort(
            str(root), n_subjects=40, spacing=3.0, strength=0.9, val_fraction=0.25, test_fraction=0.25
        )

    return shared_resource(tmp_path_factory, "cohort", build)


@pytest.fixture(scope="session")
def trained_demo(tiny_cohort, tmp_path_factory):
    """Output directory of a real (small) training run of train.json on ``tiny_cohort``: ~30 s on 2 CPU cores."""
    from bundle_utils import run, workflow

    settings = {"num_slices": 16, "image_size": 64, "batch_size": 2, "num_workers": 0, "epochs": 15}

    def build(out: Path) -> Path:
        run(workflow(["train"], dataset_dir=tiny_cohort, output_dir=str(out), **settings))
        return out

    return Path(shared_resource(tmp_path_factory, "trained", build))


@pytest.fixture(scope="session")
def explained_demo(trained_demo, tiny_cohort, tmp_path_factory):
    """``trained_demo`` after ``run explaining`` on its test scans (the settings of test_explain_bundle.py): the
    run folder, with ``explain/<scan>/`` and ``explain/cohort/``."""
    from bundle_utils import run, workflow

    settings = {"num_slices": 16, "image_size": 64, "num_workers": 0}
    atlas = {
        "atlas": str(Path(tiny_cohort) / "atlas.nii.gz"),
        "atlas_labels": str(Path(tiny_cohort) / "atlas_labels.csv"),
    }

    def build(_: Path) -> Path:  # writes into the run folder, once for all workers
        run(
            workflow(
                ["inference", "explain"],
                "infer",
                dataset_dir=tiny_cohort,
                output_dir=str(trained_demo),
                **atlas,
                **settings,
            )
        )
        return trained_demo

    return Path(shared_resource(tmp_path_factory, "explained", build))
