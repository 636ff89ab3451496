"""The enforcer drops in the kernel, closes the fragment bypass, and keeps UDP state (issue 12).

Real packets through pydivert's Linux backend in throwaway namespaces, as in
test_divert_enforcer.py; plus the filters' split checked offline against verdict.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portguard.backends.divert import UDP_FLOW_TIMEOUT, UDP_STREAM_TIMEOUT, EnforcerState
from portguard.backends.divert_fragments import FRAGMENT_TABLE
from portguard.policy import load_policy
from portguard.render.windivert import enforcer_filters
from portguard.verdict import Packet, PacketProto, Verdict, verdict
from tests.netns import HOST_V4, HOST_V6, SCANNER_V4, SCANNER_V6, Lab
from tests.probe import FILTERED, OPEN, Probe, listeners, scan
from tests.test_divert_enforcer import OTHER_V4, _mac, _prepare, enforcer
from tests.test_render_windows import ENTRY

pydivert = pytest.importorskip("pydivert")

HERE = Path(__file__).resolve().parent
CLOSED = "version: 1\nallow:\n  - port: 22\n"
KINDS = (("tcp4-frag8", HOST_V4, SCANNER_V4), ("udp4-frag", HOST_V4, SCANNER_V4),
         ("tcp6-atomic", HOST_V6, SCANNER_V6))  # fmt: skip


def _fragment_probe(net_lab: Lab, kind: str, dst: str, src: str, port: int) -> str:
    argv = [
        sys.executable, str(HERE / "fragment_probe.py"), kind, net_lab.scanner_if,
        _mac(net_lab.scanner, net_lab.scanner_if), _mac(net_lab.host, net_lab.host_if),
        src, dst, str(port), "3",
    ]  # fmt: skip
    return net_lab.scanner.run(argv, timeout=60).stdout.strip()


@pytest.mark.netns
def test_fragmented_probes_are_dropped_while_enforcing(net_lab: Lab, tmp_path: Path) -> None:
    """A SYN in 8-byte fragments, an IPv6 atomic-fragment SYN, a fragmented datagram: no answer."""
    _prepare(net_lab)
    path = tmp_path / "closed.yaml"
    path.write_text(CLOSED)
    with listeners(net_lab.host, tcp=[7100], udp=[7100]):
        ports = {"tcp4-frag8": 7100, "udp4-frag": 7100, "tcp6-atomic": 7100}
        before = {k: _fragment_probe(net_lab, k, d, s, ports[k]) for k, d, s in KINDS}
        with enforcer(net_lab.host, path):
            tables = net_lab.host.run(["nft", "list", "tables"]).stdout
            during = {k: _fragment_probe(net_lab, k, d, s, ports[k]) for k, d, s in KINDS}
        after_tables = net_lab.host.run(["nft", "list", "tables"]).stdout
    assert before == dict.fromkeys(ports, "answered")  # the probes reach a listener unfiltered
    assert during == dict.fromkeys(ports, "silent")
    assert f"table inet {FRAGMENT_TABLE}" in tables
    assert FRAGMENT_TABLE not in after_tables  # removed at exit, in this namespace only


STREAM = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
data, peer = s.recvfrom(100)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    s.sendto(b"tick", peer)
    time.sleep(0.05)
"""
COUNT = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"hello")
s.settimeout(5)
s.recv(100)
print("first", flush=True)
sys.stdin.readline()  # the enforcer is ready now
s.setblocking(False)
while True:  # forget what queued up while the enforcer started
    try:
        s.recv(100)
    except BlockingIOError:
        break
s.setblocking(True)
got, end = 0, time.monotonic() + 3
s.settimeout(0.3)
while time.monotonic() < end:
    try:
        s.recv(100)
        got += 1
    except OSError:
        pass
print(got, flush=True)
"""


@pytest.mark.netns
def test_udp_flow_opened_before_the_enforcer_keeps_its_replies(
    net_lab: Lab, tmp_path: Path
) -> None:
    """A connected UDP socket's flow from before the start is established: its replies pass."""
    _prepare(net_lab)
    path = tmp_path / "closed.yaml"
    path.write_text(CLOSED)
    streamer = net_lab.scanner.popen([sys.executable, "-c", STREAM, "7200", "30"])
    assert streamer.stdout is not None
    assert streamer.stdout.readline().strip() == "ready"
    counter = subprocess.Popen(
        ["ip", "netns", "exec", net_lab.host.name, sys.executable, "-c", COUNT, SCANNER_V4, "7200"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert counter.stdout is not None and counter.stdin is not None
        assert counter.stdout.readline().strip() == "first"
        with enforcer(net_lab.host, path):
            counter.stdin.write("go\n")
            counter.stdin.flush()
            received = int(counter.stdout.readline())
    finally:
        for proc in (streamer, counter):
            proc.kill()
            proc.wait(timeout=10)
    assert received >= 20  # ~60 ticks in 3 s; without the flow known they are all dropped


def test_udp_state_is_conntracks(tmp_path: Path) -> None:
    """Unanswered flows last 30 s; answered ones 120 s, renewed by every packet either way."""
    state = EnforcerState()
    flow = (40000, "192.0.2.9", 53)
    state.note_outbound_udp(flow, 0.0)
    assert state.is_reply(flow, UDP_FLOW_TIMEOUT - 1)
    assert state.is_reply(flow, UDP_FLOW_TIMEOUT + UDP_STREAM_TIMEOUT - 2)
    lone = (40001, "192.0.2.9", 53)
    state.note_outbound_udp(lone, 0.0)
    assert not state.is_reply(lone, UDP_FLOW_TIMEOUT + 1)
    state.note_outbound_udp(flow, 200.0)  # an answered flow keeps the long timeout
    assert state.is_reply(flow, 200.0 + UDP_STREAM_TIMEOUT - 1)


SPLIT_POLICY = f"""\
version: 1
allow:
  - port: [80, 443]
  - port: 22
    from: [{SCANNER_V4}, "{SCANNER_V6}"]
  - port: 5432
    from: [10.0.0.0/8]
  - port: 8300
    limit: 5/minute
  - port: 9000
    proto: udp
    from: [{SCANNER_V4}]
"""


def _selected(text: str, proto: str, port: int, source: str) -> bool:
    builder = pydivert.PacketBuilder()
    peer = "2001:db8:7::1" if ":" in source else HOST_V4
    builder = builder.ipv6(source, peer) if ":" in source else builder.ipv4(source, peer)
    raw = getattr(builder, proto)(40000, port).build()
    raw.direction = pydivert.Direction.INBOUND
    if proto == "tcp":
        raw.tcp.syn = True
    return bool(raw.matches(text))


def test_filters_split_what_the_kernel_drops_from_what_python_judges(tmp_path: Path) -> None:
    """The kernel drops only what verdict refuses; allowed SYNs match no filter; rest: Python."""
    path = tmp_path / "split.yaml"
    path.write_text(SPLIT_POLICY)
    policy = load_policy(path).policy
    filters = enforcer_filters(policy)
    for text in (*filters.drop, filters.judge, filters.sniff):
        assert pydivert.Divert.check_filter(text) == (True, 0, "")
    sources = (SCANNER_V4, "192.0.2.3", "10.1.2.3", SCANNER_V6, "2001:db8:7::3")
    for port in (21, 22, 23, 80, 443, 5432, 8300, 9000, 65535):
        for source in sources:
            packet = Packet(PacketProto.TCP, ip_address(source), "eth0", dport=port)
            accepted = verdict(policy, packet) is Verdict.ACCEPT
            dropped = any(_selected(t, "tcp", port, source) for t in filters.drop)
            judged = _selected(filters.judge, "tcp", port, source)
            assert not (dropped and judged), (port, source)
            if port in (5432, 8300):
                assert judged  # a network in `from`, or a limit: Python decides
            elif accepted:
                assert not dropped and not judged, (port, source)
            else:
                assert dropped or judged, (port, source)
            udp_judged = _selected(filters.judge, "udp", port, source)
            allowed_udp = port == 9000 and source == SCANNER_V4  # whatever its state
            assert udp_judged is not allowed_udp, (port, source)
    assert len(filters.drop) == 2  # refused ports, and the single-host `from` of port 22
    reply = pydivert.PacketBuilder().ipv4(HOST_V4, SCANNER_V4).udp(9000, 40000).build()
    reply.direction = pydivert.Direction.OUTBOUND
    assert not reply.matches(filters.sniff)  # its replies are allowed anyway: no copy
    request = pydivert.PacketBuilder().ipv4(HOST_V4, "192.0.2.3").udp(40000, 53).build()
    request.direction = pydivert.Direction.OUTBOUND
    assert request.matches(filters.sniff)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(ENTRY, max_size=5))
def test_random_policies_filters_never_drop_what_verdict_accepts(
    entries: list[dict[str, object]],
) -> None:
    """Random policies (aliases, empty sets): kernel drops only refusals; unselected = accepted."""
    document = {"version": 1, "sets": {"none": []}, "allow": entries}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        path.write_text(json.dumps(document))
        policy = load_policy(path).policy
    filters = enforcer_filters(policy)
    ports = {1, 65535, 68, 546}
    for rule in policy.allow:
        for r in rule.ports:
            ports |= {max(1, r.first - 1), r.first, r.last, min(65535, r.last + 1)}
    for proto, kind in ((PacketProto.TCP, "tcp"), (PacketProto.UDP, "udp")):
        for port in sorted(ports):
            for source in ("192.0.2.7", "192.0.2.99", "10.9.9.9", "2001:db8:100::1"):
                packet = Packet(proto, ip_address(source), "eth0", dport=port)
                accepted = verdict(policy, packet) is Verdict.ACCEPT
                dropped = kind == "tcp" and any(_selected(t, kind, port, source) for t in
                                                filters.drop)  # fmt: skip
                judged = _selected(filters.judge, kind, port, source)
                assert not (dropped and accepted), (kind, port, source, document)
                assert judged or dropped or accepted, (kind, port, source, document)


@pytest.mark.netns
def test_allowed_and_refused_connections_never_reach_python(net_lab: Lab, tmp_path: Path) -> None:
    """A `from` port without limit: the allowed source connects, others are dropped, 0 judged."""
    _prepare(net_lab)
    path = tmp_path / "from.yaml"
    path.write_text(f"version: 1\nallow:\n  - port: 9000\n    from: [{SCANNER_V4}]\n")
    probes = [Probe("tcp", HOST_V4, 9000, SCANNER_V4), Probe("tcp", HOST_V4, 9000, OTHER_V4),
              Probe("tcp", HOST_V4, 7000, SCANNER_V4)]  # fmt: skip
    with listeners(net_lab.host, tcp=[9000, 7000]), enforcer(net_lab.host, path) as proc:
        outcomes = [r.outcome for _ in range(3) for r in scan(net_lab.scanner, probes, 3.0)]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert proc.stderr is not None
        summary = proc.stderr.read()
    assert outcomes == [OPEN, FILTERED, FILTERED] * 3
    assert "stopped; 0 accepted, 0 dropped" in summary  # all decided in the kernel
