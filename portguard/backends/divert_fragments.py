"""What the Linux divert enforcer needs besides its filters: a fragment drop, and known flows.

pydivert's Linux backend (TC hooks) never hands an IPv4 fragment or an IPv6 fragment (an
atomic one included) to a filter, and the kernel reassembles after TC: a SYN or a datagram
sent in fragments would reach the listener unjudged. The enforcer therefore drops inbound
fragments before reassembly with a table of its own, `inet portguard_enforce`, in the network
namespace it runs in, and deletes that table when it stops. It touches no other table. On
Windows WinDivert reassembles inbound fragments itself and nothing is installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from ipaddress import IPv6Address, ip_address

from portguard.backends.nftables import NftablesUnavailable, open_nftables, run_batch
from portguard.errors import PortguardError

__all__ = ["FRAGMENT_TABLE", "connected_udp_flows", "fragment_table_text", "fragments_dropped"]

FRAGMENT_TABLE = "portguard_enforce"


def fragment_table_text() -> str:
    """The table: drop inbound IPv4 fragments and IPv6 fragment headers before reassembly."""
    return (
        f"table inet {FRAGMENT_TABLE} {{\n"
        "  chain fragments {\n"
        "    type filter hook prerouting priority -450; policy accept;\n"
        '    iifname "lo" accept\n'
        "    ip frag-off & 0x3fff != 0 counter drop\n"
        "    exthdr frag exists counter drop\n"
        "  }\n"
        "}\n"
    )


@contextmanager
def fragments_dropped() -> Iterator[None]:
    """Inbound fragments are dropped in this namespace while the block runs (Linux)."""
    try:
        handle = open_nftables()
        run_batch(handle, f"table inet {FRAGMENT_TABLE}\ndelete table inet {FRAGMENT_TABLE}\n")
        run_batch(handle, fragment_table_text())
    except (NftablesUnavailable, PortguardError) as why:
        raise PortguardError(
            f"enforce cannot drop IP fragments here ({why}); without that a fragmented"
            " SYN would pass unjudged, so it does not start"
        ) from None
    try:
        yield
    finally:
        run_batch(handle, f"delete table inet {FRAGMENT_TABLE}\n")


def connected_udp_flows() -> Iterable[tuple[int, str, int]]:
    """(local port, remote address, remote port) of every connected UDP socket right now."""
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

        rows = psutil.net_connections(kind="udp")
    except (ImportError, OSError, RuntimeError):
        return ()
    flows = []
    for row in rows:
        if row.raddr:
            remote = ip_address(str(row.raddr.ip).split("%", 1)[0])
            if isinstance(remote, IPv6Address) and remote.ipv4_mapped is not None:
                remote = remote.ipv4_mapped
            flows.append((int(row.laddr.port), str(remote), int(row.raddr.port)))
    return flows
