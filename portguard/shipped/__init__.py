"""Files shipped with portguard: systemd units, policies, the man page (package data).

In a wheel they sit in this package (setup.py maps the checkout's systemd/, policies/ and
man/ here); in a checkout or an editable install they are read from the checkout itself.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["shipped_path"]

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent
KINDS = ("systemd", "policies", "man")


def shipped_path(kind: str) -> Path:
    """The directory holding the shipped files of `kind` (systemd, policies or man)."""
    if kind not in KINDS:
        raise ValueError(f"unknown shipped kind {kind!r}")
    packaged = HERE / kind
    return packaged if packaged.is_dir() else CHECKOUT / kind
