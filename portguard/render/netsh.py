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

__all__ = ["MAX_LINE", "group_line", "netsh_lines", "render_netsh", "rule_name"]

# cmd.exe refuses lines over 8,191 characters; keep a margin.
MAX_LINE = 8000
STOP = " || exit /b 1"  # a batch file runs on after an error; stop at the first failed rule


def rule_name(generation: str, key: str) -> str:
    """The Windows rule name: group prefix, generation, and the rule's key."""
    return f"{GROUP}-{generation}-{key}"


def netsh_lines(rule: WindowsRule, generation: str) -> list[str]:
    """The `netsh advfirewall firewall add rule` line(s) for one rule.

    One line per ICMP type; a long address list is cut into several rules (same action, so
    the same meaning) so that no line exceeds MAX_LINE, below cmd.exe's 8,191 characters.
    """
    common = f"dir=in action={rule.action.value} profile=any enable=yes edge=no"
    description = f'description="{windows_text(rule.description)}"'
    if rule.protocol.startswith("ICMP"):
        kind = rule.protocol.lower()
        variants = [(f"{rule.key}-{t}", f"{kind}:{t},any") for t in rule.icmp_types]
        variants = variants or [(rule.key, kind)]
        return [
            f'netsh advfirewall firewall add rule name="{rule_name(generation, key)}" {common}'
            f" protocol={protocol} remoteip=any {description}{STOP}"
            for key, protocol in variants
        ]
    ports = ",".join(str(r) for r in rule.local_ports) or "any"

    def line(key: str, remote: str) -> str:
        return (
            f'netsh advfirewall firewall add rule name="{rule_name(generation, key)}" {common}'
            f" protocol={rule.protocol} localport={ports} remoteip={remote or 'any'}"
            f" {description}{STOP}"
        )

    addresses = [str(n) for n in rule.remote_addresses]
    packs = _packs(addresses, MAX_LINE - len(line(f"{rule.key}-9999", "")))
    if len(packs) == 1:
        return [line(rule.key, packs[0])]
    return [line(f"{rule.key}-{n}", remote) for n, remote in enumerate(packs, 1)]


def _packs(items: list[str], budget: int) -> list[str]:
    """`items` joined with commas into as few strings as fit in `budget` characters each."""
    packs: list[str] = []
    current = ""
    for item in items:
        if current and len(current) + 1 + len(item) > budget:
            packs.append(current)
            current = ""
        current = f"{current},{item}" if current else item
    packs.append(current)
    return packs


def group_line(generation: str) -> str:
    """A line putting the rules netsh added (netsh has no group=) into the portguard group."""
    return (
        'powershell -NoProfile -NonInteractive -Command "Get-NetFirewallRule -DisplayName'
        f" '{GROUP}-{generation}-*' | ForEach-Object {{ $_.Group = '{GROUP}';"
        f' Set-NetFirewallRule -InputObject $_ }}"{STOP}'
    )


def render_netsh(policy: Policy) -> str:
    """A batch script adding every portguard rule for `policy` with netsh."""
    ruleset = build_windows_rules(policy, interfaces=False)
    generation = rule_generation(ruleset.fingerprint)
    lines = [
        "@echo off",
        f"rem Rendered by portguard {__version__} from {windows_text(policy.path)}.",
        f'rem Every rule is named "{GROUP}-{generation}-...". Block rules win over allow rules',
        "rem (the last line puts them in the portguard group, which netsh cannot name, so that",
        "rem `portguard status` and `portguard remove` see them).",
        "rem in Windows Firewall, so the block rules cover every port the policy does not allow.",
        *(f"rem NOTE: {windows_text(note, None)}" for note in ruleset.notes),
    ]
    for rule in ruleset.rules:
        lines.extend(netsh_lines(rule, generation))
    lines.append(group_line(generation))
    return "\n".join(lines) + "\n"
