"""Throwaway network namespaces for tests: made here, used by name, always removed.

Nothing in the test suite may touch nftables in the machine's own namespace; every
kernel-facing test goes through `Netns.run` (`ip netns exec NAME ...`) on a namespace
made by `throwaway_netns` or `lab`, which delete it again even when the test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AS_NOBODY",
    "HOST_V4",
    "HOST_V6",
    "SCANNER_V4",
    "SCANNER_V6",
    "Lab",
    "Netns",
    "can_make_netns",
    "lab",
    "portguard_argv",
    "throwaway_netns",
]

# Documentation ranges (RFC 5737 / RFC 3849), used only between our own namespaces.
HOST_V4 = "192.0.2.1"
SCANNER_V4 = "192.0.2.2"
HOST_V6 = "2001:db8:7::1"
SCANNER_V6 = "2001:db8:7::2"
# Prefix that runs a command as the unprivileged user nobody (util-linux setpriv).
AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
VENV_BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"


def can_make_netns() -> bool:
    """Whether this process may create namespaces and use nftables (root, ip, nft present)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("nft") is not None


def portguard_argv(*args: str) -> list[str]:
    """The command line that runs this checkout's portguard with `args`."""
    return [sys.executable, "-m", "portguard", *args]


@dataclass(frozen=True)
class Netns:
    """A network namespace this test run created, addressed by name."""

    name: str

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60,
        input_text: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the namespace and return its result (text mode)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            env=env,
        )

    def popen(self, argv: Sequence[str]) -> subprocess.Popen[str]:
        """Start `argv` inside the namespace in the background."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ruleset(self) -> str:
        """`nft list ruleset` inside the namespace."""
        return self.run(["nft", "list", "ruleset"]).stdout


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextmanager
def throwaway_netns(prefix: str = "pgt") -> Iterator[Netns]:
    """A fresh namespace with loopback up; deleted on exit, also after a failure."""
    name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        yield Netns(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@dataclass(frozen=True)
class Lab:
    """A "host" and a "scanner" namespace joined by a veth pair, IPv4 and IPv6."""

    host: Netns
    scanner: Netns
    host_if: str
    scanner_if: str


@contextmanager
def lab(prefix: str = "pgt") -> Iterator[Lab]:
    """Host + scanner namespaces over veth (192.0.2.1/2, 2001:db8:7::1/2), removed on exit."""
    with throwaway_netns(f"{prefix}h") as host, throwaway_netns(f"{prefix}s") as scanner:
        host_if, scanner_if = "pg-host0", "pg-scan0"
        _ip("-n", host.name, "link", "add", host_if, "type", "veth", "peer", "name", scanner_if)
        _ip("-n", host.name, "link", "set", scanner_if, "netns", scanner.name)
        for ns, ifname, v4, v6 in (
            (host, host_if, HOST_V4, HOST_V6),
            (scanner, scanner_if, SCANNER_V4, SCANNER_V6),
        ):
            _ip("-n", ns.name, "addr", "add", f"{v4}/24", "dev", ifname)
            _ip("-n", ns.name, "addr", "add", f"{v6}/64", "dev", ifname, "nodad")
            _ip("-n", ns.name, "link", "set", ifname, "up")
        yield Lab(host=host, scanner=scanner, host_if=host_if, scanner_if=scanner_if)
