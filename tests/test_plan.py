"""build_plan is pure: verdicts per socket, idle allows, changes; text and markdown goldens."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from portguard.cli.plan_cmd import plan_markdown, plan_text
from portguard.cli.tables import markdown_table, plain_table, wants_rich
from portguard.drift import RulesetState, unified_diff
from portguard.model import ListeningSocket, Policy, Proto
from portguard.plan import Plan, SocketVerdict, build_plan, judge_socket, plan_json
from portguard.policy import parse_policy
from portguard.render.nftables import render_nftables
from tests.netns import AS_NOBODY, portguard_argv

GOLDEN = Path(__file__).resolve().parent / "golden_output"
UPDATE_GOLDEN = os.environ.get("PORTGUARD_UPDATE_GOLDEN") == "1"
POLICY = """\
version: 1
description: golden plan
allow:
  - service: ssh
    from: [192.0.2.0/24, "2001:db8:100::/48"]
    limit: 6/minute
  - port: 443
    proto: [tcp, udp]
  - port: 9100
    interface: eth1
    comment: node exporter
  - port: 5353
    proto: udp
    from: ["2001:db8:7::/64"]
  - port: 8000-8100
    comment: metrics
"""
OLD_POLICY = "version: 1\nallow:\n  - port: 443\n"


def policy_of(text: str, path: str = "policies/golden.yaml") -> Policy:
    """A policy parsed from YAML text under a fixed path."""
    return parse_policy(text.encode(), path).policy


def sock(proto: str, address: str, port: int, pid: int, name: str) -> ListeningSocket:
    """A ListeningSocket from short arguments."""
    return ListeningSocket(Proto(proto), ip_address(address), port, pid, name)


SOCKETS = (
    sock("tcp", "0.0.0.0", 22, 812, "sshd"),
    sock("tcp", "::", 443, 900, "caddy"),
    sock("udp", "0.0.0.0", 443, 900, "caddy"),
    sock("tcp", "0.0.0.0", 80, 901, "nginx"),
    sock("tcp", "0.0.0.0", 31337, 4242, "backdoor"),
    sock("tcp", "10.0.0.5", 9100, 77, "node_exporter"),
    sock("udp", "0.0.0.0", 5353, 55, "avahi-daemon"),
    sock("udp", "::", 5353, 55, "avahi-daemon"),
    sock("tcp", "127.0.0.1", 631, 60, "cupsd"),
    sock("tcp", "::1", 5432, 61, "postgres"),
)


def golden_plan(state: RulesetState | None = RulesetState.DIFFERS) -> Plan:
    """The plan the goldens show: POLICY over SOCKETS, differing from OLD_POLICY's rules."""
    policy = policy_of(POLICY)
    old = render_nftables(policy_of(OLD_POLICY, "policies/old.yaml"))
    diff = unified_diff(old, render_nftables(policy), "applied", policy.path)
    return build_plan(policy, SOCKETS, state, diff if state is not None else "", None)


def verdicts(plan: Plan) -> dict[tuple[str, str, int], str]:
    """{(proto, address, port): verdict} of a plan."""
    return {
        (s.socket.proto.value, str(s.socket.address), s.socket.port): s.verdict.value
        for s in plan.sockets
    }


def test_socket_verdicts() -> None:
    """Each socket is allowed, blocked or loopback as DESIGN §3 says, per family and source."""
    assert verdicts(golden_plan()) == {
        ("tcp", "0.0.0.0", 22): "allowed",
        ("tcp", "::", 443): "allowed",
        ("udp", "0.0.0.0", 443): "allowed",
        ("tcp", "0.0.0.0", 80): "blocked",
        ("tcp", "0.0.0.0", 31337): "blocked",
        ("tcp", "10.0.0.5", 9100): "allowed",
        ("udp", "0.0.0.0", 5353): "blocked",  # only IPv6 sources may reach 5353
        ("udp", "::", 5353): "allowed",
        ("tcp", "127.0.0.1", 631): "loopback",
        ("tcp", "::1", 5432): "loopback",
    }


def test_restricted_sockets_say_from_where() -> None:
    """A socket open only to some sources or one interface says which, with the limit."""
    judged = {
        (s.socket.proto, s.socket.port, s.socket.address.version): s for s in golden_plan().sockets
    }
    ssh = judged[(Proto.TCP, 22, 4)]
    assert not ssh.from_anywhere
    assert ssh.allowed_by == ("192.0.2.0/24, 2001:db8:100::/48 (limit 6/minute)",)
    exporter = judged[(Proto.TCP, 9100, 4)]
    assert not exporter.from_anywhere and exporter.allowed_by == ("any source on eth1",)
    https = judged[(Proto.TCP, 443, 6)]
    assert https.from_anywhere and https.allowed_by == ("anywhere",)
    assert judged[(Proto.TCP, 31337, 4)].trojan == "Back Orifice"


def test_ipv6_any_socket_is_judged_for_both_families() -> None:
    """A socket on :: also takes IPv4 (unless IPV6_V6ONLY), so an IPv4-only allow reaches it."""
    policy = policy_of("version: 1\nallow:\n  - port: 53\n    proto: udp\n    from: [10.0.0.0/8]\n")
    dual = judge_socket(policy, sock("udp", "::", 53, 1, "named"))
    v6_only_address = judge_socket(policy, sock("udp", "2001:db8::1", 53, 1, "named"))
    v6only = ListeningSocket(Proto.UDP, IPv6Address("::"), 53, 1, "named", v6only=True)
    assert dual.verdict is SocketVerdict.ALLOWED
    assert v6_only_address.verdict is SocketVerdict.BLOCKED
    assert judge_socket(policy, v6only).verdict is SocketVerdict.BLOCKED


def test_from_covering_every_address_still_allows() -> None:
    """`from: [0.0.0.0/0]` leaves no outsider, yet the socket is allowed from those sources."""
    policy = policy_of("version: 1\nallow:\n  - port: 80\n    from: [0.0.0.0/0]\n")
    judged = judge_socket(policy, sock("tcp", "0.0.0.0", 80, 1, "nginx"))
    assert judged.verdict is SocketVerdict.ALLOWED
    assert judged.allowed_by == ("0.0.0.0/0",)


def test_idle_allows_are_per_entry_and_protocol() -> None:
    """Entries with nothing exposed listening on any of their ports are idle, per protocol."""
    idle = [(i.proto.value, i.ports, i.line) for i in golden_plan().idle_allows]
    assert idle == [("tcp", "8000-8100", 15)]
    nothing = build_plan(policy_of(POLICY), (), RulesetState.ABSENT, "")
    assert [(i.proto.value, i.ports) for i in nothing.idle_allows] == [
        ("tcp", "22"),
        ("tcp", "443"),
        ("udp", "443"),
        ("tcp", "9100"),
        ("udp", "5353"),
        ("tcp", "8000-8100"),
    ]


@pytest.mark.parametrize(
    ("state", "changes"),
    [
        (RulesetState.ABSENT, True),
        (RulesetState.DIFFERS, True),
        (RulesetState.DRIFTED, True),
        (RulesetState.IN_SYNC, False),
        (None, None),
    ],
)
def test_changes_follow_the_ruleset_state(state: RulesetState | None, changes: bool | None) -> None:
    """Only an in-sync table means no changes; an unknown state means unknown."""
    assert golden_plan(state).changes is changes


def test_plan_json_has_the_design_keys() -> None:
    """The JSON carries DESIGN §5's keys with the documented values."""
    data = plan_json(golden_plan())
    assert {"policy", "changes", "sockets", "idle_allows", "ruleset"} <= set(data)
    assert data["policy"] == "policies/golden.yaml" and data["changes"] is True
    sockets = data["sockets"]
    assert isinstance(sockets, list)
    assert sockets[0] == {
        "proto": "tcp",
        "address": "0.0.0.0",
        "port": 22,
        "pid": 812,
        "process": "sshd",
        "exposed": True,
        "v6only": False,
        "verdict": "allowed",
        "from_anywhere": False,
        "allowed_by": ["192.0.2.0/24, 2001:db8:100::/48 (limit 6/minute)"],
        "trojan": None,
    }
    ruleset = data["ruleset"]
    assert isinstance(ruleset, dict) and ruleset["state"] == "differs"
    assert ruleset["diff"].startswith("--- applied\n+++ policies/golden.yaml\n")
    assert plan_json(golden_plan(None))["ruleset"] == {
        "state": "unknown",
        "diff": "",
        "reason": None,
    }


def check_golden(name: str, text: str) -> None:
    """Compare `text` with tests/golden_output/NAME (rewrite it with PORTGUARD_UPDATE_GOLDEN=1)."""
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_text(text + "\n")
    assert text + "\n" == path.read_text()


def test_plan_text_golden() -> None:
    """The plain-text plan matches its golden file."""
    check_golden("plan.txt", plan_text(golden_plan()))


def test_plan_markdown_golden() -> None:
    """The markdown plan matches its golden file."""
    check_golden("plan.md", plan_markdown(golden_plan()))


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to drop to nobody"
)
def test_plan_without_root_reports_unknown_state() -> None:
    """As a plain user, plan still judges sockets; --detailed-exitcode then fails with 1."""
    with tempfile.TemporaryDirectory(prefix="pg-h3-") as shared:
        Path(shared).chmod(0o755)
        policy = Path(shared) / "p.yaml"
        policy.write_text(OLD_POLICY)
        plain, gated = run_as_nobody(policy)
    assert plain.returncode == 0, plain.stderr
    assert '"state": "unknown"' in plain.stdout and '"changes": null' in plain.stdout
    assert "ruleset state unknown: nftables needs root" in plain.stderr
    assert gated.returncode == 1


def run_as_nobody(policy: Path) -> tuple[subprocess.CompletedProcess[str], ...]:
    """`plan --format json` as user nobody, without and with --detailed-exitcode."""
    drop = list(AS_NOBODY)
    argv = [*drop, *portguard_argv("plan", str(policy), "--format", "json")]
    return tuple(
        subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        for args in (argv, [*argv, "--detailed-exitcode"])
    )


def test_loopback_addresses_are_not_exposed() -> None:
    """127.0.0.1 and ::1 are loopback; 0.0.0.0, :: and a LAN address are exposed."""
    assert not sock("tcp", "127.0.0.1", 1, 1, "x").exposed
    assert not ListeningSocket(Proto.TCP, IPv6Address("::1"), 1, None, None).exposed
    assert ListeningSocket(Proto.TCP, IPv4Address("0.0.0.0"), 1, None, None).exposed
    assert sock("udp", "::", 1, 1, "x").exposed and sock("tcp", "10.0.0.5", 1, 1, "x").exposed


@pytest.mark.parametrize(
    ("tty", "no_color", "rich"),
    [(True, None, True), (True, "1", False), (False, None, False), (False, "1", False)],
)
def test_rich_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch, tty: bool, no_color: str | None, rich: bool
) -> None:
    """Rich tables only when stdout is a TTY and NO_COLOR is unset; plain text otherwise."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    assert wants_rich() is rich


def test_plain_and_markdown_tables() -> None:
    """Plain tables pad columns without trailing blanks; markdown escapes '|' in cells."""
    assert plain_table(("a", "bb"), [("ccc", ""), ("d", "e")]) == "a    bb\nccc\nd    e"
    assert markdown_table(("x",), [("a|b",)]) == "| x |\n| --- |\n| a\\|b |"
