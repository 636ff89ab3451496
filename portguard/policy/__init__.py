"""Policy v1: YAML text to a validated, typed `Policy` (load) and its lint warnings (lint)."""

from __future__ import annotations

from importlib import import_module
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portguard.policy.lint import lint_policy
    from portguard.policy.load import load_policy, parse_policy

__all__ = ["lint_policy", "load_policy", "parse_policy"]

# Where each name lives; imported on first use, so that a light submodule (bounded_read,
# which the no-op apply needs) does not load PyYAML and the linter with this package.
_HOMES = MappingProxyType({"lint_policy": "lint", "load_policy": "load", "parse_policy": "load"})


def __getattr__(name: str) -> Any:
    """lint_policy, load_policy, parse_policy, from their modules."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"portguard.policy.{home}"), name)
