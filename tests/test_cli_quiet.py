"""No needless questions or repeats: remove with nothing loaded, an unchanged re-apply."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.netns import Netns, portguard_argv

pytestmark = pytest.mark.netns

POLICY_WARNS = "version: 1\nallow:\n  - port: 8080\n  - port: 8080\n"  # a duplicate: lint warns


def _on_a_tty(ns: Netns, argv: list[str], answer: bytes) -> tuple[int, str]:
    """Run argv in the namespace with a terminal as stdin and stdout; type `answer`."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, *argv],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        os.write(controller, answer)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(controller)


def test_remove_with_nothing_loaded_does_not_ask(netns: Netns, tmp_path: Path) -> None:
    """On a terminal, remove asks only when a table is loaded; with none it just says so."""
    state = str(tmp_path / "state")
    code, said = _on_a_tty(netns, portguard_argv("remove", "--state-dir", state), b"n\n")
    assert code == 0, said
    assert "Delete portguard's rules" not in said
    assert "table inet portguard was not loaded; nothing to do" in said
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nallow:\n  - port: 22\n", encoding="utf-8")
    netns.run(portguard_argv("apply", str(policy), "--yes", "--state-dir", state))
    code, said = _on_a_tty(netns, portguard_argv("remove", "--state-dir", state), b"n\n")
    assert code == 1
    assert "Delete portguard's rules" in said
    assert "table inet portguard" in netns.ruleset()  # answered no: still there


def test_unchanged_reapply_summarises_warnings(netns: Netns, tmp_path: Path) -> None:
    """The first apply prints each lint warning; an unchanged re-apply prints one count line."""
    state, policy = str(tmp_path / "state"), tmp_path / "p.yaml"
    policy.write_text(POLICY_WARNS, encoding="utf-8")
    argv = portguard_argv("apply", str(policy), "--yes", "--state-dir", state)
    first = netns.run(argv)
    warnings = [line for line in first.stderr.splitlines() if line.startswith(str(policy))]
    assert warnings, first.stderr
    again = netns.run(argv)
    assert again.stdout == f"{policy}: unchanged, nothing to do\n"
    count = len(warnings)
    assert again.stderr.splitlines() == [
        f"portguard: {count} lint warning{'' if count == 1 else 's'} (see `portguard check`)"
    ]


def test_remove_prompt_then_changed_table_removes_nothing(netns: Netns, tmp_path: Path) -> None:
    """A table changed while remove's prompt is open is not removed: exit 1, rules stay."""
    state, policy = str(tmp_path / "state"), tmp_path / "p.yaml"
    policy.write_text("version: 1\nallow:\n  - port: 22\n", encoding="utf-8")
    netns.run(portguard_argv("apply", str(policy), "--yes", "--state-dir", state))
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns.name, *portguard_argv("remove", "--state-dir", state)],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        said = _read_until(controller, b"Delete portguard's rules", deadline=120)
        assert b"Delete portguard's rules" in said
        netns.run(["nft", "add", "rule", "inet", "portguard", "input", "tcp", "dport", "9", "drop"])
        os.write(controller, b"y\n")
        said += _read_until(controller, b"\x00never", deadline=120)
        code = proc.wait(timeout=120)
    finally:
        os.close(controller)
    assert code == 1, said
    assert b"changed since the plan was made" in said
    assert "tcp dport 9 drop" in netns.ruleset()  # nothing removed


def _read_until(fd: int, marker: bytes, deadline: float) -> bytes:
    """Read from a pty until `marker` appears, the child closes it, or `deadline` seconds."""
    chunks = b""
    end = time.monotonic() + deadline
    while marker not in chunks and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks += chunk
    return chunks
