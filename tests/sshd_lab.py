"""SSH hosts in throwaway namespaces: a controller namespace and N hosts, each a real sshd.

The controller holds a bridge; every host namespace hangs off it by a veth pair (documentation
range 198.51.100.0/24, nothing leaves these namespaces). Each host runs OpenSSH's own sshd
with its own host key and config (StrictModes off for keys under /tmp, no PAM). On exit every
process still in a lab namespace (sshd, ssh ControlPersist masters, portguard's reverter) is
killed before the namespaces are deleted, also after a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.netns import Netns, throwaway_netns

__all__ = ["CONTROLLER_V4", "SSHD", "SshHost", "SshLab", "sshd_lab"]

SSHD = "/usr/sbin/sshd"
CONTROLLER_V4 = "198.51.100.1"
SUBNET_BITS = 24
BRIDGE = "pgbr0"
READY_TIMEOUT = 60.0  # sshd starts slowly on a loaded machine
SSHD_CONFIG = """\
Port 22
ListenAddress {address}
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
Subsystem sftp internal-sftp
"""


@dataclass(frozen=True)
class SshHost:
    """One host: its namespace, address, inventory name and its own files (shared filesystem)."""

    name: str
    ns: Netns
    address: str
    dir: Path


@dataclass(frozen=True)
class SshLab:
    """The controller namespace, the hosts, and the client key and known_hosts that reach them."""

    controller: Netns
    hosts: tuple[SshHost, ...]
    identity: Path
    known_hosts: Path


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path.with_suffix(".pub").read_text().split(" ")[1]


def _wait_listening(ns: Netns, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd in {ns.name} exited: {log.read_text()[-500:]}")
        if ns.run(["ss", "-Hltn", "sport = :22"], check=False).stdout.strip():
            return
        time.sleep(0.2)
    raise RuntimeError(f"sshd in {ns.name} did not listen within {READY_TIMEOUT}s")


def _kill_everything_in(ns: Netns) -> None:
    """SIGKILL every process in the namespace (`ip netns pids`): masters outlive `netns del`."""
    listed = subprocess.run(
        ["ip", "netns", "pids", ns.name], capture_output=True, text=True, check=False
    )
    for pid in listed.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            continue


def _start_sshd(host: SshHost, authorized: Path) -> subprocess.Popen[bytes]:
    host.dir.mkdir(parents=True, exist_ok=True)
    (host.dir / "remote-tmp").mkdir(mode=0o700, exist_ok=True)
    _keygen(host.dir / "ssh_host_ed25519_key")
    config = host.dir / "sshd_config"
    config.write_text(SSHD_CONFIG.format(address=host.address, dir=host.dir, authorized=authorized))
    log = host.dir / "sshd.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.ns.name, SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
    _wait_listening(host.ns, proc, log)
    return proc


@contextmanager
def sshd_lab(workdir: Path, count: int = 3) -> Iterator[SshLab]:
    """A controller and `count` sshd hosts (h1 = 198.51.100.11, ...), torn down on exit."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    with ExitStack() as stack:
        controller = stack.enter_context(throwaway_netns("pgac"))
        namespaces = [stack.enter_context(throwaway_netns("pgah")) for _ in range(count)]
        stack.callback(_kill_everything_in, controller)
        for ns in namespaces:
            stack.callback(_kill_everything_in, ns)
        _ip("-n", controller.name, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", controller.name, "addr", "add", f"{CONTROLLER_V4}/{SUBNET_BITS}", "dev", BRIDGE)
        _ip("-n", controller.name, "link", "set", BRIDGE, "up")
        identity = workdir / "id_ed25519"
        authorized = workdir / "authorized_keys"
        _keygen(identity)
        authorized.write_text(identity.with_suffix(".pub").read_text())
        hosts: list[SshHost] = []
        known: list[str] = []
        for index, ns in enumerate(namespaces, start=1):
            veth = f"pgv{index}"
            host = SshHost(f"h{index}", ns, f"198.51.100.{10 + index}", workdir / f"h{index}")
            _ip("-n", controller.name, "link", "add", veth, "type", "veth", "peer", "name", "eth0")
            _ip("-n", controller.name, "link", "set", "eth0", "netns", ns.name)
            _ip("-n", controller.name, "link", "set", veth, "master", BRIDGE, "up")
            _ip("-n", ns.name, "addr", "add", f"{host.address}/{SUBNET_BITS}", "dev", "eth0")
            _ip("-n", ns.name, "link", "set", "eth0", "up")
            _start_sshd(host, authorized)
            key = (host.dir / "ssh_host_ed25519_key.pub").read_text().split(" ")[1]
            known.append(f"{host.address} ssh-ed25519 {key}\n")
            hosts.append(host)
        (workdir / "known_hosts").write_text("".join(known))
        yield SshLab(controller, tuple(hosts), identity, workdir / "known_hosts")
