#!/usr/bin/python
# Copyright: portguard developers
# MIT License
"""Ansible module portguard.firewall.policy: put a portguard policy in force on the target."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: policy
short_description: Put a portguard allow-list policy in force
version_added: 0.1.0
description:
  - Writes a portguard policy to O(dest) on the target and applies it with C(portguard apply),
    so that every inbound port the policy does not allow is blocked.
  - The module runs C(portguard plan --format json --detailed-exitcode) first; the task is
    changed when the live table differs from what the policy renders to, or when O(dest)
    differs from the policy.
  - >-
    A policy portguard refuses (a syntax error, an unknown service, a port out of range) fails
    the task with portguard's one-line error C(FILE:LINE:COL) and message, naming O(dest);
    nothing is written and the rules in force stay as they were.
  - The target needs portguard installed; the module calls O(executable) and does not import
    portguard, so it runs under any Python 3 on the target.
author:
  - portguard developers (@portguard)
options:
  content:
    description:
      - The policy as YAML text. Mutually exclusive with O(src).
    type: str
  src:
    description:
      - A policy file that already exists on the target; it is copied to O(dest).
      - The policy is applied from O(dest), so set files (C(sets.NAME.file)) are read relative
        to O(dest)'s directory, in check mode too (the plan uses a copy next to O(dest)).
    type: path
  dest:
    description:
      - Where the policy is written on the target. C(portguard.path) watches the default path
        and re-applies it at every change.
    type: path
    default: /etc/portguard/policy.yaml
  state:
    description:
      - V(present) puts the policy in force.
      - V(absent) removes C(table inet portguard) (inbound traffic is no longer filtered by
        portguard) and deletes O(dest), so that boot and C(portguard.path) cannot bring it back.
    type: str
    choices: [present, absent]
    default: present
  confirm:
    description:
      - Seconds. Apply with C(--confirm), so portguard puts the previous rules back unless
        M(portguard.firewall.confirm) runs in time. Use it with
        M(ansible.builtin.wait_for_connection) in between, so the confirmation comes over a new
        connection through the new rules.
    type: int
  force:
    description:
      - Pass C(--force), which skips portguard's lockout guard. The guard refuses a policy that
        would cut a live SSH session (the one Ansible uses, for instance). Leave it off.
    type: bool
    default: false
extends_documentation_fragment:
  - portguard.firewall.portguard
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Runs C(portguard plan); nothing on the host changes, not even O(dest).
  diff_mode:
    support: full
    details: >-
      The rules in force and the rules the policy renders to (comment header left out), with
      the ports opened and closed in the header line; and O(dest)'s old and new text.
  platform:
    platforms: posix
notes:
  - portguard compares what a policy says, not where the file lies or how it is laid out, so
    the same policy from another path (or with other comments) is no change.
  - With C(portguard.path) enabled on the target, writing O(dest) also makes systemd re-apply
    it; the two applies serialize on portguard's lock and the second finds nothing to do.
requirements:
  - portguard on the target (run as root).
seealso:
  - module: portguard.firewall.confirm
"""

EXAMPLES = r"""
- name: Web servers allow SSH from the office and HTTP(S) from anywhere
  portguard.firewall.policy:
    content: |
      version: 1
      default: drop
      allow:
        - service: ssh
          from: [192.0.2.0/24]
        - port: [80, 443]

- name: A policy kept on the host, its own state dir
  portguard.firewall.policy:
    src: /srv/policies/db.yaml
    state_dir: /var/lib/portguard

- name: Apply with automatic revert unless confirmed within 2 minutes
  portguard.firewall.policy:
    content: "{{ lookup('ansible.builtin.file', 'policies/web.yaml') }}"
    confirm: 120

- name: Stop filtering with portguard
  portguard.firewall.policy:
    state: absent
"""

RETURN = r"""
plan:
  description:
    - The parsed C(portguard plan --format json) of the policy (keys C(changes), C(sockets),
      C(idle_allows), C(published), C(ruleset) with C(state) and C(diff), C(rules) with
      C(before) and C(after), C(opened) and C(closed)); taken before the apply. Null for
      O(state=absent).
  returned: always
  type: dict
  sample: {"changes": true, "ruleset": {"state": "absent"}, "opened": null, "closed": null}
status:
  description: The parsed C(portguard status --format json) before the removal.
  returned: when O(state=absent)
  type: dict
dest_changed:
  description: Whether O(dest) was (or in check mode would be) written.
  returned: when O(state=present)
  type: bool
pending_confirm:
  description: Whether the rules now in force await M(portguard.firewall.confirm).
  returned: always
  type: bool
summary:
  description: One line, the ports the change opens and closes.
  returned: always
  type: str
  sample: "opens tcp 8443 from 198.51.100.0/24; closes tcp 80"
stdout:
  description: What C(portguard apply) or C(portguard remove) printed, when it ran.
  returned: when something was applied or removed
  type: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.portguard.firewall.plugins.module_utils.portguard import (
    COMMON_ARGS,
    EXIT_CHANGES,
    error_line,
    parse_json,
    run_portguard,
)

MANY_SOURCES = 4


def main():
    """Entry point: present or absent."""
    module = AnsibleModule(
        argument_spec={
            "content": {"type": "str"},
            "src": {"type": "path"},
            "dest": {"type": "path", "default": "/etc/portguard/policy.yaml"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            **COMMON_ARGS,
            "confirm": {"type": "int"},
            "force": {"type": "bool", "default": False},
        },
        mutually_exclusive=[("content", "src")],
        required_if=[("state", "present", ("content", "src"), True)],
        supports_check_mode=True,
    )
    if module.params["confirm"] is not None and module.params["confirm"] <= 0:
        module.fail_json(msg="confirm: seconds must be a positive number")
    if module.params["state"] == "absent":
        absent(module)
    else:
        present(module)


def present(module):
    """Plan the policy, then (unless check mode) write dest and apply it."""
    dest = module.params["dest"]
    text = _policy_bytes(module)
    old = _read(dest)
    dest_changed = old != text
    candidate, temporary = _candidate(module, text, dest, dest_changed)
    try:
        rc, out, err = run_portguard(
            module, "plan", candidate, "--format", "json", "--detailed-exitcode"
        )
    finally:
        if temporary:
            os.unlink(candidate)
    if rc not in (0, EXIT_CHANGES):
        module.fail_json(msg=error_line(err, out, {candidate: dest}), rc=rc, stderr=err, plan=None)
    plan = parse_json(module, out, "plan")
    if temporary:
        plan["policy"] = dest  # the temporary copy is gone; dest is what the plan is about
    rules_changed = rc == EXIT_CHANGES
    summary = change_summary(plan) if rules_changed else "no change to the rules in force"
    result = {
        "changed": rules_changed or dest_changed,
        "plan": plan,
        "dest_changed": dest_changed,
        "pending_confirm": False,
        "summary": summary,
    }
    if module._diff:
        result["diff"] = _diffs(
            plan,
            dest,
            summary,
            old=old,
            text=text,
            rules_changed=rules_changed,
            dest_changed=dest_changed,
        )
    if module.check_mode or not result["changed"]:
        module.exit_json(**result)
    if dest_changed:
        _write(module, dest, text)
    if rules_changed:
        result["stdout"] = _apply(module, dest, old)
        result["pending_confirm"] = module.params["confirm"] is not None and _pending(module)
    module.exit_json(**result)


def absent(module):
    """Remove table inet portguard and dest (check mode: only say whether that would change)."""
    dest = module.params["dest"]
    rc, out, err = run_portguard(module, "status", "--format", "json")
    if rc != 0:
        module.fail_json(msg=error_line(err, out), rc=rc, stderr=err)
    status = parse_json(module, out, "status")
    in_force = status.get("state") not in ("absent", None)
    dest_exists = os.path.lexists(dest)
    result = {
        "changed": in_force or dest_exists,
        "plan": None,
        "status": status,
        "pending_confirm": False,
        "summary": "removes table inet portguard: portguard filters nothing inbound"
        if in_force
        else "no portguard table in force",
    }
    if module._diff:
        before = ""
        if in_force:
            shown = run_portguard(module, "show")
            before = shown[1] if shown[0] == 0 else ""
        result["diff"] = {
            "before": before,
            "after": "",
            "before_header": "table inet portguard (in force)",
            "after_header": result["summary"],
        }
    if module.check_mode or not result["changed"]:
        module.exit_json(**result)
    if in_force:
        rc, out, err = run_portguard(module, "remove", "--yes")
        if rc != 0:
            module.fail_json(msg=error_line(err, out), rc=rc, stderr=err, status=status)
        result["stdout"] = out
    if dest_exists:
        os.unlink(dest)
    module.exit_json(**result)


def change_summary(plan):
    """One line: the ports the plan opens and closes, against the policy in force."""
    opened, closed = plan.get("opened"), plan.get("closed")
    if opened is None or closed is None:
        state = (plan.get("ruleset") or {}).get("state")
        if state == "drifted":
            return "replaces a table changed outside portguard; closes every port not allowed"
        return "no portguard table in force: closes every port the policy does not allow"
    words = []
    if opened:
        words.append("opens " + ", ".join(_space(c) for c in opened))
    if closed:
        words.append("closes " + ", ".join(_space(c) for c in closed))
    return "; ".join(words) or "no port opened or closed (other rule details change)"


def _space(change):
    text = f"{change.get('proto')} {change.get('ports')}"
    sources = change.get("from") or ["any"]
    if sources != ["any"]:
        shown = ", ".join(sources[:MANY_SOURCES])
        more = len(sources) - MANY_SOURCES
        text += f" from {shown}" + (f" (+{more} more networks)" if more > 0 else "")
    if change.get("interface"):
        text += f" on {change['interface']}"
    return text


def _diffs(plan, dest, summary, *, old, text, rules_changed, dest_changed):
    ruleset = plan.get("ruleset") or {}
    diffs = []
    rules = plan.get("rules") or {}
    if rules_changed and "before" in rules:
        diffs.append(
            {
                "before": rules.get("before", ""),
                "after": rules.get("after", ""),
                "before_header": "table inet portguard (in force)",
                "after_header": f"{dest}: {summary}",
            }
        )
    elif rules_changed:
        diffs.append({"prepared": ruleset.get("diff", "")})
    if dest_changed:
        diffs.append(
            {
                "before": _text(old) if old is not None else "",
                "after": _text(text),
                "before_header": dest if old is not None else f"{dest} (absent)",
                "after_header": dest,
            }
        )
    return diffs


def _text(data):
    return data.decode("utf-8", errors="replace")


def _policy_bytes(module):
    if module.params["content"] is not None:
        return module.params["content"].encode("utf-8")
    data = _read(module.params["src"])
    if data is None:
        module.fail_json(msg=f"{module.params['src']}: cannot read the policy (src)")
    return data


def _candidate(module, text, dest, dest_changed):
    """The file to plan: dest itself when it holds the text, else a temporary copy next to
    dest (set files resolve as they will when dest is applied) or in the module's tmpdir."""
    if not dest_changed:
        return dest, False
    parent = os.path.dirname(dest)
    where = parent if os.path.isdir(parent) and os.access(parent, os.W_OK) else module.tmpdir
    fd, path = tempfile.mkstemp(prefix=".portguard-plan-", suffix=".yaml", dir=where)
    with os.fdopen(fd, "wb") as handle:
        handle.write(text)
    return path, True


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _write(module, dest, text):
    parent = os.path.dirname(dest)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, mode=0o755)
    fd, staged = tempfile.mkstemp(prefix=".portguard-", suffix=".yaml", dir=parent or ".")
    with os.fdopen(fd, "wb") as handle:
        handle.write(text)
    if not os.path.exists(dest):
        os.chmod(staged, 0o644)
    module.atomic_move(staged, dest)


def _pending(module):
    """Whether a confirmation awaits now (another apply, e.g. portguard.path's, may have won)."""
    rc, out, err = run_portguard(module, "status", "--format", "json")
    if rc != 0:
        module.fail_json(msg=error_line(err, out), rc=rc, stderr=err)
    return parse_json(module, out, "status").get("pending_confirm") is not None


def _apply(module, dest, old):
    """Apply dest; on failure put dest's old text back (or remove it) and fail the task."""
    args = ["apply", dest, "--yes"]
    if module.params["confirm"] is not None:
        args += ["--confirm", str(module.params["confirm"])]
    if module.params["force"]:
        args.append("--force")
    rc, out, err = run_portguard(module, *args)
    if rc == 0:
        return out
    if old is None:
        os.unlink(dest)
    else:
        _write(module, dest, old)
    module.fail_json(msg=error_line(err, out), rc=rc, stderr=err, stdout=out)
    return out


if __name__ == "__main__":
    main()
