"""Shared fixtures: paths to the bundled policies and throwaway namespaces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Lab, Netns, can_make_netns, lab, throwaway_netns

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_ssh_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as if not logged in over SSH: apply's lockout guard acts only where a test says so."""
    monkeypatch.delenv("SSH_CONNECTION", raising=False)


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A throwaway namespace; the test is skipped when namespaces cannot be made here."""
    if not can_make_netns():
        pytest.skip("needs root with ip and nft to make a throwaway network namespace")
    with throwaway_netns() as ns:
        yield ns


@pytest.fixture
def net_lab() -> Iterator[Lab]:
    """Host and scanner namespaces over veth; skipped when namespaces cannot be made here."""
    if not can_make_netns():
        pytest.skip("needs root with ip and nft to make throwaway network namespaces")
    with lab() as pair:
        yield pair
