"""Shared pytest fixtures."""

from __future__ import annotations

import socket

import pytest


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


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """A small 4 mm demo cohort (16 subjects, strong atrophy) shared by the bundle tests."""
    from axial_monai.data import prepare_demo_cohort

    return prepare_demo_cohort(str(tmp_path_factory.mktemp("cohort")), n_subjects=16, spacing=4.0, strength=0.9)
