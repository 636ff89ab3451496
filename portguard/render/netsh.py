"""Render a Policy as `netsh advfirewall firewall add rule` lines (a Windows batch script)."""

from __future__ import annotations

from portguard import __version__
from portguard.model import Policy
from portguard.render.windows_rules import (
    GROUP,
    WindowsRule,
    build_windows_rules,
    windows_text,
)
from portguard.render.windows_rules import (
    generation as rule_generation,
)

__all__ = ["netsh_lines", "render_netsh", "rule_name"]


def rule_name(generation: str, key: str) -> str:
    """The Windows rule name: group prefix, generation, and the rule's key."""
    return f"{GROUP}-{generation}-{key}"


def netsh_lines(rule: WindowsRule, generation: str) -> list[str]:
    """The `netsh advfirewall firewall add rule` line(s) for one rule (one per ICMP type)."""
    common = f"dir=in action={rule.action.value} profile=any enable=yes edge=no"
    description = f'description="{windows_text(rule.description)}"'
    remote = ",".join(str(n) for n in rule.remote_addresses) or "any"
    if rule.protocol.startswith("ICMP"):
        kind = rule.protocol.lower()
        variants = [(f"{rule.key}-{t}", f"{kind}:{t},any") for t in rule.icmp_types]
        variants = variants or [(rule.key, kind)]
        return [
            f'netsh advfirewall firewall add rule name="{rule_name(generation, key)}" {common}'
            f" protocol={protocol} remoteip={remote} {description}"
            for key, protocol in variants
        ]
    ports = ",".join(str(r) for r in rule.local_ports) or "any"
    return [
        f'netsh advfirewall firewall add rule name="{rule_name(generation, rule.key)}" {common}'
        f" protocol={rule.protocol} localport={ports} remoteip={remote} {description}"
    ]


def render_netsh(policy: Policy) -> str:
    """A batch script adding every portguard rule for `policy` with netsh."""
    ruleset = build_windows_rules(policy, interfaces=False)
    generation = rule_generation(ruleset.fingerprint)
    lines = [
        "@echo off",
        f"rem Rendered by portguard {__version__} from {windows_text(policy.path)}.",
        f'rem Every rule is named "{GROUP}-{generation}-...". Block rules win over allow rules',
        "rem in Windows Firewall, so the block rules cover every port the policy does not allow.",
        *(f"rem NOTE: {windows_text(note, None)}" for note in ruleset.notes),
    ]
    for rule in ruleset.rules:
        lines.extend(netsh_lines(rule, generation))
    return "\n".join(lines) + "\n"
