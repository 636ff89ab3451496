"""Facts about this host: listening sockets and published ports, each read by its own module."""

from __future__ import annotations

import sys
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portguard.facts.published import PublishedPort, PublishedPorts
    from portguard.model import ListeningSocket

__all__ = ["PublishedPort", "PublishedPorts", "listening_sockets", "published_ports"]


def __getattr__(name: str) -> Any:
    """PublishedPort(s) from facts.published, on first use: a light submodule (generation,
    which the no-op apply reads) does not load nftables and the renderer with this package."""
    if name in ("PublishedPort", "PublishedPorts"):
        return getattr(import_module("portguard.facts.published"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def listening_sockets() -> tuple[ListeningSocket, ...]:
    """Every TCP listener and bound UDP socket here, with its owner where visible."""
    if sys.platform == "win32":
        from portguard.facts import windows  # noqa: PLC0415 - psutil path, Windows only

        return windows.listening_sockets()
    from portguard.facts.sockets import linux_listening_sockets  # noqa: PLC0415

    return linux_listening_sockets()


def published_ports() -> PublishedPorts:
    """Ports this host DNATs elsewhere (none on Windows); NftablesUnavailable without root."""
    from portguard.facts.published import PublishedPorts, read_published  # noqa: PLC0415

    if sys.platform == "win32":
        return PublishedPorts()
    return read_published()
