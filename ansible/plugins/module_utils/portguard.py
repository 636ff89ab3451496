# Copyright: portguard developers
# MIT License (see the repository's LICENSE note in pyproject.toml)
"""Shared by the portguard modules: run the portguard CLI on the target, read its answers.

The modules run under the target's own Python, which cannot import portguard: everything
goes through the `executable` and its documented exit codes and JSON.
"""

from __future__ import annotations

import json

EXIT_CHANGES = 2

# The options every module has; documented once in doc_fragments/portguard.py.
COMMON_ARGS = {
    "state_dir": {"type": "path"},
    "executable": {"type": "str", "default": "portguard"},
}


def portguard_command(module, *args):
    """The argv for `executable ARGS... [--state-dir DIR]`."""
    argv = [module.params["executable"], *args]
    if module.params.get("state_dir"):
        argv += ["--state-dir", module.params["state_dir"]]
    return argv


def run_portguard(module, *args):
    """Run portguard with ARGS; (rc, stdout, stderr). The module fails if it cannot start."""
    executable = module.params["executable"]
    if "/" not in executable and module.get_bin_path(executable) is None:
        module.fail_json(msg=f"portguard executable {executable!r} not found on the target")
    return module.run_command(portguard_command(module, *args), environ_update={"NO_COLOR": "1"})


def error_line(stderr, stdout="", replace=None):
    """portguard's one-line error (the last line it wrote to stderr), with paths replaced."""
    lines = [ln.strip() for ln in (stderr or stdout or "").splitlines() if ln.strip()]
    message = lines[-1] if lines else "portguard failed without a message"
    for old, new in (replace or {}).items():
        message = message.replace(old, new)
    return message


def parse_json(module, text, what):
    """The JSON object portguard printed for WHAT; the module fails on anything else."""
    try:
        data = json.loads(text)
    except ValueError:
        module.fail_json(msg=f"portguard {what}: expected JSON, got: {text[:200]!r}")
    if not isinstance(data, dict):
        module.fail_json(msg=f"portguard {what}: expected a JSON object")
    return data
