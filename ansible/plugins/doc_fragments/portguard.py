# Copyright: portguard developers
# MIT License (see the repository's LICENSE note in pyproject.toml)
"""The options every portguard module has (module_utils.portguard.COMMON_ARGS)."""

from __future__ import annotations


class ModuleDocFragment:
    """`extends_documentation_fragment: portguard.firewall.portguard`."""

    DOCUMENTATION = r"""
options:
  state_dir:
    description:
      - portguard's state directory (C(--state-dir)); portguard's default when not given.
    type: path
  executable:
    description:
      - The portguard command on the target, a name on E(PATH) or a path.
    type: str
    default: portguard
"""
