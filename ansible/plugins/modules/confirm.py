#!/usr/bin/python
# Copyright: portguard developers
# MIT License
"""Ansible module portguard.firewall.confirm: keep the rules of a pending `apply --confirm`."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: confirm
short_description: Keep the rules of a pending portguard apply with automatic revert
version_added: 0.1.0
description:
  - Runs C(portguard confirm) on the target, so the rules that
    M(portguard.firewall.policy) applied with O(portguard.firewall.policy#module:confirm) stay
    in force instead of being reverted at the deadline.
  - Run it after M(ansible.builtin.wait_for_connection) (with a fresh connection, for example
    after M(ansible.builtin.meta) C(reset_connection)), so the confirmation proves that a new
    SSH connection still gets through the new rules.
  - Nothing awaiting confirmation is not an error (the policy task found nothing to change),
    unless the rules in force were put back by portguard's revert; then the task fails, since
    the confirmation came too late.
author:
  - portguard developers (@portguard)
extends_documentation_fragment:
  - portguard.firewall.portguard
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports whether a confirmation is pending; confirms nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - portguard on the target (run as root).
seealso:
  - module: portguard.firewall.policy
"""

EXAMPLES = r"""
- name: Apply; portguard reverts in 2 minutes unless confirmed
  portguard.firewall.policy:
    content: "{{ lookup('ansible.builtin.file', 'policies/web.yaml') }}"
    confirm: 120
  register: firewall

- name: Drop the SSH connection, so the next task needs a new one through the new rules
  ansible.builtin.meta: reset_connection

- name: A new connection gets through
  ansible.builtin.wait_for_connection:
    timeout: 60
  when: firewall.pending_confirm

- name: Keep the new rules
  portguard.firewall.confirm:
  when: firewall.pending_confirm
"""

RETURN = r"""
deadline:
  description: The deadline the confirmation beat (null when nothing awaited confirmation).
  returned: always
  type: str
  sample: "2026-12-01T03:00:00+00:00"
status:
  description: The parsed C(portguard status --format json) before confirming.
  returned: always
  type: dict
stdout:
  description: What C(portguard confirm) printed.
  returned: when it ran
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.portguard.firewall.plugins.module_utils.portguard import (
    COMMON_ARGS,
    error_line,
    parse_json,
    run_portguard,
)


def main():
    """Confirm the pending apply, if one awaits confirmation."""
    module = AnsibleModule(
        argument_spec=dict(COMMON_ARGS),
        supports_check_mode=True,
    )
    rc, out, err = run_portguard(module, "status", "--format", "json")
    if rc != 0:
        module.fail_json(msg=error_line(err, out), rc=rc, stderr=err)
    status = parse_json(module, out, "status")
    deadline = status.get("pending_confirm")
    if deadline is None:
        if status.get("source") == "revert":
            module.fail_json(
                msg="nothing awaits confirmation: portguard already put the previous rules"
                " back (the confirmation came too late)",
                status=status,
                deadline=None,
            )
        module.exit_json(changed=False, status=status, deadline=None)
    if module.check_mode:
        module.exit_json(changed=True, status=status, deadline=deadline)
    rc, out, err = run_portguard(module, "confirm")
    if rc != 0:
        module.fail_json(msg=error_line(err, out), rc=rc, stderr=err, status=status)
    module.exit_json(changed=True, status=status, deadline=deadline, stdout=out)


if __name__ == "__main__":
    main()
