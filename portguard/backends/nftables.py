"""The nftables backend through python-nftables (Debian's python3-nftables)."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any

from portguard.errors import PortguardError
from portguard.render.nft_table import PERSISTENT_SETS, TABLE_FAMILY, TABLE_NAME

__all__ = [
    "KernelRefused",
    "NftKernel",
    "NftablesUnavailable",
    "dry_run",
    "has_net_admin",
    "locate_refusal",
    "open_kernel",
    "open_nftables",
    "refused",
    "run_batch",
    "without_dynamic_elements",
]

TABLE_REF = f"table {TABLE_FAMILY} {TABLE_NAME}"
NO_SUCH_OBJECT = "No such file or directory"
CAP_NET_ADMIN = 12
LARGE_BATCH_CHARS = 1 << 20
ERROR_LINE = re.compile(r"^[^:\n]*:(\d+):\d+(?:-\d+)?: Error: (.*)$", re.MULTILINE)


class NftablesUnavailable(PortguardError):
    """python-nftables or the kernel's nftables cannot be used here (module missing, not root)."""

    prefix = "portguard: "


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
    if not has_net_admin():
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


def has_net_admin() -> bool:
    """Whether this process holds CAP_NET_ADMIN (root in a container may not)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def run_batch(handle: Any, text: str) -> str:
    """Send `text` as one nftables batch; raise KernelRefused with the offending line."""
    rc, output, error = handle.cmd(text)
    if rc != 0:
        raise locate_refusal(text, error)
    return str(output)


def locate_refusal(text: str, error: str) -> KernelRefused:
    """The refusal of `text`, pointing at the line the kernel or parser objected to.

    libnftables (1.0.6) quotes the first line of a buffer whatever the error, so the same
    text is dry-run once more from a temporary file, where nft names the real line.
    """
    from_buffer = refused(text, error)
    if len(text.splitlines()) < 2:  # one line cannot be located any better
        return from_buffer
    try:
        checker = open_nftables()
        checker.set_dry_run(True)
        with tempfile.NamedTemporaryFile("w", suffix=".nft", encoding="utf-8") as copy:
            copy.write(text)
            copy.flush()
            rc, _output, file_error = checker.cmd_from_file(copy.name)
    except (OSError, NftablesUnavailable):
        return from_buffer
    if rc == 0:
        return from_buffer
    located = refused(text, str(file_error))
    return located if located.line_number is not None else from_buffer


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


@dataclass(frozen=True)
class NftKernel:
    """One python-nftables handle for a whole command: lists, applies and deletes the table."""

    handle: Any

    def run(self, text: str) -> str:
        """Send `text` as one batch; KernelRefused (with the offending line) if refused.

        A big batch (a set of a million elements is 20 MB of text) goes through a private
        temporary file: from a buffer, python-nftables and libnftables each copy it (three
        copies at libnftables' own peak), and from a file nft names the refused line.
        """
        if len(text) < LARGE_BATCH_CHARS:
            return run_batch(self.handle, text)
        try:
            with tempfile.NamedTemporaryFile("w", suffix=".nft", encoding="utf-8") as copy:
                copy.write(text)
                copy.flush()
                rc, output, error = self.handle.cmd_from_file(copy.name)
        except OSError:  # no writable temporary directory (early boot): from the buffer
            return run_batch(self.handle, text)
        if rc != 0:
            raise refused(text, str(error))
        return str(output)

    def try_run(self, text: str) -> str | None:
        """Send `text` as one batch; the error text if refused, None if it went through."""
        rc, _output, error = self.handle.cmd(text)
        return None if rc == 0 else str(error).strip() or "unknown error"

    def listing(self) -> str | None:
        """The stateless text listing of the table (None when absent), minus meter elements."""
        self.handle.set_stateless_output(True)
        try:
            text = self.stateful_listing()
        finally:
            self.handle.set_stateless_output(False)
        return None if text is None else without_dynamic_elements(text)

    def delete_table(self) -> bool:
        """Delete `table inet portguard`; True if there was one to delete."""
        rc, _output, error = self.handle.cmd(f"delete {TABLE_REF}")
        if rc == 0:
            return True
        if NO_SUCH_OBJECT in error:
            return False
        raise refused(f"delete {TABLE_REF}", error)

    def set_listing(self, name: str) -> str | None:
        """One set of the table, listed in the handle's output mode (None when absent).

        libnftables fetches only that set's elements for it, not every set's."""
        command = f"list set {TABLE_FAMILY} {TABLE_NAME} {name}"
        rc, output, error = self.handle.cmd(command)
        if rc != 0:
            if NO_SUCH_OBJECT in error:
                return None
            raise refused(command, error)
        return str(output)

    def stateful_listing(self) -> str | None:
        """The table's text listing in the handle's output mode (None when absent): stateful,
        counter values included, except inside `listing`."""
        rc, output, error = self.handle.cmd(f"list {TABLE_REF}")
        if rc != 0:
            if NO_SUCH_OBJECT in error:
                return None
            raise refused(f"list {TABLE_REF}", error)
        return str(output)


def open_kernel() -> NftKernel:
    """The command's one nftables handle; NftablesUnavailable when it cannot be had."""
    return NftKernel(open_nftables())


def without_dynamic_elements(listing: str) -> str:
    """`listing` without the `elements = { ... }` of sets flagged dynamic (meter state) and
    of the ban sets (runtime bans): neither is part of a rendering, so neither is drift."""
    kept: list[str] = []
    in_dynamic_set = False
    skipping = False
    for line in listing.splitlines(keepends=True):
        stripped = line.strip()
        if skipping:
            skipping = not stripped.endswith("}")
            continue
        if stripped.startswith(("set ", "map ")) and stripped.endswith("{"):
            in_dynamic_set = stripped.split()[1] in PERSISTENT_SETS
        elif stripped.startswith("flags ") and "dynamic" in stripped.split(None, 1)[1]:
            in_dynamic_set = True
        elif in_dynamic_set and stripped.startswith("elements = {"):
            skipping = not stripped.endswith("}")
            continue
        kept.append(line)
    return "".join(kept)
