"""Facts about this host: listening sockets and published ports, each read by its own module."""

from __future__ import annotations

import sys

from portguard.facts.published import PublishedPort, PublishedPorts
from portguard.model import ListeningSocket

__all__ = ["PublishedPort", "PublishedPorts", "listening_sockets", "published_ports"]


def listening_sockets() -> tuple[ListeningSocket, ...]:
    """Every TCP listener and bound UDP socket here, with its owner where visible."""
    if sys.platform == "win32":
        from portguard.facts import windows  # noqa: PLC0415 - psutil path, Windows only

        return windows.listening_sockets()
    from portguard.facts.sockets import linux_listening_sockets  # noqa: PLC0415

    return linux_listening_sockets()


def published_ports() -> PublishedPorts:
    """Ports this host DNATs elsewhere (none on Windows); NftablesUnavailable without root."""
    if sys.platform == "win32":
        return PublishedPorts()
    from portguard.facts.published import read_published  # noqa: PLC0415

    return read_published()
