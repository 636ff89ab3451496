"""What nft lists for a rendering, learned from nft itself in a private network namespace.

An apply proven by the ruleset generation (facts/proven.py) records no listing. When a
listing is needed later, to compare the live table with, the recorded rendering is loaded
into a new, empty network namespace of a child process (`unshare --net`) and listed there:
the same libnftables prints it the way it prints the live table. The host's rules are never
touched; the namespace dies with the child.
The child is `python -m portguard.cli.nft_reference`: table text on stdin, listing on stdout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from portguard.facts.ruleset import parse_live_table
from portguard.render.nft_table import NftTable

__all__ = ["can_reproduce", "reference_listing"]

CAP_SYS_ADMIN = 21
UNSHARE = "unshare"


def can_reproduce() -> bool:
    """Whether a private network namespace can be made here (CAP_SYS_ADMIN and `unshare`)."""
    if shutil.which(UNSHARE) is None:
        return False
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        return False
    return False


def reference_listing(table: NftTable, suffix: str) -> str | None:
    """The stateless listing nft gives for `table` under `suffix`, loaded alone (None: cannot)."""
    if not can_reproduce():
        return None
    command = [UNSHARE, "--net", "--", sys.executable, "-m", "portguard.cli.nft_reference"]
    try:
        child = subprocess.run(
            command, input=table.text(suffix), capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    if child.returncode != 0 or not child.stdout:
        return None
    return parse_live_table(child.stdout).listing
