"""Renderers: a Policy to the text a backend applies (nftables, netsh, PowerShell, WinDivert)."""
