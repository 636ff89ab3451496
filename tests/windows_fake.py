"""A recording fake of powershell.exe driving Windows Firewall (there is no Windows here).

It keeps the rule names a real Windows Firewall would hold, understands exactly the scripts
the backend sends (add by New-NetFirewallRule, list, remove by name pattern) and records a
snapshot after every call.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from portguard.backends.windows import POWERSHELL_ARGV, RunResult

__all__ = ["NAME", "OTHER_RULE", "FakeFirewall"]

OTHER_RULE = "SomeVendor-Allow-8080"  # a rule outside the portguard group
NAME = re.compile(r"-Name '([^']+)'")


@dataclass
class FakeFirewall:
    """A recording stand-in for powershell.exe driving Windows Firewall."""

    group: set[str] = field(default_factory=set)
    others: set[str] = field(default_factory=lambda: {OTHER_RULE})
    fail_at_rule: int | None = None  # the Nth New-NetFirewallRule fails (1-based)
    scripts: list[str] = field(default_factory=list)
    snapshots: list[frozenset[str]] = field(default_factory=list)

    def run(self, argv: Sequence[str], stdin: str | None = None) -> RunResult:
        """Interpret one backend script; record it and the rule names afterwards."""
        assert tuple(argv) == POWERSHELL_ARGV and stdin is not None
        self.scripts.append(stdin)
        result = self._interpret(stdin)
        self.snapshots.append(frozenset(self.group))
        return result

    def _interpret(self, script: str) -> RunResult:
        if "New-NetFirewallRule" in script:
            for number, name in enumerate(NAME.findall(script), 1):
                if number == self.fail_at_rule:
                    return RunResult(1, "", "New-NetFirewallRule : The parameter is incorrect.")
                assert "-Group 'portguard'" in script
                self.group.add(name)
            return RunResult(0, "", "")
        if "Remove-NetFirewallRule" in script:
            keep = re.search(r"-notlike '([^']+)'", script)
            only = re.search(r"-like '([^']+)'", script)
            for name in list(self.group):
                if keep and fnmatch.fnmatchcase(name, keep.group(1)):
                    continue
                if only and not fnmatch.fnmatchcase(name, only.group(1)):
                    continue
                self.group.discard(name)
            return RunResult(0, "", "")
        if "Get-NetFirewallRule -Group 'portguard'" in script:
            return RunResult(0, "".join(f"{n}\r\n" for n in sorted(self.group)), "")
        return RunResult(1, "", f"unexpected script: {script[:60]}")
