"""The nftables backend through python-nftables (Debian's python3-nftables)."""

from __future__ import annotations

import os
import re
from typing import Any

from portguard.errors import PortguardError

__all__ = [
    "KernelRefused",
    "NftablesUnavailable",
    "dry_run",
    "open_nftables",
    "refused",
    "run_batch",
]

ERROR_LINE = re.compile(r"^[^:\n]*:(\d+):\d+(?:-\d+)?: Error: (.*)$", re.MULTILINE)


class NftablesUnavailable(PortguardError):
    """python-nftables or the kernel's nftables cannot be used here (module missing, not root)."""


class KernelRefused(PortguardError):
    """nftables refused a ruleset; carries its message and the offending rendered line."""

    def __init__(self, message: str, line_number: int | None, line_text: str | None) -> None:
        where = f" at rendered line {line_number}: {line_text.strip()}" if line_text else ""
        super().__init__(f"nftables refused the ruleset: {message}{where}")
        self.kernel_message = message
        self.line_number = line_number
        self.line_text = line_text


def open_nftables() -> Any:
    """A python-nftables handle; raise NftablesUnavailable when it cannot be had."""
    if os.geteuid() != 0:
        raise NftablesUnavailable("nftables needs root (CAP_NET_ADMIN); run as root")
    try:
        import nftables  # noqa: PLC0415 - optional system module, imported only when needed
    except ImportError:
        raise NftablesUnavailable(
            "python-nftables is not installed (Debian: apt install python3-nftables)"
        ) from None
    handle = nftables.Nftables()
    handle.set_echo_output(False)
    return handle


def run_batch(handle: Any, text: str) -> str:
    """Send `text` as one nftables batch; raise KernelRefused with the offending line."""
    rc, output, error = handle.cmd(text)
    if rc != 0:
        raise refused(text, error)
    return str(output)


def refused(text: str, error: str) -> KernelRefused:
    """Turn nft's error output into a KernelRefused pointing at the rendered line.

    From a file nft says `FILE:LINE:COL: Error: ...`; from a buffer it says `Error: ...`
    followed by the offending line and a caret line, so the line is looked up in `text`.
    """
    lines = text.splitlines()
    match = ERROR_LINE.search(error)
    if match is not None:
        number = int(match.group(1))
        line_text = lines[number - 1] if 0 < number <= len(lines) else None
        return KernelRefused(match.group(2).strip(), number, line_text)
    error_lines = [ln for ln in error.splitlines() if ln.strip()]
    if not error_lines:
        return KernelRefused("unknown error", None, None)
    message = error_lines[0].strip().removeprefix("Error: ")
    quoted = error_lines[1] if len(error_lines) > 1 else ""
    if quoted.strip() and set(quoted.strip()) != {"^"}:
        for number, line in enumerate(lines, start=1):
            if line.strip() == quoted.strip():
                return KernelRefused(message, number, line)
        return KernelRefused(message, None, quoted)
    return KernelRefused(message, None, None)


def dry_run(text: str) -> None:
    """Have the kernel parse and validate `text` without committing it (as `nft -c`)."""
    handle = open_nftables()
    handle.set_dry_run(True)
    run_batch(handle, text)
