"""A fake powershell.exe driving Windows Firewall that runs scripts as `-Command -` does.

There is no Windows here. The fake holds whole rules (action, protocol, ports, addresses,
interface, enabled) and profiles, and judges packets with them (block rules win, then allow
rules, then the profile's default inbound action). It executes a script the way real
PowerShell executes stdin under `-Command -` (about_PowerShell_exe; PowerShell #15331, #21808,
#3223, #4613):
- one line is one statement line; a multi-line statement runs only when a blank line follows
  it (otherwise it is never run);
- a non-terminating error sets `$?` False and the next statement runs anyway;
- a terminating error (-ErrorAction Stop, $ErrorActionPreference = 'Stop', throw) ends only
  the current line, unless a try on that line catches it;
- `exit N` ends the process; otherwise the exit code is 0 if the last statement's `$?` was
  True, else 1;
- Get-NetFirewallRule finding nothing records an ObjectNotFound error and sets `$?` False.
It understands the statement shapes the backend sends and refuses anything else. Every cmdlet
call is numbered; `fail_calls` makes chosen calls fail, to inject a fault at any position.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network, ip_address, ip_network

from portguard.backends.windows import POWERSHELL_ARGV, RunResult
from portguard.render.windows_rules import GROUP

__all__ = ["OTHER_RULE", "RDP_RULE", "FakeFirewall", "FakeProfile", "FakeRule"]

OTHER_RULE = "SomeVendor-Allow-8080"  # a third-party allow rule outside the portguard group
RDP_RULE = "RemoteDesktop-UserMode-In-TCP"  # Windows' built-in RDP allow rule (all sources)


@dataclass(frozen=True)
class FakeRule:
    """One Windows Firewall rule as the fake keeps it (texts as in New-NetFirewallRule)."""

    name: str
    group: str
    action: str
    protocol: str
    ports: tuple[str, ...] = ()
    icmp: tuple[str, ...] = ()
    remote: tuple[str, ...] = ()
    interface: tuple[str, ...] = ()
    enabled: bool = True


@dataclass(frozen=True)
class FakeProfile:
    """One profile as Get-NetFirewallProfile -PolicyStore ActiveStore shows it."""

    name: str
    enabled: str = "True"
    default_inbound: str = "NotConfigured"  # NotConfigured means Block
    allow_local_rules: str = "NotConfigured"  # NotConfigured means True


class _Terminating(Exception):
    """A terminating error: ends the current line unless a try catches it."""


class _Exit(Exception):
    """`exit N`."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Session:
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    stop: bool = False  # $ErrorActionPreference = 'Stop'
    error: str = ""  # $_ in a catch
    listed: tuple[FakeRule, ...] = ()
    errors: list[tuple[str, str]] = field(default_factory=list)  # -ErrorVariable: (category, text)


def _builtin() -> dict[str, FakeRule]:
    return {
        OTHER_RULE: FakeRule(OTHER_RULE, "SomeVendor", "Allow", "TCP", ("8080",)),
        RDP_RULE: FakeRule(RDP_RULE, "Remote Desktop", "Allow", "TCP", ("3389",)),
    }


def _profiles() -> tuple[FakeProfile, ...]:
    return tuple(FakeProfile(name) for name in ("Domain", "Private", "Public"))


@dataclass
class FakeFirewall:
    """A stand-in for powershell.exe driving Windows Firewall, faithful to `-Command -`."""

    rules: dict[str, FakeRule] = field(default_factory=_builtin)
    profiles: tuple[FakeProfile, ...] = field(default_factory=_profiles)
    interfaces: dict[int, str] = field(default_factory=dict)  # Get-NetIPInterface: index -> alias
    fail_calls: set[int] = field(default_factory=set)  # cmdlet call numbers (1-based) that fail
    calls: list[str] = field(default_factory=list)  # every cmdlet call, in order
    scripts: list[str] = field(default_factory=list)
    states: list[tuple[FakeRule, ...]] = field(default_factory=list)  # after every change

    @property
    def group(self) -> frozenset[str]:
        """The names of the rules in the portguard group."""
        return frozenset(n for n, r in self.rules.items() if r.group == GROUP)

    @property
    def others(self) -> frozenset[str]:
        """The names of every rule outside the portguard group."""
        return frozenset(n for n, r in self.rules.items() if r.group != GROUP)

    def edit(self, name: str, **changes: object) -> None:
        """Change a rule behind portguard's back (as an admin or a program might)."""
        self.rules[name] = replace(self.rules[name], **changes)  # type: ignore[arg-type]

    def delete(self, name: str) -> None:
        """Delete a rule behind portguard's back."""
        del self.rules[name]

    def allows(self, proto: str, port: int, source: str, interface: str | None = None) -> bool:
        """Whether Windows Firewall as held now lets this inbound packet in."""
        return allows(tuple(self.rules.values()), self.profiles, (proto, port, source), interface)

    def run(self, argv: Sequence[str], stdin: str | None = None) -> RunResult:
        """Execute one script as `powershell.exe -Command -` would; record it."""
        assert tuple(argv) == POWERSHELL_ARGV and stdin is not None
        self.scripts.append(stdin)
        session = _Session()
        code = 0
        try:
            ok = True
            for line in _statement_lines(stdin):
                try:
                    ok = self._run_line(_split(line), session)
                except _Terminating as error:
                    session.err.append(f"{error}\r\n")
                    ok = False
            code = 0 if ok else 1
        except _Exit as done:
            code = done.code
        return RunResult(code, "".join(session.out), "".join(session.err))

    def _run_line(self, statements: list[str], session: _Session) -> bool:
        ok = True
        for statement in statements:
            ok = self._statement(statement, session)
        return ok

    def _statement(self, text: str, session: _Session) -> bool:
        text = text.strip()
        tried = re.fullmatch(r"try \{(.*)\} catch \{(.*)\}", text, re.S)
        if tried:
            try:
                return self._run_line(_split(tried.group(1)), session)
            except _Terminating as error:
                session.error = str(error)
                return self._run_line(_split(tried.group(2)), session)
        if text == "$ErrorActionPreference = 'Stop'":
            session.stop = True
            return True
        if match := re.fullmatch(r"exit (\d+)", text):
            raise _Exit(int(match.group(1)))
        if match := re.fullmatch(r"\[Console\]::Out\.WriteLine\('([^']*)'\)", text):
            session.out.append(match.group(1) + "\r\n")
            return True
        if text == "[Console]::Error.WriteLine('portguard: ' + $_)":
            session.err.append(f"portguard: {session.error}\r\n")
            return True
        if text.startswith("New-NetFirewallRule "):
            return self._new_rule(text, session)
        if match := re.fullmatch(r"Remove-NetFirewallRule -Name '([^']+)' -ErrorAction Stop", text):
            return self._remove_rule(match.group(1), session)
        if text.startswith(f"$pgrules = @(Get-NetFirewallRule -Group '{GROUP}'"):
            return self._list_group(session)
        if text.startswith("foreach ($e in @($pgerr))"):
            for category, message in session.errors:
                if category != "ObjectNotFound":
                    raise _Terminating(message)
            return True
        if text.startswith("foreach ($r in $pgrules)"):
            return self._emit_rules(session)
        if text.startswith("foreach ($p in @(Get-NetFirewallProfile -PolicyStore ActiveStore))"):
            return self._emit_profiles(session)
        if text.startswith("foreach ($i in @(Get-NetIPInterface))"):
            if not self._call("Get-NetIPInterface"):
                raise _Terminating("Get-NetIPInterface : RPC server busy")
            session.out.extend(f"{i}\t{alias}\r\n" for i, alias in sorted(self.interfaces.items()))
            return True
        if text.startswith(f"Get-NetFirewallRule -Group '{GROUP}' -ErrorAction SilentlyContinue |"):
            return self._old_listing(text, session)
        raise _Terminating(f"The term '{text[:40]}' is not recognized (unknown to the fake)")

    def _call(self, cmdlet: str) -> bool:
        """Count a cmdlet call; False if this one is made to fail."""
        self.calls.append(cmdlet)
        return len(self.calls) not in self.fail_calls

    def _error(self, session: _Session, message: str, *, stop: bool) -> bool:
        if stop or session.stop:
            raise _Terminating(message)
        session.err.append(message + "\r\n")
        return False

    def _changed(self) -> None:
        self.states.append(tuple(self.rules.values()))

    def _new_rule(self, text: str, session: _Session) -> bool:
        stop = "-ErrorAction Stop" in text
        rule = _parse_new_rule(text)
        if not self._call("New-NetFirewallRule"):
            return self._error(session, "New-NetFirewallRule : The parameter is incorrect.",
                               stop=stop)  # fmt: skip
        if rule.name in self.rules:
            return self._error(session, "New-NetFirewallRule : already exists", stop=stop)
        self.rules[rule.name] = rule
        self._changed()
        return True

    def _remove_rule(self, name: str, session: _Session) -> bool:
        if not self._call("Remove-NetFirewallRule") or name not in self.rules:
            return self._error(session, f"Remove-NetFirewallRule : cannot remove {name}", stop=True)
        del self.rules[name]
        self._changed()
        return True

    def _list_group(self, session: _Session) -> bool:
        session.errors = []
        if not self._call("Get-NetFirewallRule"):
            session.errors.append(("InvalidOperation", "Get-NetFirewallRule : RPC server busy"))
            session.listed = ()
            return False
        session.listed = tuple(r for r in self.rules.values() if r.group == GROUP)
        if not session.listed:  # PowerShell #4613: $? is False even under SilentlyContinue
            session.errors.append(("ObjectNotFound", "No MSFT_NetFirewallRule objects found"))
            return False
        return True

    def _emit_rules(self, session: _Session) -> bool:
        if not self._call("Get-NetFirewallPortFilter"):
            raise _Terminating("Get-NetFirewallPortFilter : RPC server busy")
        for rule in sorted(session.listed, key=lambda r: r.name):
            session.out.append("\t".join(_listed(rule)) + "\r\n")
        return True

    def _emit_profiles(self, session: _Session) -> bool:
        if not self._call("Get-NetFirewallProfile"):
            raise _Terminating("Get-NetFirewallProfile : RPC server busy")
        for p in self.profiles:
            fields = ("profile", p.name, p.enabled, p.default_inbound, p.allow_local_rules)
            session.out.append("\t".join(fields) + "\r\n")
        return True

    def _old_listing(self, text: str, session: _Session) -> bool:
        """The pre-fix listing shape, kept so a test can show #4613 bites it."""
        assert text.endswith("| ForEach-Object { $_.Name }")
        names = sorted(self.group)
        session.out.extend(f"{name}\r\n" for name in names)
        return bool(names) and self._call("Get-NetFirewallRule")


def _statement_lines(script: str) -> Iterator[str]:
    """Statement lines as `-Command -` runs them: multi-line ones only if a blank line follows."""
    pending: list[str] = []
    for raw in script.split("\n"):
        line = raw.rstrip("\r")
        if pending:
            if line.strip():
                pending.append(line)
            elif _depth("\n".join(pending)) == 0:
                yield "\n".join(pending)
                pending = []
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if _depth(line) == 0:
            yield line
        else:
            pending = [line]
    # A multi-line statement still pending at the end of input is never run (PowerShell #3223).


def _depth(text: str) -> int:
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
    return depth


def _split(text: str) -> list[str]:
    """`text` cut at `;` outside quotes, braces and parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "{(":
            depth += 1
        elif char in "})":
            depth -= 1
        elif char == ";" and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _values(text: str, param: str) -> tuple[str, ...]:
    if match := re.search(rf"-{param} @\(([^)]*)\)", text):
        return tuple(item.strip("'") for item in match.group(1).split(","))
    if match := re.search(rf"-{param} '([^']*)'", text):
        return (match.group(1),)
    if match := re.search(rf"-{param} (\S+)", text):
        return (match.group(1),)
    return ()


def _parse_new_rule(text: str) -> FakeRule:
    assert text.endswith("| Out-Null"), text
    assert _values(text, "Direction") == ("Inbound",) and _values(text, "Profile") == ("Any",)
    return FakeRule(
        name=_values(text, "Name")[0],
        group=_values(text, "Group")[0],
        action=_values(text, "Action")[0],
        protocol=_values(text, "Protocol")[0],
        ports=_values(text, "LocalPort"),
        icmp=_values(text, "IcmpType"),
        remote=_values(text, "RemoteAddress"),
        interface=_values(text, "InterfaceAlias"),
        enabled=_values(text, "Enabled") == ("True",),
    )


def _windows_address(text: str) -> str:
    """An address as Windows lists it: IPv4 subnets in mask form, hosts bare."""
    net = ip_network(text, strict=False)
    if net.num_addresses == 1:
        return str(net.network_address)
    if isinstance(net, IPv4Network):
        return f"{net.network_address}/{net.netmask}"
    return str(net)


def _listed(rule: FakeRule) -> tuple[str, ...]:
    def joined(items: Sequence[str]) -> str:
        return ",".join(items) if items else "Any"

    return (
        "rule", rule.name, str(rule.enabled), rule.action, "Inbound", "Any", rule.protocol,
        joined(rule.ports), joined(rule.icmp),
        joined([_windows_address(a) for a in rule.remote]), joined(rule.interface),
    )  # fmt: skip


def _matches(rule: FakeRule, proto: str, port: int, source: str, interface: str | None) -> bool:
    if not rule.enabled or rule.protocol.lower() != proto.lower():
        return False
    if rule.ports and not any(_in_range(port, item) for item in rule.ports):
        return False
    if rule.remote and not any(ip_address(source) in ip_network(a) for a in rule.remote):
        return False
    return not rule.interface or interface in rule.interface


def _in_range(port: int, item: str) -> bool:
    first, _, last = item.partition("-")
    return int(first) <= port <= int(last or first)


def allows(
    rules: Sequence[FakeRule],
    profiles: Sequence[FakeProfile],
    probe: tuple[str, int, str],
    interface: str | None = None,
) -> bool:
    """Windows Firewall's inbound verdict: block rules win, then allow rules, then default."""
    proto, port, source = probe
    if any(p.enabled == "False" for p in profiles):
        return True
    if any(p.allow_local_rules == "False" for p in profiles):
        rules = [r for r in rules if r.group != GROUP]
    default_allow = any(p.default_inbound == "Allow" for p in profiles)
    hits = [r for r in rules if _matches(r, proto, port, source, interface)]
    if any(r.action == "Block" for r in hits):
        return False
    return default_allow or any(r.action == "Allow" for r in hits)
