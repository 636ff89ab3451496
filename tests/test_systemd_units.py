"""The shipped systemd units: boot ordering, no ExecStop, and `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from portguard.install import UNIT_FILES, render_unit, shipped_dir

UNITS = shipped_dir()
VENV_PORTGUARD = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "portguard"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def directives(path: Path) -> dict[tuple[str, str], list[str]]:
    """Each (section, key) of a unit file with all its values, in order (keys may repeat)."""
    found: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        found.setdefault((section, key.strip()), []).append(value.strip())
    return found


def words(unit: dict[tuple[str, str], list[str]], section: str, key: str) -> set[str]:
    """All space-separated values of a key that may be given more than once."""
    return {word for value in unit.get((section, key), []) for word in value.split()}


def verify_problems(unit_dir: Path, names: tuple[str, ...]) -> str:
    """What `systemd-analyze verify` says about the units (empty: clean, exit 0)."""
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(unit_dir / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = (done.stdout + done.stderr).strip()
    if done.returncode != 0 and not said:
        said = f"exit {done.returncode}"
    return said


def rendered_units(directory: Path, executable: Path) -> Path:
    """The shipped units as install writes them, for `executable`, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in UNIT_FILES:
        text = render_unit((UNITS / name).read_text(encoding="utf-8"), str(executable))
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_service_runs_before_the_network_and_after_local_filesystems() -> None:
    """The service is an early-boot oneshot ordered ahead of network-pre.target."""
    unit = directives(UNITS / "portguard.service")
    assert unit[("Unit", "DefaultDependencies")] == ["no"]
    assert "network-pre.target" in words(unit, "Unit", "Before")
    assert "network-pre.target" in words(unit, "Unit", "Wants")
    assert {"local-fs.target", "nftables.service"} <= words(unit, "Unit", "After")
    assert "/var/lib/portguard" in words(unit, "Unit", "RequiresMountsFor")
    assert unit[("Service", "Type")] == ["oneshot"]
    assert unit[("Service", "RemainAfterExit")] == ["yes"]
    assert unit[("Install", "WantedBy")] == ["sysinit.target"]


def test_service_applies_with_boot_and_never_opens_on_stop() -> None:
    """Start and reload run `apply --boot` on /etc's policy; there is no stop action."""
    unit = directives(UNITS / "portguard.service")
    boot = "/usr/local/bin/portguard apply --boot /etc/portguard/policy.yaml"
    assert unit[("Service", "ExecStart")] == [boot]
    assert unit[("Service", "ExecReload")] == [boot]
    assert not [key for _, key in unit if key.startswith("ExecStop")]


def test_service_hardening_keeps_what_nftables_needs() -> None:
    """The sandbox keeps CAP_NET_ADMIN (+ CAP_SYS_PTRACE for the guard), netlink, the state dir."""
    unit = directives(UNITS / "portguard.service")
    assert unit[("Service", "CapabilityBoundingSet")] == ["CAP_NET_ADMIN CAP_SYS_PTRACE"]
    assert "AF_NETLINK" in words(unit, "Service", "RestrictAddressFamilies")
    assert unit[("Service", "ReadWritePaths")] == ["/var/lib/portguard"]
    assert unit[("Service", "ProtectSystem")] == ["strict"]
    assert unit[("Service", "NoNewPrivileges")] == ["yes"]
    assert ("Service", "PrivateNetwork") not in unit


def test_path_unit_reapplies_through_a_restart_of_the_service() -> None:
    """A policy change starts portguard-reload.service, which restarts portguard.service."""
    path_unit = directives(UNITS / "portguard.path")
    assert path_unit[("Path", "PathChanged")] == ["/etc/portguard/policy.yaml"]
    target = path_unit[("Path", "Unit")][0]
    assert (UNITS / target).is_file()
    reload_unit = directives(UNITS / target)
    assert reload_unit[("Service", "ExecStart")] == ["/usr/bin/systemctl restart portguard.service"]


@needs_analyze
def test_installed_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """The units as install writes them (real executable) verify without a word."""
    assert VENV_PORTGUARD.is_file()
    unit_dir = rendered_units(tmp_path / "system", VENV_PORTGUARD)
    assert verify_problems(unit_dir, UNIT_FILES) == ""


@needs_analyze
def test_verify_catches_broken_units(tmp_path: Path) -> None:
    """The verify check fails on a missing executable and on a misspelt setting."""
    missing = rendered_units(tmp_path / "missing", tmp_path / "no" / "portguard")
    assert "is not executable" in verify_problems(missing, ("portguard.service",))
    typo = rendered_units(tmp_path / "typo", VENV_PORTGUARD)
    service = typo / "portguard.service"
    service.write_text(
        service.read_text(encoding="utf-8").replace("Type=oneshot", "Type=oneshoot"),
        encoding="utf-8",
    )
    assert "oneshoot" in verify_problems(typo, ("portguard.service",))


def test_metrics_timer_refreshes_the_textfile_atomically() -> None:
    """The timer starts the metrics service every minute; it writes the .prom file via stats."""
    timer = directives(UNITS / "portguard-metrics.timer")
    assert timer[("Timer", "Unit")] == ["portguard-metrics.service"]
    assert timer[("Timer", "OnUnitActiveSec")] == ["1min"]
    assert timer[("Install", "WantedBy")] == ["timers.target"]
    service = directives(UNITS / "portguard-metrics.service")
    assert service[("Service", "ExecStart")] == [
        "/usr/local/bin/portguard stats --format prometheus"
        " --output /var/lib/prometheus/node-exporter/portguard.prom"
    ]
    assert service[("Service", "ReadWritePaths")] == ["-/var/lib/prometheus/node-exporter"]
    assert service[("Service", "ProtectSystem")] == ["strict"]
