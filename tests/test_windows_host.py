"""Windows host behaviour around apply: notes, profile warnings, RDP sessions, no POSIX import.

The host is faked in two places only: `on_windows()` answers True, and the PowerShell runner
is the `-Command -` FakeFirewall (there is no Windows here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from portguard.backends.divert import EnforcerState, _judge
from portguard.backends.windows import WindowsFirewallError, interface_aliases
from portguard.cli import main
from portguard.facts.windows import sessions_from_connections
from portguard.lockout import refusal_reason, session_warnings, sessions_cut
from portguard.policy import load_policy
from tests.windows_fake import FakeFirewall, FakeProfile

ROOT = Path(__file__).resolve().parent.parent
LIMITED = (
    "version: 1\ndefault: reject\nlog: true\nallow:\n  - port: 22\n    limit: 5/minute\n"
    "  - port: 443\n"
)


def test_apply_prints_what_windows_cannot_express(
    firewall: FakeFirewall, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """limit, reject and log each give a `note:` line at apply, as render writes them."""
    path = tmp_path / "policy.yaml"
    path.write_text(LIMITED)
    assert main(["apply", "--yes", str(path)]) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("portguard: note:")]
    assert any("limit 5/minute cannot be expressed" in n for n in notes)
    assert any("default: reject is rendered as block" in n for n in notes)
    assert any("log: true is not rendered" in n for n in notes)


def test_apply_warns_when_a_profile_undoes_the_rules(
    firewall: FakeFirewall, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Group Policy ignoring local rules is said at apply; status --check is drift (3)."""
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nallow:\n  - port: 443\n")
    firewall.profiles = (FakeProfile("Domain", allow_local_rules="False"),)
    assert main(["apply", "--yes", str(path)]) == 0
    assert "AllowLocalFirewallRules False" in capsys.readouterr().err
    assert main(["status", "--check", "--policy", str(path)]) == 3
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Windows Firewall group portguard: differs"
    assert out[1:] == [
        "  profile Domain: Group Policy sets AllowLocalFirewallRules False, so the local"
        " portguard rules are not in force"
    ]


def _conn(status: str, laddr: tuple[str, int], raddr: tuple[str, int] | tuple[()], pid: int):  # type: ignore[no-untyped-def]
    """A psutil-shaped connection row."""
    import socket  # noqa: PLC0415

    address = SimpleNamespace
    return SimpleNamespace(
        type=socket.SOCK_STREAM,
        status=status,
        laddr=address(ip=laddr[0], port=laddr[1]),
        raddr=address(ip=raddr[0], port=raddr[1]) if raddr else (),
        pid=pid,
    )


def test_rdp_session_is_admin_even_when_termservice_is_unreadable(tmp_path: Path) -> None:
    """No TermService PID known: a session to 3389 still counts as admin and refuses."""
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nallow:\n  - port: 443\n")
    policy = load_policy(path).policy
    rows = [
        _conn("LISTEN", ("0.0.0.0", 3389), (), 1200),
        _conn("ESTABLISHED", ("192.0.2.1", 3389), ("203.0.113.5", 50000), 1200),
        _conn("LISTEN", ("0.0.0.0", 8080), (), 900),
        _conn("ESTABLISHED", ("192.0.2.1", 8080), ("203.0.113.6", 50002), 900),
    ]
    cut = sessions_cut(policy, sessions_from_connections(policy, rows, frozenset()))
    reason = refusal_reason(policy, None, cut)
    assert reason is not None and "203.0.113.5 to port 3389" in reason
    assert "admin (SSH or RDP) session" in reason
    (warning,) = session_warnings(cut, cut_now=True)
    assert "203.0.113.6 to port 8080" in warning and "would be cut" in warning
    assert "it lasts" in session_warnings(cut)[0]  # Linux: conntrack keeps the session


BLOCKED = ("fcntl", "termios", "pwd", "grp", "resource")
IMPORT_ALL = f"""
import importlib, pkgutil, sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # as on Windows: importing it raises ImportError
import portguard
from portguard.cli import main
failed = []
for module in pkgutil.walk_packages(portguard.__path__, "portguard."):
    if not module.name.endswith("__main__"):
        try:
            importlib.import_module(module.name)
        except ImportError as error:
            failed.append(f"{{module.name}}: {{error}}")
print("\\n".join(failed))
sys.exit(main(["render", "--target", "powershell", sys.argv[1]]))
"""


def test_every_module_imports_without_posix_only_modules(tmp_path: Path) -> None:
    """With fcntl and friends unavailable (Windows), every module imports and render runs."""
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nallow:\n  - port: 443\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, str(path)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("New-NetFirewallRule")[0].strip().endswith("'Stop'")
    assert not [ln for ln in done.stdout.splitlines() if ln.startswith("portguard.")]


def test_status_without_a_policy_says_when_the_firewall_is_off(
    firewall: FakeFirewall, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status --check` alone: rules present but a profile off is drift (3), with the cause."""
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nallow:\n  - port: 443\n")
    assert main(["apply", "--yes", str(path)]) == 0
    assert main(["status", "--check"]) == 0
    firewall.profiles = (FakeProfile("Public", enabled="False"),)
    capsys.readouterr()
    assert main(["status", "--check"]) == 3
    assert "  profile Public: Windows Firewall is off" in capsys.readouterr().out.splitlines()


def test_enforcer_names_interfaces_by_their_windows_alias() -> None:
    """The enforcer's interface names are the aliases the rules use, read by PowerShell."""
    fake = FakeFirewall(interfaces={7: "Ethernet 2", 12: "vEthernet (Default Switch)"})
    assert interface_aliases(fake) == {7: "Ethernet 2", 12: "vEthernet (Default Switch)"}
    fake.fail_calls = {len(fake.calls) + 1}
    with pytest.raises(WindowsFirewallError, match="RPC server busy"):
        interface_aliases(fake)


def test_a_diverted_packet_is_judged_by_its_alias(tmp_path: Path) -> None:
    """An `interface: "Ethernet 2"` entry accepts a SYN arriving on that alias's index only."""
    pydivert = pytest.importorskip("pydivert")
    path = tmp_path / "p.yaml"
    path.write_text('version: 1\nallow:\n  - port: 8000\n    interface: "Ethernet 2"\n')
    policy = load_policy(path).policy
    names = {7: "Ethernet 2", 9: "Wi-Fi"}
    for index, wanted in ((7, True), (9, False)):
        raw = pydivert.PacketBuilder().ipv4("192.0.2.9", "192.0.2.1").tcp(40000, 8000).build()
        raw.direction = pydivert.Direction.INBOUND
        raw.tcp.syn = True
        raw.interface = (index, 0)
        assert _judge(policy, EnforcerState(), raw, 0.0, names.__getitem__) is wanted
