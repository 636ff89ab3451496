"""The CLI's error contract: one line on stderr, exit 1, no traceback (unless --debug)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portguard.backends import nftables as nftables_backend
from portguard.cli import check_cmd, main
from portguard.errors import PolicyError

ROOT = Path(__file__).resolve().parent.parent
BAD_PORT = ROOT / "tests" / "bad" / "29-port-zero.yaml"
GOOD = ROOT / "policies" / "web-server.yaml"


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("command", ["check", "render"])
def test_policy_error_is_one_line_for_each_command(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """check and render both report a bad policy as FILE:LINE:COL: message, exit 1."""
    assert main([command, str(BAD_PORT)]) == 1
    assert _one_error_line(capsys) == f"{BAD_PORT}:3:11: port 0 is out of range 1-65535"


def test_directory_as_policy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A directory where a policy file belongs is one line naming it."""
    assert main(["check", "--no-kernel", str(tmp_path)]) == 1
    assert _one_error_line(capsys) == f"{tmp_path}: cannot read policy: Is a directory"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["check", "--bogus", "x.yaml"],
            "portguard check: No such option: --bogus (see 'portguard check --help')",
        ),
        (
            ["check"],
            "portguard check: Missing argument 'POLICY'. (see 'portguard check --help')",
        ),
        (
            ["no-such-command"],
            "portguard: No such command 'no-such-command'. (see 'portguard --help')",
        ),
    ],
)
def test_usage_errors_exit_1_not_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Usage errors exit 1 (2 means "changes pending") with exactly one line naming the command."""
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [message]


def test_debug_shows_the_real_exception() -> None:
    """With --debug the PolicyError propagates, so a traceback can be seen."""
    with pytest.raises(PolicyError, match="port 0 is out of range"):
        main(["--debug", "check", "--no-kernel", str(BAD_PORT)])


def test_unexpected_exception_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the core still reaches the user as one line pointing at --debug."""

    def broken(path: object) -> object:
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(check_cmd, "load_policy", broken)
    assert main(["check", str(GOOD)]) == 1
    assert _one_error_line(capsys) == (
        "portguard: internal error: RuntimeError: first line second line"
        " (rerun with --debug for a traceback)"
    )


def test_warnings_do_not_change_the_exit_status(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Lint warnings go to stderr as FILE:LINE:COL: warning: ..., and check still exits 0."""
    policy = tmp_path / "warn.yaml"
    policy.write_text("version: 1\nallow:\n  - port: 31337\n")
    assert main(["check", "--no-kernel", str(policy)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        f"{policy}:3:5: warning: allows well-known trojan port(s): 31337 (Back Orifice)\n"
    )
    assert captured.out == (
        f"{policy}: ok (1 allow entry, 1 warning); kernel dry run not requested\n"
    )


def test_kernel_dry_run_skipped_when_not_root(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without root, check says the dry run was skipped and why, and a valid policy exits 0."""
    monkeypatch.setattr(nftables_backend, "has_net_admin", lambda: False)
    assert main(["check", str(GOOD)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "portguard: kernel dry run skipped: nftables needs root (CAP_NET_ADMIN); run as root\n"
    )
    assert captured.out.endswith("; kernel dry run skipped\n")
