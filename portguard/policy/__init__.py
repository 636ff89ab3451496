"""Policy v1: YAML text to a validated, typed `Policy` (load) and its lint warnings (lint)."""

from portguard.policy.lint import lint_policy
from portguard.policy.load import load_policy, parse_policy

__all__ = ["lint_policy", "load_policy", "parse_policy"]
