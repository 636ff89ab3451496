"""`portguard log`: the packets portguard logs (drops under `log: true`, logged entries)."""

from __future__ import annotations

import json
import os
import sys
import time
from enum import StrEnum
from typing import Annotated

import typer

from portguard.cli.output import out
from portguard.errors import PortguardError
from portguard.facts.nflog import LogEvent, NflogReader, parse_kernel_line
from portguard.render.nftables import NFLOG_GROUP

__all__ = ["register"]

KMSG = "/dev/kmsg"


class LogFormat(StrEnum):
    """Output formats of `log`."""

    TEXT = "text"
    JSON = "json"


def log(
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-F",
            help="Print packets as they are logged (NFLOG group; works in any namespace).",
        ),
    ] = False,
    output_format: Annotated[
        LogFormat, typer.Option("--format", "-f", help="text or json (one object a line).")
    ] = LogFormat.TEXT,
    count: Annotated[
        int | None, typer.Option("--count", "-n", min=1, help="With --follow: stop after N.")
    ] = None,
    idle: Annotated[
        float | None,
        typer.Option("--idle", min=0.1, help="With --follow: stop after SECONDS without one."),
    ] = None,
) -> None:
    """Show the drops (`log: true`) from the kernel log, or follow drops and logged accepts."""
    if follow:
        reader = NflogReader(NFLOG_GROUP)
        try:
            for number, event in enumerate(reader.events(timeout=idle), 1):
                _emit(event, output_format)
                if count is not None and number >= count:
                    break
        finally:
            reader.close()
        return
    for event in _kernel_log():
        _emit(event, output_format)


def _emit(event: LogEvent, output_format: LogFormat) -> None:
    if output_format is LogFormat.JSON:
        out(json.dumps(event.to_json()))
    else:
        out(event.text())
    # A pipe (`| head`, a log shipper) must see each line at once.
    sys.stdout.flush()


def _kernel_log() -> list[LogEvent]:
    """portguard's drops still in the kernel's ring buffer (/dev/kmsg, non-blocking)."""
    boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    events: list[LogEvent] = []
    try:
        fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise PortguardError(f"cannot read the kernel log {KMSG}: {error.strerror}") from None
    try:
        while True:
            try:
                record = os.read(fd, 8192).decode("utf-8", "replace")
            except BlockingIOError:
                break
            except OSError:  # EPIPE: the ring buffer overwrote a record; read on
                continue
            header, _, message = record.partition(";")
            fields = header.split(",")
            micros = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
            event = parse_kernel_line(message, boot + micros / 1e6)
            if event is not None:
                events.append(event)
    finally:
        os.close(fd)
    return events


def register(app: typer.Typer) -> None:
    """Add `log` to the app."""
    app.command("log")(log)
