"""Backends: the only modules (with facts/) that touch the host's firewall."""
