"""The JSON Schema (draft 2020-12) of policy version 1, for editors and CI.

It mirrors policy/load.py (same keys, choices and value shapes); the loader stays the
authority for what only it can know (service names, set references, set files, overlaps).
"""

from __future__ import annotations

from typing import Any

from portguard.model import DefaultVerdict, ForwardedMode, IcmpMode, Proto, RateUnit

__all__ = ["SCHEMA_ID", "policy_schema"]

SCHEMA_ID = "https://portguard.invalid/schema/policy-v1.json"
PORT_TEXT = r"^\s*[1-9][0-9]{0,4}\s*(-\s*[1-9][0-9]{0,4}\s*)?$"
INTERFACE = r"^(?=.{1,15}$)[A-Za-z0-9_][A-Za-z0-9_.@+-]*\*?$"
WINDOWS_ALIAS = r"^(?=.{1,256}$)[A-Za-z0-9_][A-Za-z0-9 _.@+()#-]*(?<! )\*?$"
SET_NAME = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"


def _one_or_many(item: dict[str, Any], description: str) -> dict[str, Any]:
    """A value written either as one item or as a non-empty list of items."""
    return {
        "description": description,
        "oneOf": [item, {"type": "array", "items": item, "minItems": 1}],
    }


def _allow_entry() -> dict[str, Any]:
    port = {
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": 65535},
            {"type": "string", "pattern": PORT_TEXT},
        ]
    }
    units = "|".join(u.value for u in RateUnit)
    properties: dict[str, Any] = {
        "service": {
            "type": "string",
            "description": "A service name: a built-in profile or /etc/services (ssh, https, dns).",
        },
        "port": _one_or_many(port, 'A port (22), a range ("8000-8010"), or a list of them.'),
        "proto": _one_or_many(
            {"enum": [p.value for p in Proto]}, "tcp (default), udp, or [tcp, udp]."
        ),
        "from": _one_or_many(
            {"type": "string", "minLength": 1},
            "Source addresses or networks (IPv4/IPv6, CIDR) or @set names; omit for anyone.",
        ),
        "interface": {
            "type": "string",
            "anyOf": [{"pattern": INTERFACE}, {"pattern": WINDOWS_ALIAS}],
            "description": "Only on this inbound interface (a Linux name, or a Windows alias"
            ' such as "Ethernet 2"); a trailing * matches a prefix.',
        },
        "limit": {
            "type": "string",
            "pattern": rf"^\s*0*[1-9][0-9]*\s*/\s*({units})\s*$",
            "description": f"New connections per source and time unit: N/{units}.",
        },
        "comment": {"type": "string", "maxLength": 256, "description": "Shown in plan and show."},
        "log": {"type": "boolean", "description": "Log this entry's accepted new connections."},
    }
    return {
        "type": "object",
        "description": "One allowed port (or range, or service) with optional restrictions.",
        "properties": properties,
        "additionalProperties": False,
        "oneOf": [{"required": ["port"]}, {"required": ["service"]}],
    }


def policy_schema() -> dict[str, Any]:
    """The JSON Schema of a version 1 policy, as a JSON-ready dict."""
    address_list = {"type": "array", "items": {"type": "string", "minLength": 1}}
    set_file = {
        "type": "object",
        "properties": {"file": {"type": "string", "description": "Relative to the policy."}},
        "required": ["file"],
        "additionalProperties": False,
    }
    properties: dict[str, Any] = {
        "version": {"const": 1, "description": "Policy format version; always 1."},
        "description": {"type": "string"},
        "default": {
            "enum": [v.value for v in DefaultVerdict],
            "description": "What happens to inbound traffic nothing allows (default drop).",
        },
        "icmp": {
            "enum": [v.value for v in IcmpMode],
            "description": "essential (default: what IPv6 and PMTU need), all, or none.",
        },
        "log": {"type": "boolean", "description": "Log what the default verdict refuses."},
        "forwarded": {
            "enum": [v.value for v in ForwardedMode],
            "description": "filter (default): published container ports obey the allow-list.",
        },
        "sets": {
            "type": "object",
            "description": "Named address lists, used in from: as @name.",
            "propertyNames": {"pattern": SET_NAME},
            "additionalProperties": {"oneOf": [address_list, set_file]},
        },
        "deny": _one_or_many(
            {"oneOf": [{"type": "string", "minLength": 1}, set_file]},
            "Sources dropped on every port before any allow entry: addresses, CIDRs, @set,"
            " or {file: PATH}.",
        ),
        "allow": {
            "type": "array",
            "description": "The allow-list; [] allows nothing.",
            "items": {"$ref": "#/$defs/allow_entry"},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "portguard policy, version 1",
        "type": "object",
        "properties": properties,
        "required": ["version", "allow"],
        "additionalProperties": False,
        "$defs": {"allow_entry": _allow_entry()},
    }
