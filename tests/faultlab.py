"""A lab for fault injection: known policies told apart by real probes, paused portguard runs.

`FaultLab.in_force()` scans four TCP ports over IPv4 and IPv6 from the scanner namespace and
names the policy whose exact pattern of open and filtered ports it sees ("none" when every
port answers: no table). `run_paused` starts portguard with PORTGUARD_PAUSE_AT so that it
stops itself (SIGSTOP) at a named step, where a test kills it or breaks something for real.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from portguard.faults import PAUSE_ENV
from portguard.render.nft_table import PERSISTENT_SETS
from tests.netns import HOST_V4, HOST_V6, Lab, portguard_argv
from tests.probe import FILTERED, OPEN, Probe, scan

__all__ = [
    "POLICIES",
    "PORTS",
    "FaultLab",
    "Paused",
    "fill_up",
    "remount",
    "tmpfs",
]

PORTS = (22, 80, 8080, 9999)
PROBE_TIMEOUT = 2.5  # generous: a loaded core must not turn an open port into "filtered"
STOP_TIMEOUT = 60.0
# Each policy opens a different set of the probed ports; "refused" is never in force.
POLICIES = {
    "old": "version: 1\nallow:\n  - port: 22\n",
    "new": (
        "version: 1\nallow:\n  - port: 80\n  - port: 8080\n"
        "    from: [192.0.2.0/24, '2001:db8:7::/64']\n    comment: '@open_tcp @from4_tcp'\n"
    ),
    "refused": "version: 1\nallow:\n  - port: 9999\n",
}
OPEN_PORTS = {"none": set(PORTS), "old": {22}, "new": {80, 8080}, "refused": {9999}}


@dataclass(frozen=True)
class Paused:
    """A portguard process stopped at a step (or finished before reaching it)."""

    proc: subprocess.Popen[str]

    def kill(self) -> None:
        """kill -9 it where it stands."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=30)

    def resume(self) -> subprocess.CompletedProcess[str]:
        """Let it go on, and wait for it to end."""
        self.proc.send_signal(signal.SIGCONT)
        out, err = self.proc.communicate(timeout=120)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


@dataclass(frozen=True)
class FaultLab:
    """A lab with listeners on every probed port, and a policy directory."""

    lab: Lab
    policy_dir: Path

    def policy(self, name: str) -> Path:
        """The policy file for one of POLICIES (written on first use)."""
        path = self.policy_dir / f"{name}.yaml"
        if not path.exists():
            path.write_text(POLICIES[name])
        return path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """portguard ARGS in the host namespace (no pause)."""
        return self.lab.host.run(portguard_argv(*args), check=False, timeout=120)

    def run_paused(self, step: str, *args: str) -> Paused:
        """portguard ARGS in the host namespace, stopped when it reaches `step`."""
        env = {**os.environ, PAUSE_ENV: step}
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.host.name, *portguard_argv(*args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"never reached {step!r} (exit {proc.returncode}): {err}{out}")
            if _stopped(proc.pid):
                return Paused(proc)
            time.sleep(0.01)
        proc.kill()
        proc.communicate()
        raise AssertionError(f"did not stop at {step!r} within {STOP_TIMEOUT} s")

    def run_killed_after(self, delay: float, *args: str) -> str:
        """portguard ARGS, sent SIGKILL after `delay` s: "killed", or "finished" if done first."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.host.name, *portguard_argv(*args)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return "killed"
        return "finished"

    def nft(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """nft ARGS in the host namespace."""
        return self.lab.host.run(["nft", *args], check=check)

    def reset(self) -> None:
        """No portguard table in the host namespace."""
        self.nft("delete", "table", "inet", "portguard", check=False)

    def in_force(self) -> str:
        """The name of the policy whose open ports the scanner sees, else the raw pattern."""
        probes = [Probe("tcp", dst, port) for dst in (HOST_V4, HOST_V6) for port in PORTS]
        results = scan(self.lab.scanner, probes, timeout=PROBE_TIMEOUT)
        seen: dict[str, set[int]] = {}
        for result in results:
            if result.outcome not in (OPEN, FILTERED):
                return f"unexpected {result.outcome} on {result.probe}"
            if result.outcome == OPEN:
                seen.setdefault(result.probe.dst, set()).add(result.probe.port)
        v4, v6 = seen.get(HOST_V4, set()), seen.get(HOST_V6, set())
        if v4 != v6:
            return f"IPv4 open {sorted(v4)} but IPv6 open {sorted(v6)}"
        for name, ports in OPEN_PORTS.items():
            if ports == v4:
                return name
        return f"open {sorted(v4)}"

    def generation_sets(self) -> list[str]:
        """The names of the generation sets in the live portguard table (not the ban sets)."""
        listing = self.nft("-t", "list", "sets", "table", "inet", "portguard", check=False)
        names = [
            line.split()[1]
            for line in listing.stdout.splitlines()
            if line.strip().startswith("set ")
        ]
        return [name for name in names if name not in PERSISTENT_SETS]


def _stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "T"


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "256k") -> Iterator[Path]:
    """A small tmpfs mounted at `path` (mode 0700), unmounted on exit."""
    path.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        check=True,
        timeout=30,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=30)


def remount(path: Path, mode: str) -> None:
    """Remount the tmpfs at `path` read-only ("ro") or read-write ("rw")."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, timeout=30)


def fill_up(path: Path) -> None:
    """Write a filler file under `path` until the file system is full (ENOSPC)."""
    with open(path / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 4096)
