"""Netlink dumps (facts/nft_netlink.py) against nft's own listing, in a real namespace."""

from __future__ import annotations

import json
import sys

import pytest

from tests.netns import Netns

pytestmark = pytest.mark.netns

TABLES = {("ip", "nat"), ("ip6", "filter"), ("inet", "portguard"), ("bridge", "b"), ("arp", "a")}
PRINT_TABLES = (
    "import json; from portguard.facts.nft_netlink import table_names;"
    " print(json.dumps(table_names()))"
)


def test_table_names_are_nfts_tables(netns: Netns) -> None:
    """Every table of every family, as `nft list tables` names them."""
    for family, name in TABLES:
        netns.run(["nft", "add", "table", family, name])
    lines = netns.run(["nft", "list", "tables"]).stdout.splitlines()
    listed = {(line.split()[1], line.split()[2]) for line in lines}
    dumped = json.loads(netns.run([sys.executable, "-c", PRINT_TABLES]).stdout)
    assert {(family, name) for family, name in dumped} == listed == TABLES
