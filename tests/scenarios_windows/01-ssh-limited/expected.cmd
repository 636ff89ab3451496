@echo off
rem Rendered by portguard 0.1.0 from 01-ssh-limited/policy.yaml.
rem Every rule is named "portguard-8a04d112.a-...". Block rules win over allow rules
rem (the last line puts them in the portguard group, which netsh cannot name, so that
rem `portguard status` and `portguard remove` see them).
rem in Windows Firewall, so the block rules cover every port the policy does not allow.
rem NOTE: forwarded: filter does not apply to Windows Firewall: ports NATed to a VM or container (WinNAT static mappings: Hyper-V, WSL, Docker) are not filtered by these inbound rules; a netsh interface portproxy port is a local listener and obeys them like any port
rem NOTE: icmp: essential is allow-only (no block over the other types): an allow rule another program adds for ICMP is not overridden
rem NOTE: entry 1 (line 6): limit 10/minute cannot be expressed in Windows Firewall; the entry is allowed without a limit (portguard enforce applies it)
netsh advfirewall firewall add rule name="portguard-8a04d112.a-block-tcp-1" dir=in action=block profile=any enable=yes edge=no protocol=TCP localport=1-21,23-65535 remoteip=any description="ports no entry allows" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-tcp-1" dir=in action=allow profile=any enable=yes edge=no protocol=TCP localport=22 remoteip=any description="ports open to any source" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-block-udp-1" dir=in action=block profile=any enable=yes edge=no protocol=UDP localport=1-67,69-545,547-65535 remoteip=any description="ports no entry allows" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv4-3" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv4:3,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv4-8" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv4:8,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv4-11" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv4:11,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv4-12" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv4:12,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-1" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:1,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-2" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:2,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-3" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:3,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-4" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:4,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-128" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:128,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-130" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:130,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-131" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:131,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-132" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:132,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-134" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:134,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-135" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:135,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-136" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:136,any remoteip=any description="icmp: essential" || exit /b 1
netsh advfirewall firewall add rule name="portguard-8a04d112.a-allow-icmpv6-143" dir=in action=allow profile=any enable=yes edge=no protocol=icmpv6:143,any remoteip=any description="icmp: essential" || exit /b 1
powershell -NoProfile -NonInteractive -Command "Get-NetFirewallRule -DisplayName 'portguard-8a04d112.a-*' | ForEach-Object { $_.Group = 'portguard'; Set-NetFirewallRule -InputObject $_ }" || exit /b 1
