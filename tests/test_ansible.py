"""The Ansible collection against three real OpenSSH hosts in throwaway namespaces.

ansible-playbook runs in a controller namespace with ansible-core from PyPI (a private venv)
and reaches three host namespaces over SSH, each a real sshd. Each host gets its own policy
file and state dir (the hosts share this machine's filesystem) and listeners on 80, 443 and
8080; what the rules do is proven with probes from the controller.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.ansible_run import AnsibleProject, PlaybookRun, ansible_venv
from tests.netns import can_make_netns
from tests.probe import FILTERED, OPEN, Probe, listeners, scan
from tests.sshd_lab import SshHost, SshLab, sshd_lab

pytestmark = pytest.mark.netns

PLAYBOOKS = Path(__file__).resolve().parent / "ansible"
PORTS = (80, 443, 8080)
BROKEN = "version: 1\nallow:\n  - service: ssh\n  - port: [80, 70000]\n"
BROKEN_LINE = 4
REVERT_WAIT = 90.0  # seconds for an unconfirmed host to get its old rules back


def policy(*ports: int) -> str:
    """SSH from the controller's network, plus `ports` from anywhere."""
    listed = ", ".join(str(p) for p in ports)
    return (
        "version: 1\ndefault: drop\nallow:\n  - service: ssh\n    from: [198.51.100.0/24]\n"
        f"    comment: administration\n  - port: [{listed}]\n"
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnsibleProject]:
    """Three sshd hosts, a controller, the collection installed; listeners on every host."""
    if not can_make_netns():
        pytest.skip("needs root with ip and nft to make throwaway network namespaces")
    venv = ansible_venv()
    work = tmp_path_factory.mktemp("ansible")
    with sshd_lab(work) as lab, ExitStack() as stack:
        for host in lab.hosts:
            stack.enter_context(listeners(host.ns, tcp=PORTS))
        yield AnsibleProject.create(lab, work, venv)


def _reach(lab: SshLab, port: int) -> dict[str, str]:
    """What a TCP probe from the controller to `port` sees on each host."""
    probes = [Probe("tcp", host.address, port) for host in lab.hosts]
    return {h.name: r.outcome for h, r in zip(lab.hosts, scan(lab.controller, probes), strict=True)}


def _table(host: SshHost) -> str:
    """The host's `table inet portguard` stateless listing ("" when there is none): counter
    values move with traffic (issue 14), the rules do not."""
    listed = host.ns.run(["nft", "-s", "list", "table", "inet", "portguard"], check=False)
    return listed.stdout if listed.returncode == 0 else ""


def _dest(host: SshHost) -> Path:
    return host.dir / "etc" / "policy.yaml"


def _changed(run: PlaybookRun) -> dict[str, bool]:
    return {host: result.changed for host, result in run.of("policy").items()}


def _policies(project: AnsibleProject, **texts: str) -> None:
    project.inventory({name: {"pg_policy": text} for name, text in texts.items()})


def test_check_apply_rerun_change_absent_broken(project: AnsibleProject) -> None:
    """The issue's scenario: --check --diff, apply, re-run, one host changed, absent, broken."""
    _check_then_apply(project)
    _rerun_then_one_host_changed(project)
    _absent_then_broken(project)


def _check_then_apply(project: AnsibleProject) -> None:
    """--check --diff: changed everywhere, nothing written; apply: the tables filter."""
    lab, playbook = project.lab, PLAYBOOKS / "policy.yml"
    _policies(project, h1=policy(80), h2=policy(80), h3=policy(80))
    checked = project.playbook(playbook, "--check", "--diff")
    assert checked.returncode == 0, checked.explain()
    assert _changed(checked) == {"h1": True, "h2": True, "h3": True}, checked.explain()
    assert all(_table(h) == "" and not _dest(h).exists() for h in lab.hosts)
    assert not any((h.dir / "state").exists() for h in lab.hosts)  # no record written either
    plan = checked.of("policy")["h1"].result["plan"]
    assert isinstance(plan, dict)
    assert (plan["policy"], plan["opened"], plan["ruleset"]["state"]) == (
        str(_dest(lab.hosts[0])),
        None,
        "absent",
    )
    assert checked.stdout.count("closes every port the policy does not allow") == len(lab.hosts)
    assert _reach(lab, 8080) == {"h1": OPEN, "h2": OPEN, "h3": OPEN}

    applied = project.playbook(playbook)
    assert applied.returncode == 0, applied.explain()
    assert _changed(applied) == {"h1": True, "h2": True, "h3": True}
    assert all(_dest(h).read_text() == policy(80) for h in lab.hosts)
    assert _reach(lab, 80) == {"h1": OPEN, "h2": OPEN, "h3": OPEN}
    assert _reach(lab, 8080) == {"h1": FILTERED, "h2": FILTERED, "h3": FILTERED}


def _rerun_then_one_host_changed(project: AnsibleProject) -> None:
    """The same policies again: changed=0; h2's policy changed: only h2 changes, with a diff."""
    lab, playbook = project.lab, PLAYBOOKS / "policy.yml"
    again = project.playbook(playbook)
    assert again.returncode == 0, again.explain()
    assert _changed(again) == {"h1": False, "h2": False, "h3": False}, again.explain()
    assert "changed=0" in again.stdout and "changed=1" not in again.stdout
    plan = again.of("policy")["h1"].result["plan"]
    assert isinstance(plan, dict) and plan["changes"] is False

    _policies(project, h1=policy(80), h2=policy(80, 8080), h3=policy(80))
    one = project.playbook(playbook, "--diff")
    assert one.returncode == 0, one.explain()
    assert _changed(one) == {"h1": False, "h2": True, "h3": False}, one.explain()
    assert f"{_dest(lab.hosts[1])}: opens tcp 8080" in one.stdout
    assert "+\t\t\t8080," in one.stdout  # the rules diff: 8080 joins the open ports set
    assert _reach(lab, 8080) == {"h1": FILTERED, "h2": OPEN, "h3": FILTERED}


def _absent_then_broken(project: AnsibleProject) -> None:
    """h3 absent: its table and dest go; a broken policy on h1 fails there only, rules kept."""
    lab, playbook = project.lab, PLAYBOOKS / "policy.yml"
    project.inventory(
        {
            "h1": {"pg_policy": policy(80)},
            "h2": {"pg_policy": policy(80, 8080)},
            "h3": {"pg_state": "absent"},
        }
    )
    would = project.playbook(playbook, "--check", "--diff")
    assert _changed(would) == {"h1": False, "h2": False, "h3": True}, would.explain()
    assert "removes table inet portguard" in would.stdout
    assert _table(lab.hosts[2]) != "" and _dest(lab.hosts[2]).exists()  # check mode kept both
    removed = project.playbook(playbook)
    assert removed.returncode == 0, removed.explain()
    assert _changed(removed) == {"h1": False, "h2": False, "h3": True}
    assert _table(lab.hosts[2]) == "" and not _dest(lab.hosts[2]).exists()
    assert _reach(lab, 8080) == {"h1": FILTERED, "h2": OPEN, "h3": OPEN}
    removed_again = project.playbook(playbook)
    assert _changed(removed_again) == {"h1": False, "h2": False, "h3": False}

    before = {h.name: _table(h) for h in lab.hosts}
    project.inventory(
        {
            "h1": {"pg_policy": BROKEN},
            "h2": {"pg_policy": policy(80, 8080)},
            "h3": {"pg_state": "absent"},
        }
    )
    broken = project.playbook(playbook)
    assert broken.returncode != 0
    results = broken.of("policy")
    assert results["h1"].status == "failed", broken.explain()
    message = str(results["h1"].result["msg"])
    assert message.startswith(f"{_dest(lab.hosts[0])}:{BROKEN_LINE}:"), message
    assert "70000" in message and "\n" not in message
    assert (results["h2"].status, results["h3"].status) == ("ok", "ok")
    assert _changed(broken) == {"h1": False, "h2": False, "h3": False}
    assert {h.name: _table(h) for h in lab.hosts} == before
    assert _dest(lab.hosts[0]).read_text() == policy(80)
    assert _reach(lab, 8080) == {"h1": FILTERED, "h2": OPEN, "h3": OPEN}


def test_confirm_with_wait_for_connection(project: AnsibleProject) -> None:
    """apply with confirm, reset + wait_for_connection, confirm: kept; unconfirmed reverts."""
    lab = project.lab
    _policies(project, h1=policy(80), h2=policy(80), h3=policy(80))
    assert project.playbook(PLAYBOOKS / "policy.yml").returncode == 0
    assert _reach(lab, 443) == {"h1": FILTERED, "h2": FILTERED, "h3": FILTERED}
    new = policy(80, 443)
    project.inventory(
        {
            "h1": {"pg_policy": new, "pg_confirm": 300},
            "h2": {"pg_policy": new, "pg_confirm": 300},
            "h3": {"pg_policy": new, "pg_confirm": 15, "pg_skip_confirm": True},
        }
    )
    run = project.playbook(PLAYBOOKS / "confirm.yml")
    assert run.returncode == 0, run.explain()
    assert all(r.result.get("pending_confirm") is True for r in run.of("policy").values())
    assert {h: r.status for h, r in run.of("reconnect").items()} == {
        "h1": "ok",
        "h2": "ok",
        "h3": "ok",
    }
    confirmed = run.of("confirm")
    assert {h: (r.status, r.changed) for h, r in confirmed.items()} == {
        "h1": ("ok", True),
        "h2": ("ok", True),
        "h3": ("skipped", False),
    }, run.explain()
    deadline = time.monotonic() + REVERT_WAIT
    while _reach(lab, 443)["h3"] != FILTERED and time.monotonic() < deadline:
        time.sleep(2)
    assert _reach(lab, 443) == {"h1": OPEN, "h2": OPEN, "h3": FILTERED}
    assert _dest(lab.hosts[0]).read_text() == new
    too_late = project.playbook(PLAYBOOKS / "confirm_only.yml", "--limit", "h3")
    assert too_late.of("confirm")["h3"].status == "failed", too_late.explain()
    assert "came too late" in str(too_late.of("confirm")["h3"].result["msg"])
    late = project.playbook(PLAYBOOKS / "confirm.yml", "--limit", "h3", "-e", "pg_skip_confirm=0")
    assert late.of("policy")["h3"].changed, late.explain()  # the reverted host applies again
    assert late.of("confirm")["h3"].changed, late.explain()
    assert _reach(lab, 443) == {"h1": OPEN, "h2": OPEN, "h3": OPEN}


def test_lockout_guard_is_live_over_ssh(project: AnsibleProject) -> None:
    """A policy that would cut Ansible's own SSH session is refused (no --force by default)."""
    lab = project.lab
    _policies(project, h1=policy(80), h2=policy(80), h3=policy(80))
    assert project.playbook(PLAYBOOKS / "policy.yml").returncode == 0
    before = _table(lab.hosts[0])
    no_ssh = "version: 1\nallow:\n  - port: 80\n"
    _policies(project, h1=no_ssh, h2=policy(80), h3=policy(80))
    refused = project.playbook(PLAYBOOKS / "policy.yml", "--limit", "h1")
    result = refused.of("policy")["h1"]
    assert result.status == "failed", refused.explain()
    message = str(result.result["msg"])
    assert message.startswith("portguard: refusing to apply: "), message
    assert "would refuse new SSH connections from 198.51.100.1 to port 22" in message
    assert _table(lab.hosts[0]) == before
    assert _dest(lab.hosts[0]).read_text() == policy(80)  # the old policy file is put back
    assert _reach(lab, 22)["h1"] == OPEN


def test_example_playbook_parses(project: AnsibleProject) -> None:
    """ansible/examples/site.yml with its inventory passes ansible-playbook --syntax-check."""
    examples = Path(__file__).resolve().parent.parent / "ansible" / "examples"
    run = project.playbook(
        examples / "site.yml", "--syntax-check", "-i", str(examples / "inventory.yml")
    )
    assert run.returncode == 0, run.explain()
    assert "playbook: " in run.stdout


def test_set_files_relative_to_the_policy(project: AnsibleProject) -> None:
    """Set files resolve next to dest, for content and src alike; check mode and apply agree."""
    lab = project.lab
    with_set = "version: 1\nsets:\n  admins: {file: admins.txt}\nallow:\n"
    with_set += "  - service: ssh\n    from: ['@admins']\n  - port: 443\n"
    for host in lab.hosts[:2]:
        (host.dir / "etc").mkdir(exist_ok=True)
        (host.dir / "etc" / "admins.txt").write_text("198.51.100.0/24\n")
    src = lab.hosts[1].dir / "srv" / "policy.yaml"
    src.parent.mkdir(exist_ok=True)
    src.write_text(with_set)
    (src.parent / "admins.txt").write_text("203.0.113.9\n")  # not used: dest's dir counts
    project.inventory(
        {"h1": {"pg_policy": with_set}, "h2": {"pg_src": str(src)}, "h3": {"pg_state": "absent"}}
    )
    h3_loaded = bool(_table(lab.hosts[2]))  # absent changes h3 only if a table is there
    checked = project.playbook(PLAYBOOKS / "policy.yml", "--check")
    assert checked.returncode == 0, checked.explain()
    assert _changed(checked) == {"h1": True, "h2": True, "h3": h3_loaded}
    applied = project.playbook(PLAYBOOKS / "policy.yml")
    assert applied.returncode == 0, applied.explain()
    assert _dest(lab.hosts[1]).read_text() == with_set  # src copied to dest
    assert all("198.51.100.0/24 . 22" in _table(h) for h in lab.hosts[:2])
    assert "203.0.113.9" not in _table(lab.hosts[1])
    again = project.playbook(PLAYBOOKS / "policy.yml")
    assert _changed(again) == {"h1": False, "h2": False, "h3": False}, again.explain()
    assert _reach(lab, 443)["h1"] == OPEN and _reach(lab, 443)["h2"] == OPEN
