# Rendered by portguard 0.1.0 from 01-ssh-limited/policy.yaml.
# Rules are in group 'portguard', named 'portguard-8a04d112.a-...'. Block rules win over
# allow rules in Windows Firewall, so the block rules cover every port not allowed.
# Remove them all: Get-NetFirewallRule -Group 'portguard' | Remove-NetFirewallRule
# NOTE: forwarded: filter does not apply to Windows Firewall: ports NATed to a VM or container (WinNAT static mappings: Hyper-V, WSL, Docker) are not filtered by these inbound rules; a netsh interface portproxy port is a local listener and obeys them like any port
# NOTE: icmp: essential is allow-only (no block over the other types): an allow rule another program adds for ICMP is not overridden
# NOTE: entry 1 (line 6): limit 10/minute cannot be expressed in Windows Firewall; the entry is allowed without a limit (portguard enforce applies it)
$ErrorActionPreference = 'Stop'
New-NetFirewallRule -Name 'portguard-8a04d112.a-block-tcp-1' -DisplayName 'portguard block-tcp-1' -Group 'portguard' -Direction Inbound -Action Block -Protocol TCP -LocalPort @('1-21','23-65535') -Profile Any -Enabled True -Description 'ports no entry allows' -ErrorAction Stop | Out-Null
New-NetFirewallRule -Name 'portguard-8a04d112.a-allow-tcp-1' -DisplayName 'portguard allow-tcp-1' -Group 'portguard' -Direction Inbound -Action Allow -Protocol TCP -LocalPort @('22') -Profile Any -Enabled True -Description 'ports open to any source' -ErrorAction Stop | Out-Null
New-NetFirewallRule -Name 'portguard-8a04d112.a-block-udp-1' -DisplayName 'portguard block-udp-1' -Group 'portguard' -Direction Inbound -Action Block -Protocol UDP -LocalPort @('1-67','69-545','547-65535') -Profile Any -Enabled True -Description 'ports no entry allows' -ErrorAction Stop | Out-Null
New-NetFirewallRule -Name 'portguard-8a04d112.a-allow-icmpv4' -DisplayName 'portguard allow-icmpv4' -Group 'portguard' -Direction Inbound -Action Allow -Protocol ICMPv4 -IcmpType @('3','8','11','12') -Profile Any -Enabled True -Description 'icmp: essential' -ErrorAction Stop | Out-Null
New-NetFirewallRule -Name 'portguard-8a04d112.a-allow-icmpv6' -DisplayName 'portguard allow-icmpv6' -Group 'portguard' -Direction Inbound -Action Allow -Protocol ICMPv6 -IcmpType @('1','2','3','4','128','130','131','132','134','135','136','143') -Profile Any -Enabled True -Description 'icmp: essential' -ErrorAction Stop | Out-Null
