#!/usr/bin/env bash
# A portguard tour that never touches this machine's own network: it makes a throwaway
# "host" and "scanner" namespace pair joined by a veth, starts real listeners in the host,
# probes them from the scanner, applies policies/default.yaml inside the host namespace,
# probes again and prints a before/after table. Everything is removed on exit, also on failure.
# Usage (as root): make demo, or ./scripts/demo.sh [POLICY] to tour another policy.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY="$ROOT/.venv/bin/python"
PORTGUARD="$ROOT/.venv/bin/portguard"
PROBE="$ROOT/tests/probe_agent.py"
POLICY=${1:-policies/default.yaml}  # ./scripts/demo.sh [POLICY]
TCP_LISTEN=22,80,31337
UDP_LISTEN=5353

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: needs root (it creates network namespaces); try: sudo make demo" >&2
    exit 1
fi
for tool in ip nft; do
    command -v "$tool" >/dev/null || { echo "demo: '$tool' is missing; run scripts/bootstrap.sh" >&2; exit 1; }
done
[ -x "$PORTGUARD" ] || { echo "demo: no .venv yet; run scripts/bootstrap.sh (make demo does)" >&2; exit 1; }

SUFFIX="$$-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
HOST_NS="pgdemo-h-$SUFFIX"
SCAN_NS="pgdemo-s-$SUFFIX"
WORK=$(mktemp -d /tmp/portguard-demo.XXXXXX)
LISTENER_PID=""

cleanup() {
    if [ -n "$LISTENER_PID" ]; then
        kill "$LISTENER_PID" 2>/dev/null || true
        wait "$LISTENER_PID" 2>/dev/null || true
    fi
    # Anything else still running inside our namespaces was started by this script.
    for ns in "$HOST_NS" "$SCAN_NS"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    done
    ip netns del "$HOST_NS" 2>/dev/null || true
    ip netns del "$SCAN_NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_host() { ip netns exec "$HOST_NS" "$@"; }
in_scanner() { ip netns exec "$SCAN_NS" "$@"; }
step() { printf '\n==> %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; }

step "Throwaway namespaces: host $HOST_NS (192.0.2.1, 2001:db8:7::1), scanner $SCAN_NS (.2, ::2)"
ip netns add "$HOST_NS"
ip netns add "$SCAN_NS"
ip -n "$HOST_NS" link set lo up
ip -n "$SCAN_NS" link set lo up
ip -n "$HOST_NS" link add pg-host0 type veth peer name pg-scan0
ip -n "$HOST_NS" link set pg-scan0 netns "$SCAN_NS"
ip -n "$HOST_NS" addr add 192.0.2.1/24 dev pg-host0
ip -n "$HOST_NS" addr add 2001:db8:7::1/64 dev pg-host0 nodad
ip -n "$SCAN_NS" addr add 192.0.2.2/24 dev pg-scan0
ip -n "$SCAN_NS" addr add 2001:db8:7::2/64 dev pg-scan0 nodad
ip -n "$HOST_NS" link set pg-host0 up
ip -n "$SCAN_NS" link set pg-scan0 up
# Every closed UDP port should answer its ICMP unreachable, not only the first few a second.
in_host sysctl -q -w net.ipv4.icmp_ratemask=0 net.ipv6.icmp.ratemask=
echo "This machine's own network namespace is not touched."

step "Listeners in the host namespace: tcp $TCP_LISTEN, udp $UDP_LISTEN (dual-stack)"
# `ip netns exec` execs the command, so $! is the listener itself.
ip netns exec "$HOST_NS" "$PY" "$PROBE" serve --tcp "$TCP_LISTEN" --udp "$UDP_LISTEN" \
    >"$WORK/serve.out" 2>&1 &
LISTENER_PID=$!
for _ in $(seq 100); do
    grep -q '^ready$' "$WORK/serve.out" 2>/dev/null && break
    kill -0 "$LISTENER_PID" 2>/dev/null || { cat "$WORK/serve.out" >&2; exit 1; }
    sleep 0.1
done
grep -q '^ready$' "$WORK/serve.out" || { echo "demo: listeners did not start" >&2; exit 1; }
show portguard ports --policy "$POLICY"
in_host "$PORTGUARD" ports --policy "$POLICY"

# Probe each listener plus one idle port (443), over IPv4 and IPv6, from the scanner.
"$PY" - "$WORK/probes.json" <<'EOF'
import json, sys
probes = [
    {"proto": proto, "dst": dst, "port": port, "src": src}
    for proto, ports in (("tcp", (22, 80, 443, 31337)), ("udp", (5353,)))
    for port in ports
    for dst, src in (("192.0.2.1", "192.0.2.2"), ("2001:db8:7::1", "2001:db8:7::2"))
]
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(probes, out)
EOF

step "Probing from the scanner before (open = answered, refused = RST/ICMP unreachable)"
in_scanner "$PY" "$PROBE" scan <"$WORK/probes.json" >"$WORK/before.json"
echo "$("$PY" -c 'import json, sys; print(len(json.load(sys.stdin)))' <"$WORK/before.json") probes answered or timed out; the table below shows which"

step "Checking the policy (the kernel dry run happens in the host namespace)"
show portguard check "$POLICY"
in_host "$PORTGUARD" check "$POLICY"

step "Applying it in the host namespace"
show portguard apply "$POLICY" --yes --state-dir "$WORK/state"
in_host "$PORTGUARD" apply "$POLICY" --yes --state-dir "$WORK/state"

step "Probing from the scanner after (filtered = no answer at all)"
in_scanner "$PY" "$PROBE" scan <"$WORK/probes.json" >"$WORK/after.json"

step "Before and after (the last column is what portguard/verdict.py says the policy means)"
"$PY" "$PROBE" compare "$WORK/probes.json" "$WORK/before.json" "$WORK/after.json" \
    --tcp "$TCP_LISTEN" --udp "$UDP_LISTEN" --policy "$POLICY"
echo "A blocked port is silent whether or not a program listens there."

step "Status"
show portguard status --state-dir "$WORK/state"
in_host "$PORTGUARD" status --state-dir "$WORK/state"

step "Cleaning up: listeners stopped, both namespaces deleted"
