"""Opt-in (PORTGUARD_SLOW=1): boot a real systemd in systemd-nspawn and watch the unit run.

A Debian root made with debootstrap (cached in $PORTGUARD_NSPAWN_ROOT, default
/var/tmp/portguard-nspawn-root) is copied, `portguard install --root` puts the units in,
and the copy boots as a container whose network namespace is a throwaway one made by the
test, so the rules land there and nowhere else. This checkout is bind-mounted read-only at
the same path, so the units run this venv's portguard. Two helper units record what happened:
one ordered only after network-pre.target lists the table at that moment, one at the end
of the boot saves unit states and the journal, then powers the container off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netns import Netns, throwaway_netns

CHECKOUT = Path(__file__).resolve().parent.parent
PORTGUARD = CHECKOUT / ".venv" / "bin" / "portguard"
ROOT_CACHE = Path(os.environ.get("PORTGUARD_NSPAWN_ROOT", "/var/tmp/portguard-nspawn-root"))
PACKAGES = "systemd,systemd-sysv,dbus,nftables,python3,python3-nftables,python3-yaml"
MIRROR = "http://deb.debian.org/debian"
BOOT_TIMEOUT = 240
BROKEN_POLICY = "version: 1\nallow:\n  - port: 70000\n"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    pytest.mark.skipif(os.environ.get("PORTGUARD_SLOW") != "1", reason="set PORTGUARD_SLOW=1"),
    pytest.mark.skipif(
        shutil.which("systemd-nspawn") is None, reason="needs systemd-nspawn (systemd-container)"
    ),
]

AT_NETWORK_PRE_UNIT = """\
[Unit]
Description=test: is table inet portguard loaded when network-pre.target is reached?
DefaultDependencies=no
Wants=network-pre.target
After=network-pre.target
Before=network.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'nft list table inet portguard > /pgout/at-network-pre.txt 2>&1; \
echo "exit=$?" >> /pgout/at-network-pre.txt'

[Install]
WantedBy=sysinit.target
"""

REPORT_UNIT = """\
[Unit]
Description=test: save what the boot did, then power off
After=portguard.service pg-at-network-pre.service network-pre.target

[Service]
Type=oneshot
ExecStart=/bin/sh /usr/local/sbin/pg-report.sh

[Install]
WantedBy=multi-user.target
"""

# If the test left /pgout/edit.yaml, the policy is edited while the system runs: portguard.path
# must restart portguard.service, which applies it (port 8443 appears in the table).
REPORT_SCRIPT = """\
systemctl show -p ActiveState -p Result -p ActiveEnterTimestampMonotonic portguard.service \
    > /pgout/portguard.txt
systemctl show -p ActiveEnterTimestampMonotonic network-pre.target > /pgout/network-pre.txt
if [ -f /pgout/edit.yaml ]; then
    cp /pgout/edit.yaml /etc/portguard/policy.yaml
    for i in $(seq 150); do
        if nft list table inet portguard | grep -q 8443 \
            && systemctl is-active -q portguard.service; then
            break
        fi
        sleep 0.2
    done
    nft list table inet portguard > /pgout/after-edit.txt 2>&1
    systemctl show -p ActiveState -p Result portguard.service >> /pgout/after-edit.txt
fi
systemctl stop portguard.service
{ nft list table inet portguard; systemctl is-active portguard.service; } \
    > /pgout/after-stop.txt 2>&1
journalctl -b -o short-monotonic --no-pager > /pgout/journal.txt 2>&1
systemctl poweroff --no-block
"""

EDITED_POLICY = """\
version: 1
allow:
  - service: ssh
  - port: 8443
"""


def _cached_root() -> Path:
    """The debootstrapped root, made on first use (several minutes, from the Debian mirror)."""
    if (ROOT_CACHE / "usr/lib/systemd/systemd").exists():
        return ROOT_CACHE
    if shutil.which("debootstrap") is None:
        pytest.skip("needs debootstrap to build the container root")
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={PACKAGES}",
            "bookworm",
            str(ROOT_CACHE),
            MIRROR,
        ],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    return ROOT_CACHE


def _properties(path: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in path.read_text(encoding="utf-8").splitlines())
    return {key: value for key, _, value in pairs}


def _text_if_any(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


@dataclass(frozen=True)
class BootRecord:
    """What one container boot left behind: unit properties, the table listing, the journal."""

    service: dict[str, str]
    network_pre: dict[str, str]
    at_network_pre: str
    after_edit: str | None
    after_stop: str
    journal: str


def _prepare(root: Path) -> None:
    """Copy the cached root to `root`, install portguard's units and the two helper units."""
    subprocess.run(["cp", "-a", str(_cached_root()), str(root)], check=True, timeout=600)
    installed = subprocess.run(
        [str(PORTGUARD), "install", "--root", str(root), "--executable", str(PORTGUARD)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    units = root / "etc/systemd/system"
    (units / "pg-at-network-pre.service").write_text(AT_NETWORK_PRE_UNIT, encoding="utf-8")
    (units / "pg-report.service").write_text(REPORT_UNIT, encoding="utf-8")
    (root / "usr/local/sbin/pg-report.sh").write_text(REPORT_SCRIPT, encoding="utf-8")
    subprocess.run(
        ["systemctl", f"--root={root}", "enable", "pg-at-network-pre.service", "pg-report.service"],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _boot(root: Path, ns: Netns, out: Path, edit: str | None = None) -> BootRecord:
    """Boot `root` with systemd as PID 1 in `ns` until pg-report powers it off.

    With `edit`, pg-report replaces the policy with it once the boot is done.
    """
    out.mkdir()
    if edit is not None:
        (out / "edit.yaml").write_text(edit, encoding="utf-8")
    booted = subprocess.run(
        [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--capability=CAP_NET_ADMIN",  # nspawn drops it by default
            f"--directory={root}",
            f"--network-namespace-path=/run/netns/{ns.name}",
            f"--bind-ro={CHECKOUT}",
            f"--bind={out}:/pgout",
        ],
        capture_output=True,
        text=True,
        timeout=BOOT_TIMEOUT,
        check=False,
    )
    journal = out / "journal.txt"
    context = journal.read_text(encoding="utf-8") if journal.exists() else booted.stdout
    assert (out / "portguard.txt").exists(), context[-4000:] + booted.stderr[-2000:]
    return BootRecord(
        service=_properties(out / "portguard.txt"),
        network_pre=_properties(out / "network-pre.txt"),
        at_network_pre=(out / "at-network-pre.txt").read_text(encoding="utf-8"),
        after_edit=_text_if_any(out / "after-edit.txt"),
        after_stop=(out / "after-stop.txt").read_text(encoding="utf-8"),
        journal=context,
    )


@pytest.fixture
def container_root(tmp_path: Path) -> Iterator[Path]:
    """A copy of the cached root with the units installed; deleted afterwards (300 MB)."""
    root = tmp_path / "root"
    try:
        _prepare(root)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_real_systemd_loads_the_table_before_network_pre(
    netns: Netns, tmp_path: Path, container_root: Path
) -> None:
    """Real boot: in force before network-pre, re-applied on edit, kept on stop, falls back."""
    root = container_root
    first = _boot(root, netns, tmp_path / "out1", edit=EDITED_POLICY)
    assert first.service["ActiveState"] == "active", first.journal[-4000:]
    assert first.service["Result"] == "success"
    assert "table inet portguard {" in first.at_network_pre
    assert first.at_network_pre.rstrip().endswith("exit=0")
    loaded_at = int(first.service["ActiveEnterTimestampMonotonic"])
    assert 0 < loaded_at <= int(first.network_pre["ActiveEnterTimestampMonotonic"])
    assert "portguard: /etc/portguard/policy.yaml: applied" in first.journal
    assert "table inet portguard" in netns.ruleset()  # the rules landed in our namespace
    assert first.after_edit is not None
    assert "8443" in first.after_edit, first.journal[-3000:]  # portguard.path re-applied it
    assert "ActiveState=active" in first.after_edit
    assert "8443" in netns.ruleset()
    assert "table inet portguard {" in first.after_stop  # stopping the unit leaves the rules
    assert first.after_stop.rstrip().endswith("inactive")

    (root / "etc/portguard/policy.yaml").write_text(BROKEN_POLICY, encoding="utf-8")
    with throwaway_netns("pgn") as fresh:
        second = _boot(root, fresh, tmp_path / "out2")
        assert "table inet portguard" in fresh.ruleset()
    assert second.service["ActiveState"] == "failed", second.journal[-4000:]
    assert second.service["Result"] == "exit-code"
    assert "table inet portguard {" in second.at_network_pre
    assert second.at_network_pre.rstrip().endswith("exit=0")
    fallback = [ln for ln in second.journal.splitlines() if "portguard[" in ln]
    assert len(fallback) == 1, fallback
    assert "/etc/portguard/policy.yaml:3:11: port 70000 is out of range" in fallback[0]
    assert fallback[0].endswith("put in force instead")
