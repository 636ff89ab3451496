"""How the Foomuuri baseline finds and runs Foomuuri: never installed, never outside a namespace.

Foomuuri (GPL-2, https://github.com/FoobarOy/foomuuri) is not vendored: the benchmark takes
the path of a checkout (or of its `src/foomuuri` script) from `--foomuuri PATH` or the
environment variable PORTGUARD_BENCH_FOOMUURI. Every run points Foomuuri's config, state
and run directories at a scratch directory (`--set=etc_dir=...` and so on) and happens
inside a throwaway namespace through `ip netns exec`, so /etc and the machine's own
ruleset are never touched.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENVIRONMENT", "Foomuuri", "find_foomuuri", "foomuuri_config"]

ENVIRONMENT = "PORTGUARD_BENCH_FOOMUURI"
SYSTEM_SHARE = Path("/usr/share/foomuuri")


@dataclass(frozen=True)
class Foomuuri:
    """A Foomuuri script and the directory of its shipped defaults (default.services.conf)."""

    script: Path
    share: Path

    def argv(self, work: Path, command: str, *options: str) -> list[str]:
        """Run `command` with config in work/etc and state in work/state, work/run."""
        dirs = {"etc_dir": "etc", "state_dir": "state", "run_dir": "run"}
        sets = [f"--set={key}={work / name}" for key, name in dirs.items()]
        return [
            *("env", "-u", "NOTIFY_SOCKET"),  # never talk to the machine's systemd
            sys.executable,
            str(self.script),
            *sets,
            f"--set=share_dir={self.share}",
            *options,
            command,
        ]


def find_foomuuri(given: str | None) -> Foomuuri | str:
    """The Foomuuri at `given` (or $PORTGUARD_BENCH_FOOMUURI), or why there is none."""
    where = given or os.environ.get(ENVIRONMENT)
    if not where:
        return f"no Foomuuri given (--foomuuri PATH or {ENVIRONMENT})"
    path = Path(where).resolve()
    script = path / "src" / "foomuuri" if path.is_dir() else path
    if not script.is_file():
        return f"no Foomuuri script at {script}"
    for share in (script.parent.parent / "etc", SYSTEM_SHARE):
        if (share / "default.services.conf").is_file():
            return Foomuuri(script, share)
    return f"no default.services.conf beside {script} or in {SYSTEM_SHARE}"


def foomuuri_config(work: Path, sources: Path, rules: list[str]) -> None:
    """Write work/etc/foomuuri.conf: `rules` in to this host from the iplist @big, out open.

    Every interface is in zone `public`; what `rules` do not accept is dropped by
    Foomuuri's own default end of `public-localhost` (drop, rate-limited log).
    """
    for name in ("etc", "state", "run"):
        (work / name).mkdir(parents=True, exist_ok=True)
    allow = "".join(f"  {rule}\n" for rule in rules)
    (work / "etc" / "foomuuri.conf").write_text(
        "zone {\n  localhost\n  public *\n}\n"
        f"iplist {{\n  @big {sources}\n}}\n"
        f"public-localhost {{\n{allow}}}\n"
        "localhost-public {\n  accept\n}\n"
    )
