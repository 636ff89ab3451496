"""Big batches go to libnftables through a temporary file: loaded alike, refusals located."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from portguard.backends.nftables import LARGE_BATCH_CHARS
from tests.netns import Netns

pytestmark = pytest.mark.netns

# Runs NftKernel.run on argv[1]'s text inside the namespace; prints what happened as JSON.
RUN_BATCH = """
import json, sys
from portguard.backends.nftables import KernelRefused, NftKernel, open_nftables
kernel = NftKernel(open_nftables())
try:
    kernel.run(open(sys.argv[1]).read())
    print(json.dumps({"ok": True}))
except KernelRefused as refusal:
    print(json.dumps({"ok": False, "line": refusal.line_number, "text": refusal.line_text}))
"""


def _batch(count: int, bad_port: bool) -> str:
    """A table with a `count`-element address set and one rule (port 99999 when `bad_port`)."""
    elements = ",\n".join(f"\t\t\t10.{n >> 8 & 255}.{n & 255}.0/24" for n in range(count))
    port = 99999 if bad_port else 22
    return (
        "table inet bigbatch {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
        f"\t\telements = {{\n{elements}\n\t\t}}\n\t}}\n"
        f"\tchain c {{\n\t\tip saddr @s tcp dport {port} accept\n\t}}\n}}\n"
    )


@pytest.mark.parametrize("count", [10, 60_000], ids=["buffer", "file"])
def test_batches_load_and_refusals_name_the_line(netns: Netns, tmp_path: Path, count: int) -> None:
    """Small and big batches load alike; a refused one names the offending rendered line."""
    good, bad = _batch(count, bad_port=False), _batch(count, bad_port=True)
    assert (len(good) >= LARGE_BATCH_CHARS) == (count > 1000)
    for text, expect_ok in ((good, True), (bad, False)):
        path = tmp_path / "batch.nft"
        path.write_text(text, encoding="utf-8")
        result = json.loads(
            netns.run([sys.executable, "-c", RUN_BATCH, str(path)], timeout=300).stdout
        )
        assert result["ok"] is expect_ok
        if not expect_ok:
            lines = text.splitlines()
            assert result["line"] == lines.index("\t\tip saddr @s tcp dport 99999 accept") + 1
    listed = netns.run(["nft", "list", "set", "inet", "bigbatch", "s"], timeout=300).stdout
    assert listed.count("/24") == count
