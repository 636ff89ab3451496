"""`diff OLD NEW` compares meaning: opened/closed (port, source) space, lint, rendered rules."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from portguard.cli import main
from portguard.model import Network, Policy
from portguard.policy import load_policy, parse_policy
from portguard.policy_diff import PolicyDiff, diff_json, diff_policies, subtract_networks
from tests.test_plan import check_golden

ROOT = Path(__file__).resolve().parent.parent

OLD = """\
version: 1
allow:
  - port: 80
  - service: ssh
    from: [10.0.0.0/8]
  - port: 443
    proto: [tcp, udp]
"""
REORDERED = """\
version: 1
allow:
  - port: 443
    proto: [udp, tcp]
  - service: ssh
    from: [10.0.0.0/9, 10.128.0.0/9]   # the same sources, split
  - port: 80
"""
NEW = """\
version: 1
allow:
  - port: 443
  - service: ssh
    from: [10.0.0.0/8, 192.0.2.0/24]
  - port: 31337
  - port: 8000-8100
    from: [10.1.0.0/16]
"""


def policy_of(text: str, path: str) -> Policy:
    """A policy parsed from YAML text."""
    return parse_policy(text.encode(), path).policy


def diff_of(old: str, new: str) -> PolicyDiff:
    """diff_policies over two YAML texts, with their lint warnings."""
    first, second = (parse_policy(t.encode(), n) for t, n in ((old, "old.yaml"), (new, "new.yaml")))
    return diff_policies(first.policy, second.policy, first.warnings, second.warnings)


def test_reordering_and_splitting_show_no_change() -> None:
    """Entries in another order, protocols swapped, a CIDR split in two: nothing changes."""
    result = diff_of(OLD, REORDERED)
    assert (result.opened, result.closed, result.ruleset_diff) == ((), (), "")
    assert not result.changed


def test_opened_and_closed_by_port_and_source() -> None:
    """New sources, new ports and dropped protocols appear as opened and closed space."""
    data = diff_json(diff_of(OLD, NEW))
    assert data["opened"] == [
        {"proto": "tcp", "ports": "22", "from": ["192.0.2.0/24"], "interface": None},
        {"proto": "tcp", "ports": "8000-8100", "from": ["10.1.0.0/16"], "interface": None},
        {"proto": "tcp", "ports": "31337", "from": ["any"], "interface": None},
    ]
    assert data["closed"] == [
        {"proto": "tcp", "ports": "80", "from": ["any"], "interface": None},
        {"proto": "udp", "ports": "443", "from": ["any"], "interface": None},
    ]
    assert data["changed"] is True
    lint = data["lint"]
    assert isinstance(lint, dict)
    assert lint["removed"] == []
    assert lint["added"] == [
        "new.yaml:6:5: warning: allows well-known trojan port(s): 31337 (Back Orifice)"
    ]


def test_narrowing_sources_closes_the_rest_of_the_space() -> None:
    """From anywhere to 10.0.0.0/8 closes every other IPv4 address and all of IPv6."""
    result = diff_of(
        "version: 1\nallow:\n  - port: 22\n",
        "version: 1\nallow:\n  - port: 22\n    from: [10.0.0.0/8]\n",
    )
    assert result.opened == ()
    (closed,) = result.closed
    assert closed.ports_text == "22"
    networks = [ip_network(n) for n in closed.sources]
    assert ip_network("::/0") in networks
    assert not any(ip_address("10.20.30.40") in n for n in networks)
    assert any(ip_address("11.0.0.1") in n for n in networks)
    assert any(ip_address("9.255.255.255") in n for n in networks)


def test_interface_entries_are_their_own_space() -> None:
    """Moving a port onto one interface closes it everywhere and opens it on that interface."""
    result = diff_of(
        "version: 1\nallow:\n  - port: 9100\n",
        "version: 1\nallow:\n  - port: 9100\n    interface: eth1\n",
    )
    assert [(c.ports_text, c.interface) for c in result.opened] == [("9100", "eth1")]
    assert [(c.ports_text, c.interface) for c in result.closed] == [("9100", None)]


def test_a_limit_alone_is_not_a_space_change_but_the_rules_differ() -> None:
    """Adding a rate limit keeps the port allowed; the rendered rules still show the change."""
    result = diff_of(
        "version: 1\nallow:\n  - port: 22\n",
        "version: 1\nallow:\n  - port: 22\n    limit: 6/minute\n",
    )
    assert (result.opened, result.closed) == ((), ())
    assert "update @e1_meter4 { ip saddr limit rate 6/minute" in result.ruleset_diff
    assert "-\t\ttcp dport @open_tcp counter accept" in result.ruleset_diff
    assert result.changed


def test_forwarded_change_is_reported_in_json() -> None:
    """filter -> ignore is a change of its own: JSON "forwarded" with old and new, lint added."""
    result = diff_of(OLD, "version: 1\nforwarded: ignore\n" + OLD.removeprefix("version: 1\n"))
    assert (result.opened, result.closed) == ((), ())
    assert result.changed
    data = diff_json(result)
    assert data["forwarded"] == {"old": "filter", "new": "ignore"}
    lint = data["lint"]
    assert isinstance(lint, dict)
    assert [w.split(": warning: ")[0] for w in lint["added"]] == ["new.yaml:2:1"]


def test_unchanged_forwarded_has_no_json_key() -> None:
    """No "forwarded" key when both policies say the same (written or by default)."""
    explicit = "version: 1\nforwarded: filter\n" + OLD.removeprefix("version: 1\n")
    result = diff_of(OLD, explicit)
    assert result.forwarded_change is None
    assert "forwarded" not in diff_json(result)


def test_forwarded_change_in_text_and_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Text and markdown say whether published ports become filtered or unfiltered."""
    (tmp_path / "a.yaml").write_text("version: 1\nforwarded: ignore\nallow: []\n")
    (tmp_path / "b.yaml").write_text("version: 1\nallow: []\n")
    a, b = str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")
    assert main(["diff", a, b]) == 0
    text = capsys.readouterr().out
    assert "Published ports:\n  forwarded: ignore -> filter: published ports" in text
    assert "become filtered" in text
    assert main(["diff", b, a, "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "### Published ports\n\nforwarded: filter -> ignore:" in markdown
    assert "become unfiltered" in markdown


# Networks packed into 10.0.0.0/20 and 2001:db8::/116, so that they overlap often.
NETWORKS = st.one_of(
    st.builds(
        lambda a, p: IPv4Network((0x0A000000 + a, p), strict=False),
        st.integers(0, 2**12 - 1),
        st.integers(20, 32),
    ),
    st.builds(
        lambda a, p: IPv6Network((0x20010DB8 << 96 | a, p), strict=False),
        st.integers(0, 2**12 - 1),
        st.integers(116, 128),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    minuend=st.lists(NETWORKS, max_size=4),
    subtrahend=st.lists(NETWORKS, max_size=4),
    probes=st.lists(NETWORKS, max_size=6),
)
def test_subtract_networks_is_set_difference(
    minuend: list[Network], subtrahend: list[Network], probes: list[Network]
) -> None:
    """An address is in the result exactly when it is in the minuend and not the subtrahend."""
    result = subtract_networks(minuend, subtrahend)
    candidates = [n.network_address for n in (*probes, *minuend, *subtrahend)]
    candidates += [n.broadcast_address for n in (*minuend, *subtrahend)]
    for address in candidates:
        in_result = any(n.version == address.version and address in n for n in result)
        in_minuend = any(n.version == address.version and address in n for n in minuend)
        in_subtrahend = any(n.version == address.version and address in n for n in subtrahend)
        assert in_result == (in_minuend and not in_subtrahend)


@pytest.fixture
def policy_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """old.yaml and new.yaml in the working directory, so that paths in output are short."""
    (tmp_path / "old.yaml").write_text(OLD)
    (tmp_path / "new.yaml").write_text(NEW)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return "old.yaml", "new.yaml"


def test_diff_text_golden(
    policy_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The plain-text diff matches its golden file, and exits 0."""
    assert main(["diff", *policy_files]) == 0
    check_golden("diff.txt", capsys.readouterr().out.rstrip("\n"))


def test_diff_markdown_golden(
    policy_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The markdown diff matches its golden file."""
    assert main(["diff", *policy_files, "--format", "markdown"]) == 0
    check_golden("diff.md", capsys.readouterr().out.rstrip("\n"))


def test_diff_json_from_the_cli(
    policy_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--format json` prints the same object diff_json builds."""
    assert main(["diff", *policy_files, "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    old, new = (load_policy(p) for p in policy_files)
    assert printed == diff_json(diff_policies(old.policy, new.policy, old.warnings, new.warnings))


def test_diff_of_an_invalid_policy_is_one_located_line(
    policy_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad NEW file is one `FILE:LINE:COL: message` line on stderr and exit 1."""
    Path("bad.yaml").write_text("version: 1\nallow:\n  - port: 70000\n")
    assert main(["diff", policy_files[0], "bad.yaml"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("bad.yaml:3:")
    assert captured.err.count("\n") == 1


def test_pre_commit_hook_checks_every_file_it_is_given(tmp_path: Path) -> None:
    """The hook's entry, run as pre-commit runs it, passes good files and fails on a bad one."""
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "portguard-check"]
    assert re.search(hook["files"], "policies/web-server.yaml")
    good = [str(ROOT / "policies" / "web-server.yaml"), str(ROOT / "policies" / "default.yaml")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nallow:\n  - port: 0\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def run(files: list[str]) -> subprocess.CompletedProcess[str]:
        argv = [*shlex.split(hook["entry"]), *files]
        return subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=60, check=False
        )

    passed = run(good)
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.count(": ok (") == 2
    failed = run([good[0], str(bad), good[1]])
    assert failed.returncode == 1
    assert failed.stdout.count(": ok (") == 2
    assert f"{bad}:3:" in failed.stderr
