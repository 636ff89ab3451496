"""Declared dependencies are exactly the imported ones (pyproject.toml against the source)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Import name -> distribution name, where they differ.
DISTRIBUTION = {"yaml": "pyyaml"}
# Imported but provided elsewhere: Debian's python3-nftables (not on PyPI).
SYSTEM = {"nftables"}


def _imported_top_level() -> set[str]:
    """Top-level modules imported anywhere in portguard/ (stdlib and portguard left out)."""
    found: set[str] = set()
    for path in (ROOT / "portguard").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "portguard"}


def _names(requirements: list[str]) -> set[str]:
    """Distribution names of PEP 508 requirement strings, lower-case."""
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def test_declared_dependencies_are_the_imported_ones() -> None:
    """dependencies + the divert extra + system packages == what the source imports."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = _names(project["dependencies"])
    extras = _names(project["optional-dependencies"]["divert"])
    imported = {DISTRIBUTION.get(m, m) for m in _imported_top_level()}
    assert "pyroute2" not in declared
    assert imported - SYSTEM == declared | extras
