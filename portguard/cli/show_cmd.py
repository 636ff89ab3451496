"""`portguard show`: what is in force, in human terms, and whether the live table matches it."""

from __future__ import annotations

import json
import os

import typer

from portguard.apply import gather_facts
from portguard.backends.nftables import open_kernel
from portguard.cli.formats import TextFormat, TextFormatOption
from portguard.cli.output import out, print_warnings_text, printable
from portguard.cli.state_options import StateDirOption, open_state_dir
from portguard.drift import RulesetState, classify, unrecorded
from portguard.history import trusted_state_dir
from portguard.render.nft_table import NftTable
from portguard.show import PolicyView, policy_view
from portguard.state import AppliedState, Records, StateDir

__all__ = ["register"]

NOT_CHECKED = "live table not checked: needs root"


def show(
    output_format: TextFormatOption = TextFormat.TEXT,
    state_dir: StateDirOption = None,
) -> int:
    """Show the policy in force (default, icmp, each allow entry) and whether the table matches."""
    records, live_state, note = _records_and_state(open_state_dir(state_dir))
    print_warnings_text(records.warnings)
    applied = records.applied
    view = None if applied is None else policy_view(*_policy_of(applied))
    if output_format is TextFormat.JSON:
        out(json.dumps(_json(applied, view, live_state, note), indent=2))
        return 0
    lines = _text(applied, view, records.removed_at)
    lines.append(_live_line(live_state))
    if note is not None:
        lines.append(note)
    for line in lines:
        out(line)
    return 0


def _records_and_state(state: StateDir) -> tuple[Records, RulesetState | None, str | None]:
    """The records, the live table's state against them (None without root), and a note."""
    trusted_state_dir(state.path)  # a one-line refusal, not a permission error halfway
    if os.geteuid() != 0:
        return state.read_records(), None, None
    facts = gather_facts(open_kernel(), state)
    note = None
    pending = facts.records.pending
    if unrecorded(facts.records, facts.live) and pending is not None:
        note = (
            f"note: the live table is {printable(pending.policy_path)}, from an apply begun at"
            f" {pending.started_at} that was interrupted before its record was written"
        )
    return facts.records, classify(None, facts.records, facts.live), note


def _policy_of(applied: AppliedState) -> tuple[str, str, NftTable]:
    return applied.policy_path, applied.policy_text, applied.table


def _text(
    applied: AppliedState | None, view: PolicyView | None, removed_at: str | None
) -> list[str]:
    """The human view (control characters in names and comments escaped)."""
    if applied is None or view is None:
        if removed_at is not None:
            return [f"nothing in force: removed by portguard at {removed_at}"]
        return ["nothing applied yet"]
    lines = [
        f"in force: {printable(applied.policy_path)}"
        f" (applied {applied.applied_at} by {applied.source.value})"
    ]
    if view.parse_error is not None:
        lines.append(f"the applied policy text cannot be read again: {printable(view.parse_error)}")
        lines.append("the rendered table's sets:")
        lines.extend(f"  {s.name} ({s.kind}): {s.elements} element(s)" for s in view.rendered_sets)
        return lines
    if view.description:
        lines.append(f"description: {printable(view.description)}")
    lines.append(f"default: {view.default}, icmp: {view.icmp}, log: {'on' if view.log else 'off'}")
    for name, size in view.named_sets:
        lines.append(f"set @{name}: {size} address(es)")
    if not view.allow:
        lines.append("allow: nothing (every inbound port is blocked)")
    else:
        lines.append("allow:")
        lines.extend(f"  {printable(entry.text())}" for entry in view.allow)
    return lines


def _live_line(live_state: RulesetState | None) -> str:
    if live_state is None:
        return NOT_CHECKED
    meaning = {
        RulesetState.IN_SYNC: "matches what was applied",
        RulesetState.DRIFTED: "changed since portguard applied it; `portguard status` shows how",
        RulesetState.ABSENT: "not loaded; nothing is enforced",
        RulesetState.DIFFERS: "differs from what was applied",
    }[live_state]
    return f"live table: {live_state.value} ({meaning})"


def _json(
    applied: AppliedState | None,
    view: PolicyView | None,
    live_state: RulesetState | None,
    note: str | None,
) -> dict[str, object]:
    """The view as one JSON object (`from` is null for anywhere, else the names as written)."""
    data: dict[str, object] = {
        "policy_path": None if applied is None else applied.policy_path,
        "applied_at": None if applied is None else applied.applied_at,
        "source": None if applied is None else applied.source.value,
        "state": None if live_state is None else live_state.value,
        "live_checked": live_state is not None,
        "note": note,
        "description": None if view is None else view.description,
        "default": None if view is None else view.default,
        "icmp": None if view is None else view.icmp,
        "log": None if view is None else view.log,
        "sets": {} if view is None else dict(view.named_sets),
        "allow": [] if view is None else [entry.to_json() for entry in view.allow],
    }
    if view is not None and view.parse_error is not None:
        data["parse_error"] = view.parse_error
        data["rendered_sets"] = [
            {"name": s.name, "type": s.kind, "elements": s.elements} for s in view.rendered_sets
        ]
    return data


def register(app: typer.Typer) -> None:
    """Add `show` to the app."""
    app.command("show")(show)
