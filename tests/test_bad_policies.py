"""Every policy in tests/bad is refused with exactly the one stderr line beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from portguard.cli import main
from portguard.services import load_services

BAD = Path(__file__).resolve().parent / "bad"
CASES = sorted(BAD.glob("*.yaml"))


def expected_line(case: Path) -> str:
    """The .err file's line, with {services} naming the services table in use here."""
    text = case.with_suffix(".err").read_text(encoding="utf-8")
    return text.rstrip("\n").replace("{services}", load_services().source)


def test_corpus_is_large_and_complete() -> None:
    """At least 45 cases, and every case has its .err file."""
    assert len(CASES) >= 45
    missing = [case.name for case in CASES if not case.with_suffix(".err").is_file()]
    assert missing == []


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_bad_policy_gives_one_line(
    case: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check --no-kernel` exits 1 with exactly the expected line, no traceback, no stdout."""
    monkeypatch.chdir(BAD)
    status = main(["check", "--no-kernel", case.name])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert captured.err.splitlines() == [expected_line(case)]
    assert captured.err.endswith("\n")


def test_error_line_names_the_file_it_was_given(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Run from elsewhere with an absolute path, the line starts with that path."""
    case = BAD / "29-port-zero.yaml"
    assert main(["check", "--no-kernel", str(case)]) == 1
    assert capsys.readouterr().err == f"{case}:3:11: port 0 is out of range 1-65535\n"


def test_missing_policy_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A policy path that does not exist is one line naming it, exit 1."""
    missing = tmp_path / "absent.yaml"
    assert main(["check", "--no-kernel", str(missing)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"{missing}: cannot read policy: No such file or directory\n"


def test_unreadable_set_file_written_at_run_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A set file that is a directory made now, next to the policy, is a located error."""
    (tmp_path / "partners.txt").mkdir()
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nsets:\n  partners: {file: partners.txt}\nallow: []\n")
    assert main(["check", "--no-kernel", str(policy)]) == 1
    assert capsys.readouterr().err == (
        f"{policy}:3:20: cannot read set file 'partners.txt': Is a directory\n"
    )
