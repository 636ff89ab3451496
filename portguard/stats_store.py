"""The `stats --reset` baseline in the state dir, and atomic file output for metrics."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from portguard.errors import PortguardError
from portguard.state import StateDir
from portguard.stats import StatsBaseline

__all__ = ["BASELINE_FILE", "read_baseline", "write_atomically", "write_baseline"]

BASELINE_FILE = "stats-baseline.json"


def read_baseline(state_dir: Path) -> StatsBaseline | None:
    """The recorded baseline (None when absent or unreadable: counters then read as they are)."""
    try:
        data = json.loads((state_dir / BASELINE_FILE).read_text(encoding="utf-8"))
        return StatsBaseline(
            digest=str(data["digest"]),
            rules=tuple(
                (str(c), tuple(str(n) for n in names), int(p), int(b))
                for c, names, p, b in data["rules"]
            ),
            blocked=tuple((str(proto), int(port), int(n)) for proto, port, n in data["blocked"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_baseline(state_dir: Path, baseline: StatsBaseline) -> None:
    """Record `baseline` (atomically) in the state dir, made 0700 if absent."""
    data = {
        "digest": baseline.digest,
        "rules": [[c, list(names), p, b] for c, names, p, b in baseline.rules],
        "blocked": [list(item) for item in baseline.blocked],
    }
    StateDir(state_dir).write_json_record(BASELINE_FILE, data)


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename,
    so a reader (node_exporter) never sees half a file."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as error:
        raise PortguardError(f"{path}: cannot write: {error.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise PortguardError(f"{path}: cannot write: {error.strerror}") from None
