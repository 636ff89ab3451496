"""The PowerShell scripts the Windows backend sends, written for `powershell.exe -Command -`.

Under `-Command -` PowerShell reads stdin as if typed at a prompt: each line is one statement,
an error does not stop the lines after it ($ErrorActionPreference = 'Stop' only ends the
current line; PowerShell #15331, #21808), a multi-line statement runs only when a blank line
follows it (#3223), and the exit code is the last statement's `$?`. So every script here is
ONE line: a `try { ... } catch { ...; exit 1 }` whose body runs with -ErrorAction Stop, so the
first failing statement jumps to the catch and exits 1. It prints DONE as its last act, and the
backend believes a script only when it exited 0 AND printed DONE AND (for changes) the rules
read back afterwards are what was asked for.

A listing with no rule in the group still records an ObjectNotFound error and sets `$?` False
(PowerShell #4613): the listing collects errors in a variable, rethrows any that is not
ObjectNotFound, and ends with an explicit `exit 0`.
"""

from __future__ import annotations

from collections.abc import Iterable

from portguard.render.powershell import new_rule_command
from portguard.render.windows_rules import GROUP, WindowsRuleset

__all__ = [
    "DONE",
    "FIELD_SEP",
    "INTERFACES",
    "add_script",
    "interfaces_script",
    "list_script",
    "remove_script",
]

DONE = "portguard-done"
FIELD_SEP = "\t"

_CATCH = "catch { [Console]::Error.WriteLine('portguard: ' + $_); exit 1 }"
_HEAD = "$ErrorActionPreference = 'Stop'"
_DONE = f"[Console]::Out.WriteLine('{DONE}')"

# Each rule: name, Enabled, Action, Direction, Profile, then its port, address and interface
# filters; list values joined with ",". Each profile: name, Enabled, DefaultInboundAction and
# AllowLocalFirewallRules, from the ActiveStore (what is in force, Group Policy merged in).
_RULES = (
    f"$pgrules = @(Get-NetFirewallRule -Group '{GROUP}' -ErrorAction SilentlyContinue"
    " -ErrorVariable pgerr)"
)
_RETHROW = (
    "foreach ($e in @($pgerr)) { if ($e.CategoryInfo.Category -ne 'ObjectNotFound') { throw $e } }"
)
_EMIT_RULES = (
    "foreach ($r in $pgrules) {"
    " $pf = $r | Get-NetFirewallPortFilter; $af = $r | Get-NetFirewallAddressFilter;"
    " $if = $r | Get-NetFirewallInterfaceFilter;"
    " [Console]::Out.WriteLine((@('rule', $r.Name, $r.Enabled, $r.Action, $r.Direction,"
    " $r.Profile, $pf.Protocol, (@($pf.LocalPort) -join ','), (@($pf.IcmpType) -join ','),"
    " (@($af.RemoteAddress) -join ','), (@($if.InterfaceAlias) -join ',')) -join \"`t\")) }"
)
_EMIT_PROFILES = (
    "foreach ($p in @(Get-NetFirewallProfile -PolicyStore ActiveStore)) {"
    " [Console]::Out.WriteLine((@('profile', $p.Name, $p.Enabled, $p.DefaultInboundAction,"
    ' $p.AllowLocalFirewallRules) -join "`t")) }'
)


INTERFACES = (
    "foreach ($i in @(Get-NetIPInterface)) {"
    " [Console]::Out.WriteLine(('{0}' -f $i.InterfaceIndex) + \"`t\" + $i.InterfaceAlias) }"
)


def _one_line(statements: Iterable[str]) -> str:
    body = "; ".join([_HEAD, *statements, _DONE])
    return f"try {{ {body} }} {_CATCH}\n"


def add_script(ruleset: WindowsRuleset, generation: str) -> str:
    """Add every rule of `ruleset` under `generation`; stop and exit 1 at the first failure."""
    return _one_line(new_rule_command(rule, generation) for rule in ruleset.rules)


def remove_script(names: Iterable[str]) -> str:
    """Delete the rules named `names` (all in the group); stop and exit 1 at the first failure."""
    return _one_line(
        f"Remove-NetFirewallRule -Name '{name}' -ErrorAction Stop" for name in sorted(names)
    )


def list_script() -> str:
    """Print every portguard rule and every profile, one tab-separated line each."""
    return _one_line([_RULES, _RETHROW, _EMIT_RULES, _EMIT_PROFILES]) + "exit 0\n"


def interfaces_script() -> str:
    """Print every IP interface's index and alias (the names Windows Firewall rules match)."""
    return _one_line([INTERFACES])
