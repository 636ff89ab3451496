"""Runtime bans on real packets: `ban` / `unban` / timeouts seen from the scanner namespace.

A ban must act at once without reloading any rule (the chain's rule handles stay the same),
survive the re-apply of a changed policy, never count as drift, and be refused where it would
cut off the admin's own SSH session. The fail2ban action is run as fail2ban would run it.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import sys
import time
from pathlib import Path

import pytest

from portguard.backends.bans import BanError, duration_seconds, parse_ban_elements
from portguard.ban import lockout_reason, parse_target
from portguard.errors import PortguardError
from portguard.lockout import parse_ssh_connection
from tests.netns import HOST_V4, HOST_V6, SCANNER_V4, SCANNER_V6, Lab, Netns, portguard_argv
from tests.probe import (
    FILTERED,
    OPEN,
    SCANNER_V4_EXTRA,
    SCANNER_V6_EXTRA,
    Probe,
    apply_in_host,
    listeners,
    prepare_lab,
    scan,
)

ROOT = Path(__file__).resolve().parent.parent
FAIL2BAN_ACTION = ROOT / "contrib" / "fail2ban" / "action.d" / "portguard.conf"
POLICY_A = "version: 1\nallow:\n  - port: 22\n"
POLICY_B = "version: 1\ndeny: [198.51.100.0/24]\nallow:\n  - port: [22, 80]\n"
SOURCES = (SCANNER_V4, SCANNER_V4_EXTRA, SCANNER_V6, SCANNER_V6_EXTRA)
# A timed ban lasts long enough to be probed as banned on a loaded machine (the probe's
# SYN is retransmitted after 1 s, and starting the ban and the probe can take seconds),
# and must be gone well before EXPIRY_WAIT.
TIMED_BAN = "8s"
EXPIRY_WAIT = 30.0


def test_parse_ban_elements_multiline_and_comments() -> None:
    """The stateful set listing yields every element, its timeout, time left and comment."""
    listing = (
        "table inet portguard {\n\tset ban4 {\n\t\ttype ipv4_addr\n\t\tflags interval,timeout\n"
        '\t\telements = { 10.1.2.0/24 timeout 1h expires 59m59s956ms comment "a, b",'
        " 10.3.3.3,\n\t\t\t     10.5.0.0/16 timeout 1s500ms expires 1s496ms }\n\t}\n}\n"
    )
    bans = parse_ban_elements(listing)
    assert [(str(b.network), b.timeout_ms, b.expires_ms, b.comment) for b in bans] == [
        ("10.1.2.0/24", 3_600_000, 3_599_956, "a, b"),
        ("10.3.3.3/32", None, None, None),
        ("10.5.0.0/16", 1500, 1496, None),
    ]


def test_durations() -> None:
    """Durations read as nft writes them; nonsense and out-of-range ones are one-line errors."""
    assert [duration_seconds(t) for t in ("600", "90s", "10m", "1h30m", "7d")] == [
        600,
        90,
        600,
        5400,
        604800,
    ]
    for bad in ("", "-1", "5x", "1h x", "0", "20000d"):
        with pytest.raises(BanError):
            duration_seconds(bad)


def test_targets_and_lockout_reason() -> None:
    """Host bits are refused, not guessed; a ban covering the SSH client is named as such."""
    assert str(parse_target("2001:db8::/64")) == "2001:db8::/64"
    with pytest.raises(PortguardError, match=re.escape("write 10.0.0.0/8")):
        parse_target("10.0.0.1/8")
    with pytest.raises(PortguardError, match="not an IP address"):
        parse_target("example.org")
    ssh = parse_ssh_connection("192.0.2.2 50000 192.0.2.1 22")
    assert lockout_reason(parse_target("192.0.2.0/24"), ssh) is not None
    assert lockout_reason(parse_target("192.0.2.3"), ssh) is None
    assert lockout_reason(parse_target("0.0.0.0/0"), None) is not None
    assert lockout_reason(parse_target("2001:db8:7::/64"), ssh) is None


def _pg(ns: Netns, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = ns.run(portguard_argv(*args), check=False, env=env)
    return done.returncode, done.stdout, done.stderr


def _outcomes(lab: Lab, port: int = 22) -> dict[str, str]:
    probes = [Probe("tcp", HOST_V6 if ":" in s else HOST_V4, port, s) for s in SOURCES]
    return {r.probe.src or "": r.outcome for r in scan(lab.scanner, probes)}


def _rule_handles(ns: Netns) -> list[str]:
    listing = ns.run(["nft", "-a", "list", "chain", "inet", "portguard", "input"]).stdout
    return re.findall(r"# handle (\d+)", listing)


@pytest.mark.netns
def test_ban_unban_timeout_reapply_and_status(net_lab: Lab, tmp_path: Path) -> None:
    """Bans drop at once (no rule reloaded), survive a changed re-apply, are not drift."""
    host, state = net_lab.host, str(tmp_path / "state")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_A, encoding="utf-8")
    prepare_lab(net_lab)
    with listeners(host, tcp=(22, 80)):
        apply_in_host(net_lab, policy, tmp_path / "state")
        assert set(_outcomes(net_lab).values()) == {OPEN}
        handles = _rule_handles(host)
        for source in (SCANNER_V4, SCANNER_V6):
            rc, out, err = _pg(host, "ban", source, "--comment", "probe", "--state-dir", state)
            assert (rc, err) == (0, ""), err
            assert out.startswith(f"portguard: banned {source}/")
        assert _outcomes(net_lab) == {
            SCANNER_V4: FILTERED,
            SCANNER_V4_EXTRA: OPEN,
            SCANNER_V6: FILTERED,
            SCANNER_V6_EXTRA: OPEN,
        }
        assert _rule_handles(host) == handles, "a ban must not reload the rules"
        assert _pg(host, "status", "--check", "--state-dir", state)[0] == 0

        policy.write_text(POLICY_B, encoding="utf-8")
        apply_in_host(net_lab, policy, tmp_path / "state")
        assert _rule_handles(host) != handles  # the changed policy really was swapped in
        assert _outcomes(net_lab, 80)[SCANNER_V4] == FILTERED
        assert _outcomes(net_lab, 80)[SCANNER_V4_EXTRA] == OPEN
        assert _pg(host, "status", "--check", "--state-dir", state)[0] == 0
        rc, out, _ = _pg(host, "bans", "--format", "json")
        listed = json.loads(out)["bans"]
        assert rc == 0
        assert {(b["address"], b["comment"]) for b in listed} == {
            (f"{SCANNER_V4}/32", "probe"),
            (f"{SCANNER_V6}/128", "probe"),
        }

        assert _pg(host, "unban", SCANNER_V4, "--state-dir", state)[0] == 0
        assert _outcomes(net_lab)[SCANNER_V4] == OPEN
        rc, _, err = _pg(host, "unban", SCANNER_V4, "--state-dir", state)
        assert (rc, err.count("\n")) == (1, 1) and "is not banned" in err

        assert (
            _pg(host, "ban", SCANNER_V4_EXTRA, "--timeout", TIMED_BAN, "--state-dir", state)[0] == 0
        )
        assert _outcomes(net_lab)[SCANNER_V4_EXTRA] == FILTERED
        deadline = time.monotonic() + EXPIRY_WAIT
        while _outcomes(net_lab)[SCANNER_V4_EXTRA] != OPEN:
            assert time.monotonic() < deadline, f"a {TIMED_BAN} ban did not expire"
            time.sleep(0.5)
    rc, out, _ = _pg(host, "history", "--format", "json", "--state-dir", state)
    actions = [row["action"] for row in json.loads(out)]
    assert actions.count("ban") == 3 and actions.count("unban") == 1


@pytest.mark.netns
def test_ban_refuses_to_cut_off_the_ssh_session(net_lab: Lab, tmp_path: Path) -> None:
    """Banning the admin's own SSH client needs --force; nothing is banned without it."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_A, encoding="utf-8")
    apply_in_host(net_lab, policy, tmp_path / "state")
    env = {
        "SSH_CONNECTION": f"{SCANNER_V4} 50000 {HOST_V4} 22",
        "PATH": "/usr/bin:/bin",
        "PORTGUARD_STATE_DIR": str(tmp_path / "state"),
    }
    rc, out, err = _pg(net_lab.host, "ban", "192.0.2.0/24", env=env)
    assert rc == 1 and out == "" and err.count("\n") == 1
    assert "your SSH session comes from 192.0.2.2" in err and "--force" in err
    assert json.loads(_pg(net_lab.host, "bans", "-f", "json")[1])["bans"] == []
    assert _pg(net_lab.host, "ban", "192.0.2.0/24", "--force", env=env)[0] == 0
    assert len(json.loads(_pg(net_lab.host, "bans", "-f", "json")[1])["bans"]) == 1


def _fail2ban_command(action: str, **tags: str) -> str:
    """The action's command with fail2ban's <tag> substitution ([Init] defaults, then `tags`)."""
    parser = configparser.RawConfigParser()
    parser.read(FAIL2BAN_ACTION, encoding="utf-8")
    values = {**dict(parser["Init"]), **tags}
    command = parser["Definition"][action]
    for name, value in values.items():
        command = command.replace(f"<{name}>", value)
    assert "<" not in command, command
    return command


@pytest.mark.netns
def test_fail2ban_action_bans_and_unbans(net_lab: Lab, tmp_path: Path) -> None:
    """actionban / actionunban of contrib/fail2ban, run through sh, ban and lift a source."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_A, encoding="utf-8")
    prepare_lab(net_lab)
    portguard = shlex.join([sys.executable, "-m", "portguard"])
    env = {"PATH": "/usr/bin:/bin", "PORTGUARD_STATE_DIR": str(tmp_path / "state")}
    with listeners(net_lab.host, tcp=(22,)):
        apply_in_host(net_lab, policy, tmp_path / "state")
        for action in ("actioncheck", "actionban"):
            command = _fail2ban_command(
                action, portguard=portguard, ip=SCANNER_V6, name="sshd", bantime="600"
            )
            done = net_lab.host.run(["sh", "-c", command], check=False, env=env)
            assert done.returncode == 0, done.stderr
        assert _outcomes(net_lab)[SCANNER_V6] == FILTERED
        listed = json.loads(_pg(net_lab.host, "bans", "-f", "json")[1])["bans"]
        assert [(b["address"], b["timeout_seconds"], b["comment"]) for b in listed] == [
            (f"{SCANNER_V6}/128", 600.0, "fail2ban sshd")
        ]
        unban = _fail2ban_command("actionunban", portguard=portguard, ip=SCANNER_V6)
        for _ in range(2):  # the second finds it gone (expired) and still succeeds
            done = net_lab.host.run(["sh", "-c", unban], check=False, env=env)
            assert done.returncode == 0, done.stderr
        assert _outcomes(net_lab)[SCANNER_V6] == OPEN


@pytest.mark.netns
def test_whole_table_replace_puts_the_bans_back(netns: Netns, tmp_path: Path) -> None:
    """A table with a foreign chain is replaced whole; its bans come back with the time left."""
    policy, state = tmp_path / "policy.yaml", str(tmp_path / "state")
    policy.write_text(POLICY_A, encoding="utf-8")
    assert _pg(netns, "apply", str(policy), "--yes", "--state-dir", state)[0] == 0
    assert (
        _pg(netns, "ban", "203.0.113.0/24", "-t", "1h", "-c", "kept", "--state-dir", state)[0] == 0
    )
    assert _pg(netns, "ban", "2001:db8:bad::/48", "--state-dir", state)[0] == 0
    netns.run(["nft", "add", "chain", "inet", "portguard", "sneaky"])
    assert _pg(netns, "status", "--check", "--state-dir", state)[0] == 3
    policy.write_text(POLICY_B, encoding="utf-8")
    rc, _, err = _pg(netns, "apply", str(policy), "--yes", "--state-dir", state)
    assert rc == 0, err
    assert "sneaky" not in netns.run(["nft", "list", "table", "inet", "portguard"]).stdout
    listed = json.loads(_pg(netns, "bans", "-f", "json")[1])["bans"]
    assert [(b["address"], b["comment"], b["expires_seconds"] is None) for b in listed] == [
        ("203.0.113.0/24", "kept", False),
        ("2001:db8:bad::/48", None, True),
    ]
    assert 3000 < listed[0]["expires_seconds"] <= 3600
    assert _pg(netns, "status", "--check", "--state-dir", state)[0] == 0


BANS = (  # (target, extra ban arguments): IPv4 and IPv6, timeouts, comments, a re-ban
    ("198.51.100.0/24", ("-t", "1h", "-c", "scan from x")),
    ("203.0.113.7", ()),
    ("2001:db8:bad::/48", ("-t", "90s")),
    ("203.0.113.7", ("-t", "2h", "-c", "again")),
    ("0.0.0.0/8", ()),  # starts at address zero: written by nft
    ("255.255.255.0/24", ("-c", "top")),  # reaches the top address: written by nft
)


def test_netlink_bans_list_as_nft_bans(netns: Netns, tmp_path: Path) -> None:
    """Bans sent over netlink (backends/ban_netlink.py) and the same bans added through nft
    itself, each into a fresh portguard table, list the same (time left aside)."""
    policy, state = tmp_path / "policy.yaml", str(tmp_path / "state")
    policy.write_text(POLICY_A, encoding="utf-8")

    def ban_sets() -> str:
        listed = [
            netns.run(["nft", "list", "set", "inet", "portguard", name]).stdout
            for name in ("ban4", "ban6")
        ]
        return re.sub(r" expires \S+", "", "".join(listed))

    assert _pg(netns, "apply", str(policy), "--yes", "--state-dir", state)[0] == 0
    for target, extra in BANS:
        assert _pg(netns, "ban", target, *extra, "--state-dir", state)[0] == 0
    by_portguard = ban_sets()
    assert _pg(netns, "remove", "--yes", "--state-dir", state)[0] == 0
    assert _pg(netns, "apply", str(policy), "--yes", "--state-dir", state)[0] == 0
    for target, extra in BANS:
        options = dict(zip(extra[::2], extra[1::2], strict=True))
        element = target + (f" timeout {options['-t']}" if "-t" in options else "")
        element += f' comment "{options["-c"]}"' if "-c" in options else ""
        ban_set = "ban6" if ":" in target else "ban4"
        script = (
            f"add element inet portguard {ban_set} {{ {target} }}\n"
            f"delete element inet portguard {ban_set} {{ {target} }}\n"
            f"add element inet portguard {ban_set} {{ {element} }}\n"
        )
        netns.run(["nft", "-f", "-"], input_text=script)
    assert ban_sets() == by_portguard
    assert "scan from x" in by_portguard and "2001:db8:bad::/48 timeout 1m30s" in by_portguard


def test_ban_elements_are_not_part_of_the_compared_listing() -> None:
    """The listing drift compares keeps the ban sets' declarations but none of their elements."""
    from portguard.backends.nftables import without_dynamic_elements  # noqa: PLC0415
    from portguard.facts.ruleset import parse_live_table  # noqa: PLC0415

    def listing(elements: str) -> str:
        return (
            "table inet portguard {\n\tset ban4 {\n\t\ttype ipv4_addr\n"
            f"\t\tflags interval,timeout\n{elements}\t}}\n\n\tset deny4_g0 {{\n"
            "\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.9.0.0/16 }\n\t}\n}\n"
        )

    banned = listing(
        '\t\telements = { 10.1.2.0/24 timeout 1h comment "x",\n\t\t\t     10.3.3.3 }\n'
    )
    clean = without_dynamic_elements(banned)
    assert clean == listing("")
    assert parse_live_table(clean).set_names == ("ban4", "deny4_g0")
    assert "10.9.0.0/16" in clean  # policy sets keep their elements


@pytest.mark.netns
def test_a_history_that_cannot_be_written_does_not_fail_the_ban(
    netns: Netns, tmp_path: Path
) -> None:
    """The ban is in force and the command succeeds; the missed history row is a warning."""
    policy, state = tmp_path / "policy.yaml", tmp_path / "state"
    policy.write_text(POLICY_A, encoding="utf-8")
    assert _pg(netns, "apply", str(policy), "--yes", "--state-dir", str(state))[0] == 0
    (state / "history.sqlite3").unlink()
    (state / "history.sqlite3").mkdir()  # not a database: every write fails
    rc, out, err = _pg(netns, "ban", "203.0.113.9", "--state-dir", str(state))
    assert (rc, out) == (0, "portguard: banned 203.0.113.9/32 until unbanned\n")
    assert err.startswith("portguard: warning: history not recorded:") and err.count("\n") == 1
    listed = json.loads(_pg(netns, "bans", "-f", "json")[1])["bans"]
    assert [b["address"] for b in listed] == ["203.0.113.9/32"]
