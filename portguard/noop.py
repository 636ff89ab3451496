"""The no-op re-apply fast path: prove "unchanged" without loading, rendering or listing.

After an apply that leaves the table in sync, `noop.json` records a fingerprint of the
inputs (portguard's version and code, the policy bytes, every set file's bytes as parsed,
the services file) and the ruleset generation (facts/generation.py) read just before the
listing that matched the applied record. A later apply of the same path proves itself a
no-op when all of these hold, else it takes the full path (load, render, list, compare):

- the inputs' fingerprint is the recorded one (the same rendering would come out);
- the generation is the recorded one: no transaction has committed in this namespace since
  that listing, so the live table is still exactly the recorded one (an element or rule
  changed behind portguard's back makes a new generation, so drift is never missed);
- applied.json is the very file written then (inode, size, mtime) and no pending.json:
  the records the full path would compare against are the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from portguard import __version__
from portguard.errors import PortguardError
from portguard.facts.generation import RulesetGeneration, generation_from_json, read_generation
from portguard.policy.bounded_read import (
    MAX_SET_FILE_BYTES,
    FileReadError,
    read_policy_bytes,
    read_regular_file,
)
from portguard.services import DEFAULT_SERVICES_FILE
from portguard.state import APPLIED_FILE, PENDING_FILE, StateDir, StateError

__all__ = [
    "NOOP_FILE",
    "NoopProof",
    "applied_stat",
    "carry_noop_proof",
    "code_fingerprint",
    "forget_proof",
    "inputs_fingerprint",
    "proven_unchanged",
    "record_proof",
    "services_digest",
]

NOOP_FILE = "noop.json"
PACKAGE = Path(__file__).resolve().parent
MAX_SERVICES_BYTES = 4 << 20


@dataclass(frozen=True)
class NoopProof:
    """What `noop.json` holds: the inputs, the generation and the records it was made for."""

    policy_path: str
    inputs: str  # inputs_fingerprint of the applied policy
    set_files: tuple[tuple[str, str], ...]  # (path, sha256 hex) as the loader parsed them
    generation: RulesetGeneration
    applied_stat: tuple[int, int, int]  # (inode, size, mtime_ns) of applied.json
    warnings: tuple[str, ...]  # the lint warnings to print again
    omitted_warnings: int


def code_fingerprint() -> str:
    """portguard's version and the (name, size, mtime) of its modules: a new build re-renders."""
    digest = hashlib.sha256(__version__.encode())
    for folder in (PACKAGE, PACKAGE / "render", PACKAGE / "policy"):
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.endswith(".py"):
                    info = entry.stat()
                    digest.update(
                        f"{folder.name}/{entry.name}:{info.st_size}:{info.st_mtime_ns}\n".encode()
                    )
    return digest.hexdigest()


def services_digest() -> str:
    """sha256 of the services file that `service:` entries are resolved with ("" if unread)."""
    try:
        return hashlib.sha256(
            read_regular_file(DEFAULT_SERVICES_FILE, MAX_SERVICES_BYTES)
        ).hexdigest()
    except FileReadError:
        return ""


def inputs_fingerprint(
    policy_path: str, policy_bytes: bytes, set_files: tuple[tuple[str, str], ...], services: str
) -> str:
    """One digest of everything a rendering depends on."""
    digest = hashlib.sha256()
    for part in (
        code_fingerprint(),
        policy_path,
        hashlib.sha256(policy_bytes).hexdigest(),
        services,
    ):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    for path, file_digest in set_files:
        digest.update(f"{path}\0{file_digest}\0".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def record_proof(state: StateDir, proof: NoopProof) -> None:
    """Write `noop.json` (best effort: without it the next apply takes the full path)."""
    data = {
        "policy_path": proof.policy_path,
        "inputs": proof.inputs,
        "set_files": [list(item) for item in proof.set_files],
        "generation": proof.generation.to_json(),
        "applied_stat": list(proof.applied_stat),
        "warnings": list(proof.warnings),
        "omitted_warnings": proof.omitted_warnings,
    }
    with contextlib.suppress(StateError):
        state.write_json_record(NOOP_FILE, data)


def carry_noop_proof(
    state: StateDir,
    before: RulesetGeneration,
    after: RulesetGeneration,
    old_stat: tuple[int, int, int] | None,
) -> None:
    """Move noop.json to generation `after` and the rewritten applied.json, if it named
    `before` and the applied.json of `old_stat` (proof_carry.py); else leave it."""
    proof = _read_proof(state)
    new_stat = applied_stat(state)
    if proof is None or proof.generation != before or proof.applied_stat != old_stat:
        return
    if new_stat is not None:
        record_proof(state, replace(proof, generation=after, applied_stat=new_stat))


def forget_proof(state: StateDir) -> None:
    """Remove `noop.json` (best effort)."""
    with contextlib.suppress(StateError):
        state.remove_record(NOOP_FILE)


def applied_stat(state: StateDir) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns) of applied.json, None when it is not there."""
    try:
        info = (state.path / APPLIED_FILE).stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def proven_unchanged(policy_path: str, state: StateDir) -> NoopProof | None:
    """The recorded proof when applying `policy_path` now is certainly a no-op, else None."""
    proof = _read_proof(state)
    if proof is None or proof.policy_path != policy_path:
        return None
    if (state.path / PENDING_FILE).exists() or applied_stat(state) != proof.applied_stat:
        return None
    try:
        policy_bytes = read_policy_bytes(policy_path)
    except PortguardError:
        return None
    for path, recorded in proof.set_files:
        try:
            data = read_regular_file(path, MAX_SET_FILE_BYTES)
        except FileReadError:
            return None
        if hashlib.sha256(data).hexdigest() != recorded:
            return None
    inputs = inputs_fingerprint(policy_path, policy_bytes, proof.set_files, services_digest())
    if inputs != proof.inputs or read_generation() != proof.generation:
        return None
    return proof


def _read_proof(state: StateDir) -> NoopProof | None:
    """`noop.json` as a NoopProof; None when absent or not of that shape."""
    try:
        data = state.read_json_record(NOOP_FILE)
    except StateError:
        return None
    if data is None:
        return None
    try:
        generation = generation_from_json(data["generation"])
        if generation is None:
            return None
        return NoopProof(
            policy_path=str(data["policy_path"]),
            inputs=str(data["inputs"]),
            set_files=tuple((str(p), str(d)) for p, d in _pairs(data["set_files"])),
            generation=generation,
            applied_stat=_stat(data["applied_stat"]),
            warnings=tuple(str(w) for w in _items(data["warnings"])),
            omitted_warnings=int(str(data["omitted_warnings"])),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _items(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return value


def _pairs(value: object) -> list[tuple[object, object]]:
    pairs = []
    for item in _items(value):
        first, second = _items(item)
        pairs.append((first, second))
    return pairs


def _stat(value: object) -> tuple[int, int, int]:
    inode, size, mtime = (int(str(v)) for v in _items(value))
    return (inode, size, mtime)
