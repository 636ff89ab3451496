"""The lockout guard: pure decisions, and apply refusing (or forced) inside a namespace."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest

from portguard.lockout import (
    SshConnection,
    lockout_reason,
    parse_ssh_connection,
    services_cut_off,
)
from portguard.model import ListeningSocket, Policy, Proto
from portguard.policy import parse_policy
from tests.netns import Netns, portguard_argv
from tests.test_ports_cmd import HOST_LISTENERS, clean_env, listening, write_policy

ONLY_WEB = "version: 1\nallow:\n  - port: [80, 443]\n"
SSH_FROM_ADMINS = """\
version: 1
allow:
  - service: ssh
    from: [192.0.2.0/24]
  - port: 2222
    from: [198.51.100.0/24]
  - port: 8443
    interface: eth1
"""


def policy_of(text: str) -> Policy:
    """A policy parsed from YAML text."""
    return parse_policy(text.encode(), "p.yaml").policy


def ssh(value: str) -> SshConnection:
    """A parsed SSH_CONNECTION that must be valid."""
    parsed = parse_ssh_connection(value)
    assert parsed is not None
    return parsed


@pytest.mark.parametrize("value", [None, "", "1.2.3.4 5 6", "x 1 y 22", "1.2.3.4 5 6.7.8.9 0"])
def test_unset_or_malformed_ssh_connection_is_none(value: str | None) -> None:
    """No session, or a value that is not four fields of addresses and ports, is None."""
    assert parse_ssh_connection(value) is None


def test_ssh_connection_fields_and_mapped_ipv4() -> None:
    """The four fields are parsed; an IPv4-mapped client is taken as IPv4."""
    parsed = ssh("::ffff:192.0.2.9 50000 2001:db8:7::1 22")
    assert parsed.client == IPv4Address("192.0.2.9")
    assert (parsed.client_port, parsed.server, parsed.server_port) == (
        50000,
        ip_address("2001:db8:7::1"),
        22,
    )


@pytest.mark.parametrize(
    ("session", "refused"),
    [
        ("192.0.2.9 50000 192.0.2.1 22", False),  # admins' network, port 22
        ("203.0.113.5 50000 192.0.2.1 22", True),  # outsider on 22
        ("198.51.100.7 50000 192.0.2.1 2222", False),  # non-standard port, allowed source
        ("192.0.2.9 50000 192.0.2.1 2222", True),  # non-standard port, other source
        ("2001:db8::9 50000 2001:db8::1 22", True),  # IPv6 client not in the list
        ("127.0.0.1 50000 127.0.0.1 9999", False),  # loopback is always accepted
    ],
)
def test_lockout_reason_follows_the_policy(session: str, refused: bool) -> None:
    """Refusal depends on client address and the server port in SSH_CONNECTION, not on 22."""
    reason = lockout_reason(policy_of(SSH_FROM_ADMINS), ssh(session))
    assert (reason is not None) is refused
    if reason is not None:
        client, _client_port, _server, server_port = session.split()
        assert client in reason
        assert f"port {server_port}" in reason


def test_interface_bound_entry_counts_only_on_that_interface() -> None:
    """An entry tied to eth1 saves the session when it arrives on eth1, not elsewhere."""
    policy = policy_of(SSH_FROM_ADMINS)
    session = ssh("203.0.113.5 50000 10.0.0.1 8443")
    assert lockout_reason(policy, session, "eth1") is None
    assert lockout_reason(policy, session, "eth0") is not None
    assert lockout_reason(policy, session, None) is not None


def test_services_cut_off_excludes_the_ssh_port_and_loopback() -> None:
    """Blocked exposed sockets are listed, except the session's own port and loopback ones."""
    any4 = IPv4Address("0.0.0.0")
    sockets = (
        ListeningSocket(Proto.TCP, any4, 22, 1, "sshd"),
        ListeningSocket(Proto.TCP, any4, 80, 2, "nginx"),
        ListeningSocket(Proto.TCP, any4, 25, 3, "exim"),
        ListeningSocket(Proto.TCP, IPv4Address("127.0.0.1"), 631, 4, "cupsd"),
    )
    cut = services_cut_off(policy_of(ONLY_WEB), sockets, ssh("192.0.2.9 1 192.0.2.1 22"))
    assert [s.port for s in cut] == [25]
    assert [s.port for s in services_cut_off(policy_of(ONLY_WEB), sockets, None)] == [22, 25]


@pytest.mark.netns
@pytest.mark.parametrize("server_port", [22, 2222])
def test_apply_refuses_to_lock_out_the_session(
    netns: Netns, tmp_path: Path, server_port: int
) -> None:
    """apply exits 1 with one line and loads nothing; --force applies and warns."""
    policy = write_policy(tmp_path, SSH_FROM_ADMINS)
    state = str(tmp_path / "state")
    env = clean_env(SSH_CONNECTION=f"203.0.113.5 50000 192.0.2.1 {server_port}")
    argv = portguard_argv("apply", str(policy), "--yes", "--state-dir", state)
    with listening(netns, HOST_LISTENERS[:2]):
        refused = netns.run(argv, check=False, env=env)
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1
        assert "refusing to apply" in refused.stderr
        assert f"203.0.113.5 to port {server_port}" in refused.stderr
        assert "portguard" not in netns.ruleset()
        assert not (tmp_path / "state" / "applied.json").exists()
        forced = netns.run([*argv, "--force"], check=False, env=env)
    assert forced.returncode == 0, forced.stderr
    assert "warning: --force:" in forced.stderr
    assert "tcp 0.0.0.0 port 80, held by nginx" in forced.stderr
    assert "table inet portguard" in netns.ruleset()


@pytest.mark.netns
def test_apply_proceeds_when_the_session_stays_allowed(netns: Netns, tmp_path: Path) -> None:
    """A session from an allowed source is not in the way; apply loads the table."""
    policy = write_policy(tmp_path, SSH_FROM_ADMINS)
    env = clean_env(SSH_CONNECTION="198.51.100.7 50000 192.0.2.1 2222")
    result = netns.run(
        portguard_argv("apply", str(policy), "--yes", "--state-dir", str(tmp_path / "s")),
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "refusing" not in result.stderr
    assert "table inet portguard" in netns.ruleset()
