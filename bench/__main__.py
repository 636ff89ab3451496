"""Run every benchmark module in bench/ (each defines `main()`), or only those named."""

from __future__ import annotations

import importlib
import itertools
import pkgutil
import sys
from pathlib import Path


def main(names: list[str]) -> None:
    """Import and run bench.NAME.main() for each NAME given, or for every module found."""
    modules = pkgutil.iter_modules([str(Path(__file__).parent)])
    found = sorted(m.name for m in modules if not m.name.startswith("_"))  # not __main__
    for name in names or found:
        module = importlib.import_module(f"bench.{name}")
        runner = getattr(module, "main", None)
        if callable(runner):
            print(f"== bench.{name}", flush=True)
            runner()


if __name__ == "__main__":
    # Names come first; options after them (`load_render --root PATH`) are the modules' own.
    main(list(itertools.takewhile(lambda arg: not arg.startswith("-"), sys.argv[1:])))
