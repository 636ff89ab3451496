"""Built-in service profiles: one name, several ports and protocols (as firewalld's services).

`service: samba` means tcp 139, 445 and udp 137, 138; names without a profile fall back to
/etc/services. Definitions follow firewalld's service files of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from portguard.model import PortRange, Proto

__all__ = ["PROFILES", "ServiceProfile"]


@dataclass(frozen=True)
class ServiceProfile:
    """A named service: its TCP and UDP ports and what it is."""

    name: str
    description: str
    tcp: tuple[PortRange, ...]
    udp: tuple[PortRange, ...]

    def ports(self, proto: Proto) -> tuple[PortRange, ...]:
        """The profile's ports for `proto` (empty when it has none)."""
        return self.tcp if proto is Proto.TCP else self.udp

    @property
    def protos(self) -> tuple[Proto, ...]:
        """The protocols the profile uses, tcp before udp."""
        return tuple(p for p in Proto if self.ports(p))


def _ranges(text: str) -> tuple[PortRange, ...]:
    """ "139,445" or "5900-5903" as port ranges."""
    found = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        found.append(PortRange(int(first), int(last or first)))
    return tuple(found)


# name: (description, tcp ports, udp ports)
_TABLE: dict[str, tuple[str, str, str]] = {
    "ssh": ("Secure Shell", "22", ""),
    "http": ("Web server (HTTP)", "80", ""),
    "https": ("Web server over TLS (HTTPS)", "443", ""),
    "http3": ("HTTP/3 over QUIC", "", "443"),
    "dns": ("Domain name server", "53", "53"),
    "dns-over-tls": ("DNS over TLS", "853", ""),
    "dhcp": ("DHCP server", "", "67"),
    "dhcpv6": ("DHCPv6 server", "", "547"),
    "ntp": ("Network time", "", "123"),
    "smtp": ("Mail transfer (SMTP)", "25", ""),
    "smtps": ("Mail submission over TLS", "465", ""),
    "smtp-submission": ("Mail submission (STARTTLS)", "587", ""),
    "imap": ("Mailbox access (IMAP)", "143", ""),
    "imaps": ("Mailbox access over TLS (IMAPS)", "993", ""),
    "pop3": ("Mailbox download (POP3)", "110", ""),
    "pop3s": ("Mailbox download over TLS (POP3S)", "995", ""),
    "ftp": ("File transfer (control; passive ports need their own entry)", "21", ""),
    "tftp": ("Trivial file transfer", "", "69"),
    "samba": ("Windows file and printer sharing (SMB)", "139,445", "137-138"),
    "samba-client": ("SMB client browsing", "", "137-138"),
    "nfs": ("NFSv4 file server", "2049", ""),
    "nfs3": ("NFSv3 file server", "2049", "2049"),
    "rpc-bind": ("RPC port mapper", "111", "111"),
    "rsyncd": ("rsync daemon", "873", "873"),
    "ldap": ("Directory (LDAP)", "389", ""),
    "ldaps": ("Directory over TLS (LDAPS)", "636", ""),
    "kerberos": ("Kerberos KDC", "88", "88"),
    "kpasswd": ("Kerberos password change", "464", "464"),
    "mysql": ("MySQL / MariaDB", "3306", ""),
    "postgresql": ("PostgreSQL", "5432", ""),
    "redis": ("Redis", "6379", ""),
    "mongodb": ("MongoDB", "27017", ""),
    "memcache": ("memcached", "11211", ""),
    "elasticsearch": ("Elasticsearch (HTTP and transport)", "9200,9300", ""),
    "mssql": ("Microsoft SQL Server", "1433", ""),
    "rdp": ("Remote desktop (RDP)", "3389", "3389"),
    "vnc-server": ("VNC displays :0 to :3", "5900-5903", ""),
    "openvpn": ("OpenVPN", "", "1194"),
    "wireguard": ("WireGuard", "", "51820"),
    "ipsec": ("IPsec IKE and NAT traversal (ESP/AH need protocol rules)", "", "500,4500"),
    "snmp": ("SNMP agent", "161", "161"),
    "syslog": ("Syslog (UDP)", "", "514"),
    "syslog-tls": ("Syslog over TLS", "6514", ""),
    "mdns": ("Multicast DNS (Avahi, Bonjour)", "", "5353"),
    "sip": ("SIP signalling", "5060", "5060"),
    "xmpp-client": ("XMPP (Jabber) clients", "5222", ""),
    "prometheus": ("Prometheus server", "9090", ""),
    "prometheus-node-exporter": ("Prometheus node exporter", "9100", ""),
    "grafana": ("Grafana", "3000", ""),
    "kube-apiserver": ("Kubernetes API server", "6443", ""),
    "docker-registry": ("Docker registry", "5000", ""),
    "git": ("git daemon", "9418", ""),
    "squid": ("Squid web proxy", "3128", ""),
    "zabbix-agent": ("Zabbix agent", "10050", ""),
    "zabbix-server": ("Zabbix server", "10051", ""),
    "minecraft": ("Minecraft server", "25565", ""),
}

PROFILES: Mapping[str, ServiceProfile] = MappingProxyType(
    {
        name: ServiceProfile(name, description, _ranges(tcp), _ranges(udp))
        for name, (description, tcp, udp) in _TABLE.items()
    }
)
