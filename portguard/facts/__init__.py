"""Facts about this host: the listening sockets, read by the platform's own module."""

from __future__ import annotations

import sys

from portguard.model import ListeningSocket

__all__ = ["listening_sockets"]


def listening_sockets() -> tuple[ListeningSocket, ...]:
    """Every TCP listener and bound UDP socket here, with its owner where visible."""
    if sys.platform == "win32":
        from portguard.facts import windows  # noqa: PLC0415 - psutil path, Windows only

        return windows.listening_sockets()
    from portguard.facts.sockets import linux_listening_sockets  # noqa: PLC0415

    return linux_listening_sockets()
