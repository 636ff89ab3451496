"""The Foomuuri baseline finds Foomuuri only where told and keeps every Foomuuri path in scratch."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import foomuuri
from bench.foomuuri_run import ENVIRONMENT, SYSTEM_SHARE, Foomuuri, find_foomuuri, foomuuri_config


def _checkout(root: Path) -> Path:
    """A directory laid out like a Foomuuri checkout: src/foomuuri and etc/default.services.conf."""
    (root / "src").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "src" / "foomuuri").write_text("#!/usr/bin/python3\n")
    (root / "etc" / "default.services.conf").write_text("macro {\n}\n")
    return root


def test_nothing_given_is_a_reason_to_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --foomuuri or the environment variable the benchmark gets a reason, not a tool."""
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    found = find_foomuuri(None)
    assert isinstance(found, str)
    assert ENVIRONMENT in found


def test_missing_script_is_a_reason_to_skip(tmp_path: Path) -> None:
    """A path without a Foomuuri script is reported, naming the path looked at."""
    found = find_foomuuri(str(tmp_path))
    assert found == f"no Foomuuri script at {tmp_path.resolve() / 'src' / 'foomuuri'}"


def test_checkout_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout named by the environment variable gives its script and its etc/ as share dir."""
    root = _checkout(tmp_path / "foomuuri")
    monkeypatch.setenv(ENVIRONMENT, str(root))
    assert find_foomuuri(None) == Foomuuri(root / "src" / "foomuuri", root / "etc")


def test_every_directory_points_into_the_work_dir(tmp_path: Path) -> None:
    """argv sets etc, state and run dirs under the work dir, so /etc and /var are never used."""
    root = _checkout(tmp_path / "foomuuri")
    tool = find_foomuuri(str(root / "src" / "foomuuri"))
    assert isinstance(tool, Foomuuri)
    work = tmp_path / "work"
    argv = tool.argv(work, "start", "--set=rpfilter=no")
    sets = {a.split("=")[1]: a.split("=", 2)[2] for a in argv if a.startswith("--set=")}
    assert sets == {
        "etc_dir": str(work / "etc"),
        "state_dir": str(work / "state"),
        "run_dir": str(work / "run"),
        "share_dir": str(root / "etc"),
        "rpfilter": "no",
    }
    assert argv[-1] == "start"
    assert SYSTEM_SHARE not in {Path(v) for v in sets.values()}


def test_config_allows_rules_from_the_list(tmp_path: Path) -> None:
    """The written config holds the iplist file and each rule inside public-localhost."""
    foomuuri_config(tmp_path, tmp_path / "big.txt", ["tcp 22 saddr @big", "udp 22 saddr @big"])
    text = (tmp_path / "etc" / "foomuuri.conf").read_text()
    assert f"@big {tmp_path / 'big.txt'}\n" in text
    section = text.split("public-localhost {\n", 1)[1].split("}", 1)[0]
    assert section == "  tcp 22 saddr @big\n  udp 22 saddr @big\n"
    assert all((tmp_path / name).is_dir() for name in ("etc", "state", "run"))


def test_main_without_foomuuri_prints_skipped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a Foomuuri, `python -m bench foomuuri` prints one "skipped" line, nothing else."""
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    monkeypatch.setattr("sys.argv", ["python -m bench.foomuuri"])
    foomuuri.main()
    assert capsys.readouterr().out == (
        f"bench.foomuuri: skipped (no Foomuuri given (--foomuuri PATH or {ENVIRONMENT}))\n"
    )
