"""Read a policy or set file only if it is a regular file, and never more than a limit.

A FIFO would block forever, /dev/zero would never end, a directory or socket is no file at
all: each is refused before a single byte is read. The size limit is enforced while reading
(at most `limit + 1` bytes are ever read), so a file that grows meanwhile cannot exhaust memory.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from portguard.errors import PortguardError

__all__ = [
    "MAX_POLICY_BYTES",
    "MAX_SET_FILE_BYTES",
    "FileReadError",
    "read_policy_bytes",
    "read_regular_file",
]

MAX_POLICY_BYTES = 4 * 1024 * 1024  # a 10,000-entry policy is about 200 KiB
MAX_SET_FILE_BYTES = 64 * 1024 * 1024  # about 4 million addresses, one a line
_CHUNK = 1024 * 1024
_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileReadError(PortguardError):
    """A file could not be read, or was refused; `reason` is one line without the path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """The bytes of `path` if it is a regular file (symlinks followed) of at most `limit` bytes."""
    name = str(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise FileReadError(name, _open_reason(path, exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise FileReadError(name, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(mode):
            raise FileReadError(name, f"not a regular file ({_kind(mode)})")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise FileReadError(name, f"larger than the limit of {_size(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        raise FileReadError(name, exc.strerror or str(exc)) from None
    finally:
        os.close(fd)


def _open_reason(path: str | Path, exc: OSError) -> str:
    """Why open() failed; a socket (ENXIO) or similar is named as such."""
    if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):
        try:
            return f"not a regular file ({_kind(os.stat(path).st_mode)})"
        except OSError:
            pass
    return exc.strerror or str(exc)


def _kind(mode: int) -> str:
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a file"


def _size(limit: int) -> str:
    """A byte count as "4 MiB (4194304 bytes)" when it is whole mebibytes."""
    mib = 1024 * 1024
    return f"{limit // mib} MiB ({limit} bytes)" if limit % mib == 0 else f"{limit} bytes"


def read_policy_bytes(path: str | Path) -> bytes:
    """The bytes of a policy file: a regular file of at most MAX_POLICY_BYTES (the one read)."""
    try:
        return read_regular_file(path, MAX_POLICY_BYTES)
    except FileReadError as exc:
        raise PortguardError(f"{path}: cannot read policy: {exc.reason}") from None
