"""Windows Firewall apply / status / remove through PowerShell, behind a small runner interface.

Every portguard rule is in the group "portguard" and named `portguard-<generation>-<key>`,
where the generation is the rule set's fingerprint plus a slot letter (a, b or c). Apply adds
the complete new generation first, reads it back and compares it rule by rule, and only then
deletes the old one, so there is never a moment without block rules: during the switch both
generations are live, and because block rules win in Windows Firewall, the stricter of the
two applies for that moment. If adding fails, the partly added generation is deleted again
and the old one stays as it was. Only rules in the group are ever listed, added or removed.
The scripts and why each is one try/catch line: backends/windows_scripts.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from portguard.backends.windows_live import (
    SLOTS,
    LiveFirewall,
    expected_rules,
    parse_listing,
    profile_causes,
    rule_causes,
)
from portguard.backends.windows_scripts import (
    DONE,
    FIELD_SEP,
    add_script,
    interfaces_script,
    list_script,
    remove_script,
)
from portguard.errors import PortguardError
from portguard.model import Policy
from portguard.render.windows_rules import GROUP, WindowsRuleset, build_windows_rules, generation

__all__ = [
    "POWERSHELL_ARGV",
    "ApplyResult",
    "PowerShellRunner",
    "RunResult",
    "Runner",
    "SyncState",
    "WindowsFirewallError",
    "WindowsStatus",
    "apply_windows",
    "interface_aliases",
    "live_rule_names",
    "read_firewall",
    "remove_windows",
    "windows_status",
]

# The script goes in on stdin ("-Command -"): a rule set can exceed the 32767-character limit
# of a Windows command line.
POWERSHELL_ARGV = (
    "powershell.exe",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-Command",
    "-",
)
RUN_TIMEOUT = 600.0


@dataclass(frozen=True)
class RunResult:
    """What a command returned."""

    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Runs one command; the real one is PowerShellRunner, tests use a recording fake."""

    def run(self, argv: Sequence[str], stdin: str | None = None) -> RunResult:
        """Run `argv`, feeding `stdin`, and return its exit status and output."""


class PowerShellRunner:
    """The real runner: subprocess, on a Windows host with powershell.exe."""

    def run(self, argv: Sequence[str], stdin: str | None = None) -> RunResult:
        """Run `argv` with subprocess and return what it did."""
        try:
            done = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise WindowsFirewallError(f"cannot run {argv[0]}: {error}") from None
        return RunResult(done.returncode, done.stdout, done.stderr)


class WindowsFirewallError(PortguardError):
    """PowerShell or Windows Firewall refused a command; carries the first error line."""


class SyncState(StrEnum):
    """How the live portguard rules compare to a policy."""

    ABSENT = "absent"
    IN_SYNC = "in-sync"
    DIFFERS = "differs"


@dataclass(frozen=True)
class WindowsStatus:
    """The live portguard rules and profiles compared with what a policy renders to."""

    state: SyncState
    live: tuple[str, ...]
    missing: tuple[str, ...]  # expected names not live (closest generation)
    extra: tuple[str, ...]  # live names not expected
    causes: tuple[str, ...] = ()  # one line per difference: edited rules, profiles, GPO


@dataclass(frozen=True)
class ApplyResult:
    """What apply did: the generation now live, rules added and removed, profile warnings."""

    generation: str
    added: int
    removed: int
    warnings: tuple[str, ...] = ()  # profiles or Group Policy that undo the rules

    @property
    def changed(self) -> bool:
        """Whether anything on the host changed."""
        return self.added > 0 or self.removed > 0


def _powershell(runner: Runner, script: str) -> RunResult:
    """Run `script`; believe it only if it exited 0 and printed DONE as its last act."""
    result = runner.run(POWERSHELL_ARGV, stdin=script)
    if result.returncode != 0 or DONE not in result.stdout.split():
        lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
        raise WindowsFirewallError(
            "Windows Firewall refused the change: "
            + (lines[0] if lines else f"exit status {result.returncode}, script did not finish")
        )
    return result


def read_firewall(runner: Runner) -> LiveFirewall:
    """The portguard rules and the profiles as Windows reports them now."""
    result = _powershell(runner, list_script())
    try:
        return parse_listing(result.stdout)
    except ValueError as error:
        raise WindowsFirewallError(f"cannot read the Windows Firewall listing: {error}") from None


def live_rule_names(runner: Runner) -> tuple[str, ...]:
    """The names of the rules in the portguard group, sorted."""
    return read_firewall(runner).names


def _closest_slot(ruleset: WindowsRuleset, live: LiveFirewall) -> str:
    names = frozenset(live.names)
    return min(SLOTS, key=lambda slot: len(frozenset(expected_rules(ruleset, slot)) ^ names))


def _compare(ruleset: WindowsRuleset, live: LiveFirewall) -> WindowsStatus:
    profiles = profile_causes(live.profiles)
    if not live.rules:
        return WindowsStatus(SyncState.ABSENT, (), (), (), ("no portguard rules", *profiles))
    expected = expected_rules(ruleset, _closest_slot(ruleset, live))
    missing, extra, edited = rule_causes(expected, live.rules)
    causes = (
        *(f"missing: {n}" for n in missing),
        *(f"extra: {n}" for n in extra),
        *(f"changed: {c}" for c in edited),
        *profiles,
    )
    state = SyncState.DIFFERS if causes else SyncState.IN_SYNC
    return WindowsStatus(state, live.names, missing, extra, causes)


def windows_status(policy: Policy, runner: Runner) -> WindowsStatus:
    """Whether the portguard rules are exactly `policy`'s and the profiles let them work."""
    return _compare(build_windows_rules(policy), read_firewall(runner))


def _generation_of(name: str) -> str:
    return name.removeprefix(f"{GROUP}-").split("-", 1)[0]


def _rules_in_sync(ruleset: WindowsRuleset, live: LiveFirewall) -> str | None:
    """The slot whose rules `live` holds exactly (profiles aside), if any."""
    for slot in SLOTS:
        missing, extra, edited = rule_causes(expected_rules(ruleset, slot), live.rules)
        if live.rules and not (missing or extra or edited):
            return slot
    return None


def _take_back(runner: Runner, names: frozenset[str]) -> None:
    """Best effort: delete those of `names` that did arrive (the old generation stays)."""
    try:
        arrived = [name for name in live_rule_names(runner) if name in names]
        if arrived:
            _powershell(runner, remove_script(arrived))
    except WindowsFirewallError:
        pass  # the original error is the one to report; the old generation is in force


def apply_windows(policy: Policy, runner: Runner) -> ApplyResult:
    """Make the group hold exactly `policy`'s rules: add, verify, only then delete the old.

    The new generation goes in under a free slot by a script that stops at its first failed
    statement; it is read back and compared rule by rule before anything old is deleted. If
    adding or the check fails, the new generation's rules are deleted again (best effort) and
    the old generation stays in force. If deleting the old fails, both are live, which is
    the stricter of the two: block rules win in Windows Firewall.
    """
    ruleset = build_windows_rules(policy)
    live = read_firewall(runner)
    current = _rules_in_sync(ruleset, live)
    if current is not None:
        return ApplyResult(
            generation(ruleset.fingerprint, current), 0, 0, profile_causes(live.profiles)
        )
    busy = {_generation_of(name) for name in live.names}
    free = [s for s in SLOTS if generation(ruleset.fingerprint, s) not in busy]
    if not free:
        raise WindowsFirewallError(
            f"every generation slot of {ruleset.fingerprint} is in use; run `portguard remove`"
        )
    gen = generation(ruleset.fingerprint, free[0])
    expected = expected_rules(ruleset, free[0])
    try:
        _powershell(runner, add_script(ruleset, gen))
        added = read_firewall(runner)
        missing, _, edited = rule_causes(expected, [r for r in added.rules if r.name in expected])
        if missing or edited:
            raise WindowsFirewallError(
                f"the new rules did not all arrive ({len(missing)} missing, {len(edited)}"
                " changed); the old rules stay in force"
            )
    except WindowsFirewallError:
        _take_back(runner, frozenset(expected))
        raise
    old = [name for name in live.names if name not in expected]
    if old:
        _powershell(runner, remove_script(old))
    final = read_firewall(runner)
    if _rules_in_sync(ruleset, final) is None:
        raise WindowsFirewallError(
            "after apply the portguard group holds rules other than the policy's;"
            " both generations stay in force (the stricter applies); run apply again"
        )
    return ApplyResult(gen, len(ruleset.rules), len(old), profile_causes(final.profiles))


def remove_windows(runner: Runner) -> int:
    """Delete every rule in the portguard group; return how many there were."""
    live = live_rule_names(runner)
    if live:
        _powershell(runner, remove_script(live))
        left = live_rule_names(runner)
        if left:
            raise WindowsFirewallError(f"{len(left)} portguard rules could not be deleted")
    return len(live)


def interface_aliases(runner: Runner) -> dict[int, str]:
    """Interface index -> alias ("Ethernet 2"), as `-InterfaceAlias` in the rules names them."""
    aliases: dict[int, str] = {}
    for line in _powershell(runner, interfaces_script()).stdout.splitlines():
        index, sep, alias = line.rstrip("\r").partition(FIELD_SEP)
        if sep and index.isdigit():
            aliases[int(index)] = alias
    return aliases
