"""Windows Firewall apply / status / remove through PowerShell, behind a small runner interface.

Every portguard rule is in the group "portguard" and named `portguard-<generation>-<key>`,
where the generation is the rule set's fingerprint plus a slot letter (a or b). Apply adds
the complete new generation first and only then deletes the old one, so there is never a
moment without block rules: during the switch both generations are live, and because block
rules win in Windows Firewall, the stricter of the two applies for that moment. If adding
fails, the partly added generation is deleted again and the old one stays as it was.
Only rules in the group are ever listed, added or removed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from portguard.errors import PortguardError
from portguard.model import Policy
from portguard.render.netsh import rule_name
from portguard.render.powershell import powershell_script
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
    "live_rule_names",
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
SLOTS = ("a", "b", "c")  # a third for a host left with two generations by an interruption
LIST_SCRIPT = (
    f"Get-NetFirewallRule -Group '{GROUP}' -ErrorAction SilentlyContinue"
    " | ForEach-Object { $_.Name }"
)


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
    """The live portguard rules compared with the rules a policy renders to."""

    state: SyncState
    live: tuple[str, ...]
    missing: tuple[str, ...]  # expected names not live (closest generation)
    extra: tuple[str, ...]  # live names not expected


@dataclass(frozen=True)
class ApplyResult:
    """What apply did: the generation now live, rules added and rules removed."""

    generation: str
    added: int
    removed: int

    @property
    def changed(self) -> bool:
        """Whether anything on the host changed."""
        return self.added > 0 or self.removed > 0


def _powershell(runner: Runner, script: str) -> RunResult:
    result = runner.run(POWERSHELL_ARGV, stdin=script)
    if result.returncode != 0:
        lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
        raise WindowsFirewallError(
            "Windows Firewall refused the change: " + (lines[0] if lines else "no error text")
        )
    return result


def live_rule_names(runner: Runner) -> tuple[str, ...]:
    """The names of the rules in the portguard group, sorted."""
    out = _powershell(runner, LIST_SCRIPT).stdout
    return tuple(sorted(line.strip() for line in out.splitlines() if line.strip()))


def _expected(ruleset: WindowsRuleset, slot: str) -> frozenset[str]:
    gen = generation(ruleset.fingerprint, slot)
    return frozenset(rule_name(gen, rule.key) for rule in ruleset.rules)


def _compare(ruleset: WindowsRuleset, live: tuple[str, ...]) -> WindowsStatus:
    if not live:
        return WindowsStatus(SyncState.ABSENT, live, (), ())
    live_set = frozenset(live)
    best = min(SLOTS, key=lambda slot: len(_expected(ruleset, slot) ^ live_set))
    expected = _expected(ruleset, best)
    state = SyncState.IN_SYNC if expected == live_set else SyncState.DIFFERS
    return WindowsStatus(
        state, live, tuple(sorted(expected - live_set)), tuple(sorted(live_set - expected))
    )


def windows_status(policy: Policy, runner: Runner) -> WindowsStatus:
    """Whether the live portguard rules are exactly those `policy` renders to."""
    return _compare(build_windows_rules(policy), live_rule_names(runner))


def _remove_script(keep_generation: str | None) -> str:
    select = f"Get-NetFirewallRule -Group '{GROUP}' -ErrorAction SilentlyContinue"
    if keep_generation is not None:
        select += f" | Where-Object {{ $_.Name -notlike '{GROUP}-{keep_generation}-*' }}"
    return f"$ErrorActionPreference = 'Stop'\n{select} | Remove-NetFirewallRule"


def _remove_generation_script(gen: str) -> str:
    return (
        f"Get-NetFirewallRule -Group '{GROUP}' -ErrorAction SilentlyContinue"
        f" | Where-Object {{ $_.Name -like '{GROUP}-{gen}-*' }} | Remove-NetFirewallRule"
    )


def apply_windows(policy: Policy, runner: Runner) -> ApplyResult:
    """Make the portguard group hold exactly `policy`'s rules: add the new, then drop the old."""
    ruleset = build_windows_rules(policy)
    live = live_rule_names(runner)
    status = _compare(ruleset, live)
    if status.state is SyncState.IN_SYNC:
        current = live[0].removeprefix(f"{GROUP}-").split("-", 1)[0]
        return ApplyResult(generation=current, added=0, removed=0)
    busy = {name.removeprefix(f"{GROUP}-").split("-", 1)[0] for name in live}
    free = [s for s in SLOTS if generation(ruleset.fingerprint, s) not in busy]
    if not free:
        raise WindowsFirewallError(
            f"every generation slot of {ruleset.fingerprint} is in use; run `portguard remove`"
        )
    slot = free[0]
    gen = generation(ruleset.fingerprint, slot)
    try:
        _powershell(runner, "\n".join(powershell_script(ruleset, gen)))
    except WindowsFirewallError:
        runner.run(POWERSHELL_ARGV, stdin=_remove_generation_script(gen))  # best-effort rollback
        raise
    _powershell(runner, _remove_script(keep_generation=gen))
    now = _compare(ruleset, live_rule_names(runner))
    if now.state is not SyncState.IN_SYNC:
        raise WindowsFirewallError(
            f"after apply the portguard rules differ: missing {len(now.missing)},"
            f" extra {len(now.extra)}"
        )
    return ApplyResult(generation=gen, added=len(ruleset.rules), removed=len(live))


def remove_windows(runner: Runner) -> int:
    """Delete every rule in the portguard group; return how many there were."""
    live = live_rule_names(runner)
    if live:
        _powershell(runner, _remove_script(keep_generation=None))
    return len(live)
