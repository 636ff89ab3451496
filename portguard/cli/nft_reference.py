"""The child of facts/reference.py: load stdin's table text here and print nft's listing of it.

Run only inside a private network namespace (`unshare --net`), never in the host's.
"""

from __future__ import annotations

import sys

from portguard.backends.nftables import NftKernel, open_nftables
from portguard.errors import PortguardError

__all__ = ["main"]


def main() -> int:
    """Load stdin's table text into this namespace; print its stateless listing (exit 0)."""
    try:
        kernel = NftKernel(open_nftables())
        kernel.run(sys.stdin.read())
        listing = kernel.listing()
    except PortguardError as error:
        sys.stderr.write(f"portguard: {error}\n")
        return 1
    if listing is None:
        return 1
    sys.stdout.write(listing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
