"""The wheel is the whole tool: built from this checkout, installed in a fresh venv, it installs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3")
PIP_TIMEOUT = 900  # a loaded machine fetching setuptools and the dependencies

needs_system_python = pytest.mark.skipif(
    not SYSTEM_PYTHON.is_file(), reason="needs /usr/bin/python3 to make a fresh venv"
)


def _run(
    argv: list[str], cwd: Path, timeout: float = PIP_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run argv in cwd with a clean environment (no PYTHONPATH into this checkout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A wheel built from this checkout by pip, as a user would build it (isolated build)."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "src"
    shutil.copytree(
        CHECKOUT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.egg-info", "build", "__pycache__", ".*_cache"
        ),
    )
    done = _run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(out), str(source)],
        cwd=out,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    built = sorted(out.glob("portguard-*.whl"))
    assert len(built) == 1
    # The build itself must be quiet: no setuptools deprecation (license as a TOML table).
    said = done.stdout + done.stderr
    assert "SetuptoolsDeprecationWarning" not in said
    assert "BuildBackendWarning" not in said
    yield built[0]


def test_wheel_carries_units_policies_and_man_page(wheel: Path) -> None:
    """Package data: every shipped unit, bundled policy and the man page are in the wheel."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for unit in (CHECKOUT / "systemd").iterdir():
        assert f"portguard/shipped/systemd/{unit.name}" in names
    for policy in (CHECKOUT / "policies").glob("*.yaml"):
        assert f"portguard/shipped/policies/{policy.name}" in names
    assert "portguard/shipped/man/portguard.1" in names


def test_wheel_declares_what_it_imports(wheel: Path) -> None:
    """Requires-Dist names typer, pyyaml, psutil and rich, not pyroute2; license is SPDX MIT."""
    with zipfile.ZipFile(wheel) as archive:
        meta_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(meta_name).decode("utf-8"))
    required = {
        r.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for r in meta.get_all("Requires-Dist") or []
    }
    assert {"typer", "pyyaml", "psutil", "rich"} <= required
    assert "pyroute2" not in required
    assert meta["License-Expression"] == "MIT"


@needs_system_python
def test_wheel_in_a_fresh_venv_installs_into_a_root(wheel: Path, tmp_path: Path) -> None:
    """pip install the wheel in a new venv; its portguard writes units, policy and man page."""
    venv = tmp_path / "venv"
    made = _run([str(SYSTEM_PYTHON), "-m", "venv", "--system-site-packages", str(venv)], tmp_path)
    assert made.returncode == 0, made.stderr
    installed = _run([str(venv / "bin/python"), "-m", "pip", "install", "-q", str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]
    portguard = venv / "bin/portguard"
    version = _run([str(portguard), "--version"], tmp_path, timeout=120)
    assert version.stdout.strip() == "portguard 0.1.0"
    root = tmp_path / "root"
    done = _run([str(portguard), "install", "--root", str(root), "--no-systemctl"], tmp_path, 120)
    assert done.returncode == 0, done.stderr
    service = (root / "etc/systemd/system/portguard.service").read_text(encoding="utf-8")
    assert f"ExecStart={portguard} apply --boot /etc/portguard/policy.yaml" in service
    policy = (root / "etc/portguard/policy.yaml").read_bytes()
    assert policy == (CHECKOUT / "policies/default.yaml").read_bytes()
    page = root / "usr/local/share/man/man1/portguard.1"
    assert page.read_bytes() == (CHECKOUT / "man/portguard.1").read_bytes()
    # The installed tool runs from the venv, not from this checkout.
    where = _run(
        [str(venv / "bin/python"), "-c", "import portguard; print(portguard.__file__)"],
        tmp_path,
        120,
    )
    assert where.stdout.startswith(str(venv))


@needs_system_python
def test_editable_install_warns_about_nothing_but_editable_mode(
    wheel: Path, tmp_path: Path
) -> None:
    """pip install -e (as bootstrap.sh does) shows no deprecation; only setuptools' notice."""
    source = wheel.parent / "src"  # the copy the wheel was built from
    venv = tmp_path / "venv"
    made = _run([str(SYSTEM_PYTHON), "-m", "venv", "--system-site-packages", str(venv)], tmp_path)
    assert made.returncode == 0, made.stderr
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-v", "--no-deps", "-e"]
    done = _run([*pip, str(source)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    warnings = [
        line.strip()
        for line in (done.stdout + done.stderr).splitlines()
        if "Warning:" in line and "pypi" not in line
    ]
    assert all("BuildBackendWarning: Editable installation" in w for w in warnings), warnings
    code = "import portguard; print(portguard.__file__)"  # --no-deps: typer may be absent
    where = _run([str(venv / "bin/python"), "-c", code], tmp_path, timeout=120)
    assert where.stdout.strip() == str(source / "portguard" / "__init__.py")
