#!/usr/bin/env bash
# Set up a fresh Debian machine for portguard development: Debian packages, then the venv.
# python-nftables is Debian's python3-nftables (not on PyPI), so the venv is made from
# /usr/bin/python3 with --system-site-packages.
set -euo pipefail
cd "$(dirname "$0")/.."
# openssh-server: the Ansible test runs its own sshd in throwaway namespaces only.
packages=(nftables python3-nftables python3-venv iproute2 systemd iptables openssh-server)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
        exit 1
    fi
    apt-get update -qq
    # No package may start a service in this machine's own namespace (sshd on port 22 here
    # would be a real service on the machine): a policy-rc.d that refuses, for this install.
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# portguard bootstrap: start no services while installing\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || status=$?
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
    [ "$status" -eq 0 ] || exit "$status"
fi
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
touch .venv/.installed
