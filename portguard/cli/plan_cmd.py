"""`portguard plan POLICY`: what apply would change here, as text, JSON or markdown."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

import typer

from portguard.apply import gather_facts
from portguard.backends.nftables import NftablesUnavailable, open_kernel
from portguard.cli.output import err, out, print_warnings
from portguard.cli.ports_cmd import published_rows, read_published_or_note, socket_rows
from portguard.cli.state_options import StateDirOption, open_state_dir
from portguard.cli.tables import markdown_table, plain_table, print_table, wants_rich
from portguard.drift import RulesetState, classify, table_in_force, unified_diff
from portguard.facts import listening_sockets
from portguard.model import Policy
from portguard.plan import Plan, build_plan, plan_json
from portguard.policy import load_policy
from portguard.render.nft_table import NftTable
from portguard.render.nftables import render_table
from portguard.rules_change import RulesChange, rules_change, rules_change_json
from portguard.state import StateDir

__all__ = ["PlanFormat", "Section", "plan_markdown", "plan_sections", "plan_text", "register"]

EXIT_NO_CHANGES = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
SOCKET_HEADERS = ("proto", "address", "port", "pid", "process", "exposed", "verdict", "note")
IDLE_HEADERS = ("proto", "ports", "line", "comment")
PUBLISHED_HEADERS = ("proto", "port", "to", "table", "verdict", "note")
STATE_WORDS = MappingProxyType(
    {
        RulesetState.ABSENT: "absent: apply will create table inet portguard",
        RulesetState.IN_SYNC: "in-sync: the live table is what this policy renders to",
        RulesetState.DIFFERS: "differs: apply will replace the table with this policy's rules",
        RulesetState.DRIFTED: "drifted: the live table was changed after portguard applied it;"
        " apply will replace it",
    }
)


class PlanFormat(StrEnum):
    """Output formats of `plan`."""

    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


@dataclass(frozen=True)
class Section:
    """One titled table of the plan."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def plan(
    policy: Annotated[Path, typer.Argument(help="The policy to plan for.")],
    output_format: Annotated[
        PlanFormat, typer.Option("--format", "-f", help="text, json or markdown.")
    ] = PlanFormat.TEXT,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode", help="Exit 0 with no changes, 2 with changes pending, 1 error."
        ),
    ] = False,
    state_dir: StateDirOption = None,
) -> int:
    """Show which sockets POLICY makes unreachable, idle allows, and the ruleset change."""
    loaded = load_policy(policy)
    print_warnings(loaded.warnings, loaded.omitted_warnings)
    rendering = render_table(loaded.policy)
    state, diff, reason, change = _ruleset(
        loaded.policy,
        rendering,
        str(policy),
        open_state_dir(state_dir),
        with_change=output_format is PlanFormat.JSON,
    )
    result = build_plan(
        loaded.policy,
        listening_sockets(),
        state,
        diff,
        reason,
        published=read_published_or_note(),
    )
    if output_format is PlanFormat.JSON:
        out(json.dumps(_with_change(plan_json(result), change), indent=2))
    elif output_format is PlanFormat.MARKDOWN:
        out(plan_markdown(result))
    elif wants_rich():
        for section in plan_sections(result):
            print_table(section.title, section.headers, section.rows)
        out(_ruleset_text(result))
    else:
        out(plan_text(result))
    if result.changes is None:
        err(f"portguard: ruleset state unknown: {reason}")
        return EXIT_ERROR if detailed_exitcode else EXIT_NO_CHANGES
    if detailed_exitcode and result.changes:
        return EXIT_CHANGES
    return EXIT_NO_CHANGES


def _with_change(data: dict[str, object], change: RulesChange | None) -> dict[str, object]:
    """Plan JSON plus `rules` (texts before/after) and `opened`/`closed`, when asked for."""
    return data if change is None else {**data, **rules_change_json(change)}


def _ruleset(
    policy: Policy,
    rendering: NftTable,
    policy_name: str,
    state_dir: StateDir,
    *,
    with_change: bool,
) -> tuple[RulesetState | None, str, str | None, RulesChange | None]:
    """The live table's state against `rendering`, the rendered diff, or why it is unknown;
    with `with_change`, also the rule texts before/after and the ports opened/closed."""
    try:
        facts = gather_facts(open_kernel(), state_dir)
    except NftablesUnavailable as why:
        return None, "", str(why), None
    state = classify(rendering, facts.records, facts.live)
    change = rules_change(policy, rendering, facts.records, facts.live) if with_change else None
    if state is RulesetState.IN_SYNC:
        return state, "", None, change
    in_force = table_in_force(facts.records, facts.live)
    if in_force is not None:
        old, old_name = in_force.text(), "in force"
    elif facts.live is not None:
        old, old_name = facts.live.listing or "", "live (not a known portguard rendering)"
    else:
        old, old_name = "", "live (no portguard rules)"
    return state, unified_diff(old, rendering.text(), old_name, policy_name), None, change


def plan_sections(result: Plan) -> list[Section]:
    """The plan's tables: unreachable, restricted, idle allows, loopback-only, all sockets.

    With published (DNAT) ports on the host, the ones the policy makes unreachable come
    second; a host without any gets no such section.
    """
    restricted = [s for s in result.sockets if s.allowed_by and not s.from_anywhere]

    def rows(items: list[list[str]]) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(r) for r in items)

    published = [
        Section(
            "Published ports this policy makes unreachable",
            PUBLISHED_HEADERS,
            rows(published_rows(result.unreachable_published)),
        )
    ]
    return [
        Section(
            "Listening sockets this policy makes unreachable",
            SOCKET_HEADERS,
            rows(socket_rows(result.unreachable)),
        ),
        *(published if result.published else []),
        Section(
            "Listening sockets reachable only from some sources",
            SOCKET_HEADERS,
            rows(socket_rows(restricted)),
        ),
        Section(
            "Allowed entries with nothing listening",
            IDLE_HEADERS,
            tuple(
                (i.proto.value, i.ports, str(i.line), i.comment or "") for i in result.idle_allows
            ),
        ),
        Section(
            "Loopback-only sockets (other hosts cannot reach them anyway)",
            SOCKET_HEADERS,
            rows(socket_rows(result.loopback_only)),
        ),
        Section("All listening sockets", SOCKET_HEADERS, rows(socket_rows(result.sockets))),
    ]


def _ruleset_text(result: Plan) -> str:
    state = result.ruleset.state
    if state is None:
        head = f"Ruleset: unknown ({result.ruleset.reason})"
    else:
        head = f"Ruleset: {STATE_WORDS[state]}"
    summary = f"Summary: {_summary(result)}"
    parts = [head]
    if result.ruleset.diff:
        parts.append(result.ruleset.diff.rstrip("\n"))
    return "\n".join([*parts, summary])


def _summary(result: Plan) -> str:
    published = f" (+{len(result.unreachable_published)} published)" if result.published else ""
    return (
        f"{len(result.unreachable)} unreachable{published}, {len(result.idle_allows)} idle"
        f" allow{'' if len(result.idle_allows) == 1 else 's'}, "
        + {None: "changes unknown", True: "changes pending", False: "no changes"}[result.changes]
    )


def plan_text(result: Plan) -> str:
    """The plain-text plan (what a pipe or NO_COLOR gets)."""
    blocks = [f"Plan for {result.policy_path}"]
    for section in plan_sections(result):
        table = plain_table(section.headers, section.rows) if section.rows else "  (none)"
        blocks.append(f"{section.title}:\n{table}")
    blocks.append(_ruleset_text(result))
    return "\n\n".join(blocks)


def plan_markdown(result: Plan) -> str:
    """The plan as markdown, fit to paste into a pull request."""
    blocks = [f"## portguard plan: `{result.policy_path}`", f"**{_summary(result)}**"]
    for section in plan_sections(result)[:-1]:
        body = markdown_table(section.headers, section.rows) if section.rows else "_none_"
        blocks.append(f"### {section.title}\n\n{body}")
    state = result.ruleset.state
    words = STATE_WORDS[state] if state is not None else f"unknown ({result.ruleset.reason})"
    ruleset = f"### Ruleset\n\n**{words}**"
    if result.ruleset.diff:
        ruleset += f"\n\n```diff\n{result.ruleset.diff.rstrip()}\n```"
    blocks.append(ruleset)
    return "\n\n".join(blocks)


def register(app: typer.Typer) -> None:
    """Add `plan` to the app."""
    app.command("plan")(plan)
