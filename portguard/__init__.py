"""portguard: one YAML allow-list, enforced on the host firewall."""

__version__ = "0.1.0"
