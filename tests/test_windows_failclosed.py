"""Windows apply is fail-closed and status tells the truth, against the `-Command -` fake.

A fault is injected at every cmdlet call of an apply (one call fails, or every call from
there on fails); after each, and at every moment in between, the rules let in nothing that
neither the old nor the new policy lets in, and a later apply repairs the host.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from portguard.backends.windows import (
    SyncState,
    WindowsFirewallError,
    apply_windows,
    windows_status,
)
from portguard.model import Policy
from portguard.policy import load_policy
from tests.windows_fake import FakeFirewall, FakeProfile, FakeRule, allows

OLD = (
    "version: 1\nallow:\n  - port: [80, 443]\n  - port: 22\n    from: [192.0.2.0/24]\n"
    "  - port: 53\n    proto: udp\n"
)
NEW = (
    "version: 1\nallow:\n  - port: [443, 8443]\n  - port: 22\n    from: [198.51.100.0/24]\n"
    "  - port: 3389\n    from: [192.0.2.0/24, 2001:db8::/32]\n"
)
PORTS = (1, 22, 53, 80, 443, 3389, 8080, 8443, 65535)
SOURCES = ("192.0.2.7", "198.51.100.7", "203.0.113.9", "2001:db8::7", "2001:db9::1")
PROBES = tuple(itertools.product(("TCP", "UDP"), PORTS, SOURCES))


def _policy(tmp_path: Path, name: str, text: str) -> Policy:
    path = tmp_path / name
    path.write_text(text)
    return load_policy(path).policy


Probe = tuple[str, int, str]


def _allowed(fake: FakeFirewall, rules: tuple[FakeRule, ...] | None = None) -> frozenset[Probe]:
    held = tuple(fake.rules.values()) if rules is None else rules
    return frozenset(p for p in PROBES if allows(held, fake.profiles, p))


def _applied(policy: Policy) -> FakeFirewall:
    fake = FakeFirewall()
    apply_windows(policy, fake)
    return fake


def test_a_fault_at_any_call_never_opens_what_neither_policy_opens(tmp_path: Path) -> None:
    """Every position, one fault or all calls failing from there: never more than old or new."""
    old, new = _policy(tmp_path, "old.yaml", OLD), _policy(tmp_path, "new.yaml", NEW)
    allowed_old = _allowed(_applied(old))
    allowed_new = _allowed(_applied(new))
    assert ("TCP", 3389, "203.0.113.9") not in allowed_old | allowed_new  # RDP's rule is beaten
    clean = _applied(old)
    start = len(clean.calls)
    apply_windows(new, clean)
    total = len(clean.calls) - start
    assert total >= 20
    outcomes = {"failed": 0, "applied": 0}
    for position, every_later in itertools.product(range(1, total + 1), (False, True)):
        fake = _applied(old)
        first = len(fake.calls) + position
        fake.fail_calls = set(range(first, first + 10_000)) if every_later else {first}
        fake.states.clear()
        try:
            apply_windows(new, fake)
            outcomes["applied"] += 1
            assert _allowed(fake) == allowed_new
        except WindowsFirewallError:
            outcomes["failed"] += 1
        for state in [*fake.states, tuple(fake.rules.values())]:
            leaked = _allowed(fake, state) - allowed_old - allowed_new
            assert not leaked, f"fault at call {position} (every_later={every_later}): {leaked}"
        fake.fail_calls = set()
        apply_windows(new, fake)
        assert _allowed(fake) == allowed_new
        assert windows_status(new, fake).state is SyncState.IN_SYNC
    assert outcomes["failed"] >= total  # every injected fault was seen, none passed silently


def test_status_reads_what_decides_verdicts(tmp_path: Path) -> None:
    """Disabled or edited rules, a profile off, default Allow and GPO each give a cause."""
    policy = _policy(tmp_path, "old.yaml", OLD)
    fake = _applied(policy)
    assert windows_status(policy, fake).causes == ()
    block = next(n for n in sorted(fake.group) if "-block-tcp-from-" in n)
    allow = next(n for n in sorted(fake.group) if "-allow-tcp-from-" in n)
    fake.edit(block, enabled=False)
    fake.edit(allow, remote=("0.0.0.0/0",))
    fake.profiles = (
        FakeProfile("Domain", enabled="False"),
        FakeProfile("Private", default_inbound="Allow"),
        FakeProfile("Public", allow_local_rules="False"),
    )
    status = windows_status(policy, fake)
    assert status.state is SyncState.DIFFERS
    assert status.causes == (
        f"changed: {allow}: remote addresses changed",
        f"changed: {block}: disabled",
        "profile Domain: Windows Firewall is off",
        "profile Private: DefaultInboundAction is Allow",
        "profile Public: Group Policy sets AllowLocalFirewallRules False, so the local"
        " portguard rules are not in force",
    )
    assert ("TCP", 22, "203.0.113.9") in _allowed(fake)  # each cause really lets more in


def test_apply_repairs_an_edited_rule(tmp_path: Path) -> None:
    """A rule edited behind portguard's back is not "in sync": apply replaces the generation."""
    policy = _policy(tmp_path, "old.yaml", OLD)
    fake = _applied(policy)
    expected = _allowed(fake)
    block = next(n for n in sorted(fake.group) if "-block-tcp-1" in n)
    fake.edit(block, enabled=False)
    assert _allowed(fake) != expected
    result = apply_windows(policy, fake)
    assert result.changed and _allowed(fake) == expected
    assert windows_status(policy, fake).causes == ()


@pytest.mark.parametrize("code", [0, 1])
def test_a_script_that_did_not_finish_is_not_believed(tmp_path: Path, code: int) -> None:
    """Exit 0 without the DONE marker (a statement never ran) is an error, not success."""
    policy = _policy(tmp_path, "old.yaml", OLD)

    class Silent(FakeFirewall):
        def run(self, argv, stdin=None):  # type: ignore[no-untyped-def]
            """Answer every script with an exit code and no output, as an unrun block does."""
            from portguard.backends.windows import RunResult  # noqa: PLC0415

            return RunResult(code, "", "")

    with pytest.raises(WindowsFirewallError, match="did not finish"):
        apply_windows(policy, Silent())
