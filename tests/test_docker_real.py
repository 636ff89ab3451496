"""Opt-in (PORTGUARD_SLOW=1): a real dockerd publishes a container, and portguard filters it.

dockerd (Debian's docker.io, 20.10) runs only inside the lab's throwaway host namespace and
a private mount namespace (`ip netns exec HOST unshare --mount --propagation private`), with
tmpfs over its own directories, the vfs storage driver, a bridge on a documentation range,
and the machine's cgroup hierarchies mounted again (ip netns exec mounts a fresh /sys). The
docker client runs the same way. No registry is needed: the image is `docker import` of a
rootfs holding only a static busybox. The container runs two busybox httpd, on 80 and 81,
published as 8080 and 8081; the scanner probes them before, during and after portguard.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netns import HOST_V4, SCANNER_V4, Lab, can_make_netns, lab, portguard_argv
from tests.probe import FILTERED, OPEN, Probe, scan

DOCKERD = shutil.which("dockerd")
BUSYBOX = shutil.which("busybox")
IMAGE = "pgtest-busybox:1"
CONTAINER_NAME = "pgtest-published"
BRIDGE_IP = "198.51.100.1/24"  # documentation range (RFC 5737), inside the host namespace only
PUBLISHED = {8080: 80, 8081: 81}
PROBE_TIMEOUT = 2.5
START_TIMEOUT = 60.0
# tmpfs over each, in the private mount namespace only
DOCKER_DIRS = "/etc/docker /var/lib/docker /run/docker /run/containerd /var/lib/containerd"
CGROUP_PARENT = f"pgtest-docker-{os.getpid()}"
NETNS_EXEC = ("ip", "netns", "exec")
PRIVATE_MOUNTS = ("unshare", "--mount", "--propagation", "private")
ONLY_8080 = "version: 1\nallow:\n  - port: 8080\n"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    pytest.mark.skipif(os.environ.get("PORTGUARD_SLOW") != "1", reason="set PORTGUARD_SLOW=1"),
    pytest.mark.skipif(
        DOCKERD is None or shutil.which("docker") is None, reason="needs dockerd and docker"
    ),
    pytest.mark.skipif(BUSYBOX is None, reason="needs a static busybox (busybox-static)"),
]

# Runs as `sh SCRIPT WORKDIR` inside the private mount namespace, then becomes dockerd.
DOCKERD_SCRIPT = """\
set -e
work=$1
for dir in {dirs}; do
    mkdir -p "$dir"
    mount -t tmpfs tmpfs "$dir"
done
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
while read -r dst kind opts; do
    mkdir -p "$dst"
    mount -t "$kind" -o "$opts" "$kind" "$dst"
done < "$work/cgroups"
exec {dockerd} -H "unix://$work/docker.sock" --data-root /var/lib/docker \\
    --exec-root /run/docker --pidfile /run/docker/docker.pid --storage-driver vfs \\
    --bip {bip} --iptables=true --cgroup-parent /{cgroup_parent}
"""

SERVE = "busybox httpd -p 80 -h /www && exec busybox httpd -f -p 81 -h /www"


def _docker_client() -> str:
    """The docker client shipped with dockerd if there is one, else the first on PATH."""
    assert DOCKERD is not None
    beside = Path(DOCKERD).resolve().parent.parent / "bin" / "docker"
    found = str(beside) if beside.exists() else shutil.which("docker")
    assert found is not None
    return found


def _is_static(path: str) -> bool:
    """Whether the ELF at `path` has no program interpreter (a static binary)."""
    head = Path(path).read_bytes()[:8192]
    return b"/ld-linux" not in head and b"/ld-musl" not in head


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    """The machine's cgroup mounts under /sys/fs/cgroup: (mount point, type, options)."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
        _, dst, kind, opts, *_ = line.split()
        if kind in ("cgroup", "cgroup2") and dst.startswith("/sys/fs/cgroup"):
            wanted = [o for o in opts.split(",") if o not in ("rw", "relatime")]
            mounts.append((dst, kind, ",".join(wanted) or "defaults"))
    return mounts


def _remove_cgroups(mounts: Sequence[tuple[str, str, str]]) -> None:
    """Remove the (empty) cgroups dockerd made under CGROUP_PARENT, deepest first."""
    for dst, _, _ in mounts:
        top = Path(dst) / CGROUP_PARENT
        if not top.is_dir():
            continue
        for path in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            path.rmdir()
        top.rmdir()


@dataclass(frozen=True)
class RealDocker:
    """The lab, the work directory holding dockerd's socket, and the container's address."""

    lab: Lab
    work: Path
    container_ip: str

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the docker client against our dockerd, inside the host namespace."""
        return _docker(self.lab, self.work, *args, check=check)

    def portguard(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run this checkout's portguard in the host namespace; it must succeed."""
        done = self.lab.host.run(portguard_argv(*args), check=False)
        assert done.returncode == 0, done.stderr
        return done

    def reach(self) -> dict[int, str]:
        """What the scanner sees on each published port of the host."""
        probes = [Probe("tcp", HOST_V4, port, SCANNER_V4) for port in PUBLISHED]
        return {r.probe.port: r.outcome for r in scan(self.lab.scanner, probes, PROBE_TIMEOUT)}

    def docker_tables(self) -> str:
        """dockerd's iptables-nft tables (ip nat, ip filter) as nft lists them, no counters."""
        return "".join(
            self.lab.host.run(["nft", "-s", "list", "table", "ip", name]).stdout
            for name in ("nat", "filter")
        )


def _docker(
    lab: Lab, work: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = [*PRIVATE_MOUNTS, "env", f"DOCKER_CONFIG={work}/cfg"]
    argv += [_docker_client(), "-H", f"unix://{work}/docker.sock", *args]
    return lab.host.run(argv, check=check, timeout=120)


def _wait_for_daemon(pair: Lab, work: Path, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            break
        if _docker(pair, work, "version", check=False).returncode == 0:
            return
        time.sleep(0.5)
    log = (work / "dockerd.log").read_text(encoding="utf-8", errors="replace")
    raise RuntimeError(f"dockerd did not come up: {log[-3000:]}")


def _stop_everything(pair: Lab, daemon: subprocess.Popen[bytes]) -> None:
    """Stop dockerd, then end whatever is left in the host namespace (containerd, shims)."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
    left = subprocess.run(
        ["ip", "netns", "pids", pair.host.name], capture_output=True, text=True, check=False
    )
    for pid in left.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    time.sleep(0.5)


def _machine_iptables() -> str:
    """The machine's own iptables-nft rules (filter and nat), read only, to check untouched."""
    return "".join(
        subprocess.run(
            ["iptables-nft", "-t", table, "-S"], capture_output=True, text=True, check=False
        ).stdout
        for table in ("filter", "nat")
    )


@pytest.fixture(scope="module")
def real_docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealDocker]:
    """A lab whose host namespace runs dockerd with one container publishing 8080 and 8081."""
    if not can_make_netns() or shutil.which("unshare") is None:
        pytest.skip("needs root, ip, nft and unshare")
    assert BUSYBOX is not None and DOCKERD is not None
    if not _is_static(BUSYBOX):
        pytest.skip(f"{BUSYBOX} is not static: install busybox-static")
    work = tmp_path_factory.mktemp("docker")
    rootfs = work / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "www").mkdir()
    (rootfs / "www" / "index.html").write_text("portguard\n", encoding="utf-8")
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sh").symlink_to("busybox")
    with tarfile.open(work / "rootfs.tar", "w") as tar:
        tar.add(rootfs, arcname=".")
    mounts = _cgroup_mounts()
    (work / "cgroups").write_text("".join(f"{d} {k} {o}\n" for d, k, o in mounts))
    script = DOCKERD_SCRIPT.format(
        dirs=DOCKER_DIRS,
        dockerd=DOCKERD,
        bip=BRIDGE_IP,
        cgroup_parent=CGROUP_PARENT,
    )
    (work / "dockerd.sh").write_text(script, encoding="utf-8")
    machine_before = _machine_iptables()
    with lab("pgr") as pair, (work / "dockerd.log").open("wb") as log:
        daemon = subprocess.Popen(
            [
                *NETNS_EXEC,
                pair.host.name,
                *PRIVATE_MOUNTS,
                "sh",
                str(work / "dockerd.sh"),
                str(work),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_daemon(pair, work, daemon)
            _docker(pair, work, "import", str(work / "rootfs.tar"), IMAGE)
            ports = [f"-p{published}:{port}" for published, port in PUBLISHED.items()]
            _docker(
                pair,
                work,
                *("run", "-d", "--name", CONTAINER_NAME, *ports, IMAGE),
                *("/bin/busybox", "sh", "-c", SERVE),
            )
            inspected = _docker(pair, work, "inspect", CONTAINER_NAME).stdout
            address = json.loads(inspected)[0]["NetworkSettings"]["IPAddress"]
            yield RealDocker(pair, work, str(address))
        finally:
            _docker(pair, work, "rm", "-f", CONTAINER_NAME, check=False)
            _stop_everything(pair, daemon)
            _remove_cgroups(mounts)
    assert _machine_iptables() == machine_before  # dockerd never touched the machine's own


def test_real_docker_published_ports_obey_the_allow_list(
    real_docker: RealDocker, tmp_path: Path
) -> None:
    """Real `docker run -p`: both ports answer; allow 8080 filters 8081; remove opens it again."""
    rd = real_docker
    assert rd.reach() == {8080: OPEN, 8081: OPEN}
    policy = tmp_path / "policy.yaml"
    policy.write_text(ONLY_8080, encoding="utf-8")
    state = str(tmp_path / "state")
    plan = json.loads(
        rd.portguard("plan", str(policy), "--format", "json", "--state-dir", state).stdout
    )
    verdicts = {
        (p["port"], p["to"]): p["verdict"] for p in plan["published"] if p["proto"] == "tcp"
    }
    assert verdicts[(8080, f"{rd.container_ip}:80")] == "allowed", plan["published"]
    assert verdicts[(8081, f"{rd.container_ip}:81")] == "blocked", plan["published"]
    tables = rd.docker_tables()
    rd.portguard("apply", str(policy), "--yes", "--state-dir", state)
    assert rd.reach() == {8080: OPEN, 8081: FILTERED}
    rd.portguard("remove", "--yes", "--state-dir", state)
    assert rd.reach() == {8080: OPEN, 8081: OPEN}
    assert rd.docker_tables() == tables  # dockerd's own rules are not touched
