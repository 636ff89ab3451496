"""An example and the exit codes of every command, shown at the end of its `-h` and the man page."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["EPILOGS", "epilog"]

P = "/etc/portguard/policy.yaml"

# command -> (example command lines, exit codes)
EPILOGS: Mapping[str, tuple[tuple[str, ...], str]] = MappingProxyType(
    {
        "check": (
            ("portguard check policy.yaml", "portguard check --no-kernel policies/*.yaml"),
            "0 valid (warnings allowed); 1 invalid, with one file:line:col line.",
        ),
        "render": (
            ("portguard render policy.yaml", "portguard render -t netsh policy.yaml"),
            "0 printed; 1 invalid policy.",
        ),
        "apply": (
            (f"portguard apply --confirm 120 {P}", "portguard confirm"),
            "0 applied (or already in force); 1 error or refused, the old rules stay.",
        ),
        "confirm": (
            ("portguard confirm",),
            "0 kept; 1 nothing awaits confirmation.",
        ),
        "status": (
            ("portguard status", f"portguard status --check --policy {P}"),
            "0 loaded (with --check: in sync); 1 error; 3 drift (with --check).",
        ),
        "history": (
            ("portguard history -n 10",),
            "0 listed; 1 error.",
        ),
        "show": (
            ("portguard show",),
            "0 shown; 1 error.",
        ),
        "remove": (
            ("portguard remove --yes",),
            "0 removed, or nothing was loaded; 1 error.",
        ),
        "rollback": (
            ("portguard history", "portguard rollback 3"),
            "0 rolled back; 1 error or refused, the rules in force stay.",
        ),
        "install": (
            ("portguard install --policy policy.yaml", "portguard install --root /tmp/image"),
            "0 installed; 1 error (nothing written when the policy is invalid).",
        ),
        "uninstall": (
            ("portguard uninstall",),
            "0 done (also when nothing was installed); 1 error.",
        ),
        "ports": (
            ("portguard ports", f"portguard ports --policy {P}"),
            "0 listed; 1 error.",
        ),
        "plan": (
            (f"portguard plan {P}", f"portguard plan --detailed-exitcode {P}"),
            "0 no changes; 1 error; 2 changes pending (with --detailed-exitcode).",
        ),
        "diff": (
            ("portguard diff old.yaml new.yaml", "portguard diff -f markdown old.yaml new.yaml"),
            "0 compared; 1 error.",
        ),
        "enforce": (
            ("portguard enforce policy.yaml",),
            "0 stopped cleanly; 1 error.",
        ),
        "ban": (
            ("portguard ban 203.0.113.7 --timeout 1h --comment 'ssh brute force'",),
            "0 banned; 1 error (nothing loaded, a bad address, or your own SSH session).",
        ),
        "unban": (
            ("portguard unban 203.0.113.7",),
            "0 done; 1 error.",
        ),
        "bans": (
            ("portguard bans", "portguard bans -f json"),
            "0 listed; 1 error.",
        ),
        "stats": (
            ("portguard stats", "portguard stats -f prometheus -o /var/tmp/portguard.prom"),
            "0 shown; 1 error.",
        ),
        "log": (
            ("portguard log --follow", "portguard log -f json -n 10 --follow"),
            "0 done; 1 error.",
        ),
        "services": (
            ("portguard services", "portguard services -f json"),
            "0 listed.",
        ),
        "schema": (
            ("portguard schema > portguard-policy.schema.json",),
            "0 printed.",
        ),
        "completion": (
            ("portguard completion bash > /etc/bash_completion.d/portguard",),
            "0 printed; 1 unknown shell.",
        ),
    }
)


def epilog(command: str) -> str | None:
    """The 'Examples' and 'Exit codes' paragraphs of `command`, or None when it has none."""
    found = EPILOGS.get(command)
    if found is None:
        return None
    examples, codes = found
    lines = "\n\n".join(f"  $ {line}" for line in examples)
    return f"Examples:\n\n{lines}\n\nExit codes: {codes}"
