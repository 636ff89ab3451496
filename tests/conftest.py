"""Shared fixtures: paths to the bundled policies and throwaway namespaces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from portguard.backends import nftables as nftables_backend
from portguard.cli import windows_cmds
from tests.faultlab import PORTS, FaultLab
from tests.netns import Lab, Netns, can_make_netns, lab, throwaway_netns
from tests.probe import listeners
from tests.windows_fake import FakeFirewall

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


@pytest.fixture(scope="module")
def probe_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultLab]:
    """One host/scanner lab per test module, listening on every port FaultLab probes."""
    if not can_make_netns():
        pytest.skip("needs root with ip and nft to make throwaway network namespaces")
    with lab("pgf") as pair, listeners(pair.host, tcp=PORTS):
        yield FaultLab(pair, tmp_path_factory.mktemp("policies"))


@pytest.fixture
def fl(probe_lab: FaultLab) -> FaultLab:
    """The module's lab with no portguard table, as each test starts."""
    probe_lab.reset()
    return probe_lab


@pytest.fixture
def firewall(monkeypatch: pytest.MonkeyPatch) -> FakeFirewall:
    """Pretend to be Windows with a fake Windows Firewall; nftables use fails the test."""
    fake = FakeFirewall()

    def no_nftables() -> None:
        raise AssertionError("nftables must not be used on Windows")

    monkeypatch.setattr(windows_cmds, "on_windows", lambda: True)
    monkeypatch.setattr(windows_cmds, "windows_runner", lambda: fake)
    monkeypatch.setattr(nftables_backend, "open_nftables", no_nftables)
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    return fake
