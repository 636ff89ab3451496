"""Render a Policy as New-NetFirewallRule commands in the "portguard" rule group."""

from __future__ import annotations

from portguard import __version__
from portguard.model import Policy
from portguard.render.netsh import rule_name
from portguard.render.windows_rules import (
    GROUP,
    WindowsRule,
    WindowsRuleset,
    build_windows_rules,
    windows_text,
)
from portguard.render.windows_rules import (
    generation as rule_generation,
)

__all__ = ["new_rule_command", "powershell_script", "render_powershell"]


def _list(items: list[str]) -> str:
    return "@(" + ",".join(f"'{item}'" for item in items) + ")"


def new_rule_command(rule: WindowsRule, generation: str) -> str:
    """One New-NetFirewallRule command for `rule`, named for `generation`."""
    parts = [
        "New-NetFirewallRule",
        f"-Name '{rule_name(generation, rule.key)}'",
        f"-DisplayName '{GROUP} {rule.key}'",
        f"-Group '{GROUP}'",
        "-Direction Inbound",
        f"-Action {rule.action.value.capitalize()}",
        f"-Protocol {rule.protocol}",
    ]
    if rule.local_ports:
        parts.append(f"-LocalPort {_list([str(r) for r in rule.local_ports])}")
    if rule.icmp_types:
        parts.append(f"-IcmpType {_list([str(t) for t in rule.icmp_types])}")
    if rule.remote_addresses:
        parts.append(f"-RemoteAddress {_list([str(n) for n in rule.remote_addresses])}")
    if rule.interface is not None:
        parts.append(f"-InterfaceAlias '{rule.interface}'")
    parts += ["-Profile Any", "-Enabled True", f"-Description '{windows_text(rule.description)}'"]
    return " ".join([*parts, "-ErrorAction Stop"]) + " | Out-Null"


def powershell_script(ruleset: WindowsRuleset, generation: str) -> list[str]:
    """The commands that add every rule of `ruleset` under `generation`, stopping at an error."""
    return [
        "$ErrorActionPreference = 'Stop'",
        *(new_rule_command(rule, generation) for rule in ruleset.rules),
    ]


def render_powershell(policy: Policy) -> str:
    """A PowerShell script adding every portguard rule for `policy` (group "portguard")."""
    ruleset = build_windows_rules(policy)
    generation = rule_generation(ruleset.fingerprint)
    lines = [
        f"# Rendered by portguard {__version__} from {windows_text(policy.path)}.",
        f"# Rules are in group '{GROUP}', named '{GROUP}-{generation}-...'. Block rules win over",
        "# allow rules in Windows Firewall, so the block rules cover every port not allowed.",
        f"# Remove them all: Get-NetFirewallRule -Group '{GROUP}' | Remove-NetFirewallRule",
        *(f"# NOTE: {windows_text(note, None)}" for note in ruleset.notes),
        *powershell_script(ruleset, generation),
    ]
    return "\n".join(lines) + "\n"
