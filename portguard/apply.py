"""Facts, one plan, then execute: every command that changes portguard's rules goes through here.

`gather_facts` reads the live table and the records once; `plan_change` (pure) says what a
target would change; `execute` carries the plan out under the state dir's lock, after
checking that the live table is still what the plan saw. The order is what makes a failure
safe (the fail-closed invariant, DESIGN §4):

1. the intent (pending.json) is written first: a full or read-only state dir stops here,
   before the kernel is touched;
2. the kernel change is atomic (backends/nft_swap.py): the live table is the old rendering
   or the new one, never a mix; a refusal leaves the old one;
3. the record is written; if that fails, the previous known rendering is loaded again (a
   planned load of a known table, never a re-parse of a listing, unless the table portguard
   replaced was not one it knew), so the host is never more open than before.

A kill -9 between 2 and 3 leaves the new rules, named by their marker; pending.json names
them, so `status` and the next command know exactly which rendering is live.

4. last, still under the lock, one history row (history.py): "applied" (kernel changed),
   "recorded" (records only) or "failed: ..." (then the error is re-raised). A no-op makes
   no row. A history that cannot be written is a warning (lost on failure) and never
   touches the kernel.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

from portguard.backends.nft_swap import Loaded, load_table, replace_whole
from portguard.backends.nftables import KernelRefused, NftKernel
from portguard.drift import RulesetState, classify, table_in_force
from portguard.errors import PortguardError
from portguard.facts.generation import Commits, RulesetGeneration, read_generation
from portguard.facts.proven import proven_live, settle_records
from portguard.facts.reference import can_reproduce
from portguard.facts.ruleset import LiveTable, read_live_table
from portguard.faults import checkpoint
from portguard.history import note_change
from portguard.noop import inputs_fingerprint, services_digest
from portguard.policy import parse_policy
from portguard.policy.load import LoadedPolicy, read_policy_bytes
from portguard.render.nft_table import GENERATIONS, NftTable
from portguard.render.nftables import render_table
from portguard.state import (
    DEFAULT_LOCK_TIMEOUT,
    Action,
    AppliedState,
    PendingChange,
    Records,
    StateDir,
    StateError,
    now_text,
)

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "ApplyOutcome",
    "ChangePlan",
    "ChangedSincePlan",
    "EmptyListing",
    "RecordFailed",
    "RulesetFacts",
    "Target",
    "execute",
    "gather_facts",
    "load_target",
    "plan_change",
]


class EmptyListing(PortguardError):
    """The kernel accepted the transaction, yet the table is not there afterwards."""


class ChangedSincePlan(PortguardError):
    """The live table is no longer what the plan was made from."""


class RecordFailed(PortguardError):
    """The kernel took the change but the record could not be written (previous rules back)."""


@dataclass(frozen=True)
class Target:
    """What a change makes live: a rendered table and its source, or no table (`remove`)."""

    table: NftTable | None
    policy_path: str = ""
    policy_text: str = ""
    action: Action = Action.APPLY
    inputs: str | None = None  # noop.inputs_fingerprint of what was parsed (None: unknown)


@dataclass(frozen=True)
class RulesetFacts:
    """The live table and the state dir's records, read once."""

    live: LiveTable | None
    records: Records
    # The ruleset generation read just before `live` (None: unreadable): while it is still
    # the live one, no transaction has committed and `live` is still what the kernel holds.
    generation: RulesetGeneration | None = None


@dataclass(frozen=True)
class ChangePlan:
    """What executing `target` over `facts` would do."""

    target: Target
    facts: RulesetFacts
    state: RulesetState  # the live table against the target's rendering

    @property
    def kernel_change(self) -> bool:
        """Whether the kernel's table must change (leftover sets count: they are removed)."""
        live = self.facts.live
        if self.target.table is None:
            return live is not None
        return self.state is not RulesetState.IN_SYNC or bool(live and live.leftover_sets)

    @property
    def record_change(self) -> bool:
        """Whether the records must change although the kernel need not.

        Also when a boot fallback keeps the table in force, or a later change replaces a
        fallback by the same table: the record must say whether a fallback is in force.
        """
        records, applied = self.facts.records, self.facts.records.applied
        if self.target.table is None:
            return applied is not None or records.pending is not None
        if applied is None or records.pending is not None:
            return True
        fallback = Action.BOOT_FALLBACK
        return (applied.source is fallback) != (self.target.action is fallback)


@dataclass(frozen=True)
class ApplyOutcome:
    """What an execute did: whether the kernel changed, the state it found, and warnings."""

    changed: bool
    state_before: RulesetState
    applied: AppliedState | None
    warnings: tuple[str, ...] = ()
    # The ruleset generation read just before the listing found equal to `applied`'s.
    generation: RulesetGeneration | None = None


def load_target(path: Path) -> tuple[LoadedPolicy, Target]:
    """Read a policy file once: its validated policy and the target built from that same text."""
    file = str(path)
    services = services_digest()
    data = read_policy_bytes(path)
    loaded = parse_policy(data, file)
    inputs: str | None = inputs_fingerprint(file, data, loaded.set_files, services)
    if services != services_digest():  # changed while loading: no proof of what was read
        inputs = None
    return loaded, Target(render_table(loaded.policy), file, data.decode("utf-8"), inputs=inputs)


def gather_facts(
    kernel: NftKernel, state: StateDir, settled: Records | None = None
) -> RulesetFacts:
    """The live table (through the command's one handle) and every record, read once.

    Not listed at all while the generation proves it the applied record (facts/proven.py);
    a listed table is compared with the record's listing, reproduced if it was not kept
    (or taken from `settled`, records read earlier in this command).
    """
    generation = read_generation()  # first: a commit after it makes a new generation
    records = state.read_records(settled)
    live = proven_live(records, generation)
    if live is None:
        live = read_live_table(kernel)
        records = settle_records(records, live, settled)
    return RulesetFacts(live, records, generation)


def _facts_again(kernel: NftKernel, state: StateDir, earlier: RulesetFacts) -> RulesetFacts:
    """Facts read again (under the lock); the earlier listing is reused when provably current.

    No commit since the earlier generation means the same live table: only the records are
    read again, not the listing of a table that may hold a million elements.
    """
    if earlier.generation is not None and read_generation() == earlier.generation:
        records = settle_records(state.read_records(earlier.records), earlier.live, earlier.records)
        return RulesetFacts(earlier.live, records, earlier.generation)
    return gather_facts(kernel, state, earlier.records)


def _seen(facts: RulesetFacts) -> LiveTable | None:
    """The live table as a plan sees it: one in force by the applied record is that record's,
    whether proven by generation or listed (so a commit elsewhere is not a change)."""
    live, applied = facts.live, facts.records.applied
    if live is None or applied is None or live.listing is None:
        return live
    in_force = table_in_force(facts.records, live)
    if in_force is None or in_force.digest != applied.digest or live.listing != applied.listing:
        return live
    return replace(live, listing=None)


def plan_change(target: Target, facts: RulesetFacts) -> ChangePlan:
    """Pure: the plan of making `target` live over `facts`."""
    return ChangePlan(target, facts, classify(target.table, facts.records, facts.live))


def execute(
    plan: ChangePlan,
    kernel: NftKernel,
    state: StateDir,
    *,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    promote: bool = True,
    verify_unchanged: bool = True,
    keep_unrecorded: bool = False,
) -> ApplyOutcome:
    """Carry `plan` out under the lock (see the module doc for the order and its guarantees).

    `verify_unchanged`: fail with ChangedSincePlan if the live table is not what the plan
    saw (off for boot, which plans under the lock). `keep_unrecorded` (boot): over an absent
    table, a change that cannot be recorded is kept rather than undone, since no table at
    all is the most open state there is.
    """
    with state.lock(lock_timeout):
        checkpoint("locked")
        facts = _facts_again(kernel, state, plan.facts)
        if verify_unchanged and _seen(facts) != _seen(plan.facts):
            raise ChangedSincePlan(
                "table inet portguard changed since the plan was made; nothing was applied,"
                " run the command again"
            )
        plan = plan_change(plan.target, facts)
        warnings = list(facts.records.warnings)
        if not plan.kernel_change and not plan.record_change:  # a no-op: no history row
            applied = _proven_again(state, facts)
            return ApplyOutcome(False, plan.state, applied, tuple(warnings), facts.generation)
        keep = keep_unrecorded and plan.facts.live is None
        try:
            done = _carry_out(plan, kernel, state, promote=promote, keep=keep, warnings=warnings)
        except PortguardError as error:  # history after the rollback; it never stops a change
            note_change(state, plan.target, f"failed: {error}")
            raise
        noted = note_change(state, plan.target, "applied" if done.changed else "recorded")
        return replace(done, warnings=done.warnings + noted)


def _proven_again(state: StateDir, facts: RulesetFacts) -> AppliedState | None:
    """The applied record, now proven at `facts`' generation when the table had to be listed
    and was found to be it (something else had committed): the commands after this one need
    not list it again. Best effort, under the lock; the record is otherwise unchanged."""
    applied, live = facts.records.applied, facts.live
    if applied is None or live is None or live.listing is None or facts.generation is None:
        return applied
    if facts.records.pending is not None or live.leftover_sets:
        return applied
    if applied.generation == facts.generation or live.listing != applied.listing:
        return applied
    if table_in_force(facts.records, live) is not applied.table:
        return applied
    proven = replace(applied, generation=facts.generation)  # listing: the compared one
    try:
        state.record_applied(proven)
    except StateError:
        return applied
    return proven


def _carry_out(
    plan: ChangePlan,
    kernel: NftKernel,
    state: StateDir,
    *,
    promote: bool,
    keep: bool,
    warnings: list[str],
) -> ApplyOutcome:
    """Intent, kernel change, record (or rollback): steps 1-3 of the module doc, under the lock."""
    try:
        state.record_pending(_pending(plan.target))
    except StateError as error:
        if not keep:
            raise
        warnings.append(f"{error}; applying without a record")
    checkpoint("pending-written")
    proof = None
    if plan.kernel_change:
        before = read_generation()  # the apply's own commits must account for every step
        proof = _proven(before, _change_kernel(kernel, plan, state))
    try:
        applied, generation = _record(
            kernel, plan.target, state, proof, promote=promote, warnings=warnings
        )
    except PortguardError as error:
        if keep:
            warnings.append(f"{error}; the new rules stay in force unrecorded")
            return ApplyOutcome(plan.kernel_change, plan.state, None, tuple(warnings))
        if plan.kernel_change:
            _roll_back(kernel, plan.facts, error)
        raise
    return ApplyOutcome(plan.kernel_change, plan.state, applied, tuple(warnings), generation)


def _pending(target: Target) -> PendingChange:
    return PendingChange(target.policy_path, target.policy_text, target.table, now_text())


@dataclass(frozen=True)
class _ProvenLoad:
    """A load whose commits were the only ones: the generation after it, and its set suffix."""

    generation: RulesetGeneration
    suffix: str


def _proven(before: RulesetGeneration | None, loaded: Loaded | None) -> _ProvenLoad | None:
    """The proof that the live table is exactly what `loaded` put there, if the generation
    moved by exactly its number of commits (None: something else committed, or unknown)."""
    if loaded is None or not can_reproduce():
        return None  # without a private namespace a later comparison needs the listing now
    commits = Commits(before, read_generation(), loaded.commits)
    if not commits.alone or commits.after is None:
        return None
    return _ProvenLoad(commits.after, loaded.suffix)


def _change_kernel(kernel: NftKernel, plan: ChangePlan, state: StateDir) -> Loaded | None:
    """Make the target live (its load, None for a removal); on a refusal forget the intent
    (best effort) and re-raise."""
    try:
        if plan.target.table is None:
            kernel.delete_table()
            checkpoint("rules-swapped")
            return None
        return load_table(kernel, plan.target.table, plan.facts.live)
    except KernelRefused:
        with contextlib.suppress(StateError):
            state.clear_pending()
        raise


def _record(
    kernel: NftKernel,
    target: Target,
    state: StateDir,
    loaded: _ProvenLoad | None,
    *,
    promote: bool,
    warnings: list[str],
) -> tuple[AppliedState | None, RulesetGeneration | None]:
    """Record what is live now (or the removal), promote it, and clear the intent.

    A proven load is recorded by its generation, without listing the table; otherwise the
    table is listed. Also returns the generation at which the record was true (None for a
    removal, or when the listing has leftover sets, which the next apply must still remove).
    """
    generation = None
    if target.table is None:
        state.record_removed()
        checkpoint("recorded")
        applied = None
    else:
        if loaded is not None:
            generation, listing, suffix = loaded.generation, None, loaded.suffix
        else:
            generation = read_generation()  # before the listing the record keeps
            live = read_live_table(kernel)
            if live is None:
                raise EmptyListing(
                    "nftables accepted the ruleset but table inet portguard is missing"
                )
            if live.leftover_sets:
                generation = None
            listing, suffix = live.listing, live.used_generation or GENERATIONS[0]
        applied = AppliedState(
            policy_path=target.policy_path,
            policy_text=target.policy_text,
            table=target.table,
            listing=listing,
            applied_at=now_text(),
            source=target.action,
            generation=generation,
            suffix=suffix,
        )
        state.record_applied(applied)
        checkpoint("recorded")
        if promote:
            state.promote_last_known_good(applied)
            checkpoint("promoted")
    try:
        state.clear_pending()
    except StateError as error:  # the record names the live table; a stale intent is harmless
        warnings.append(str(error))
    return applied, generation


def _roll_back(kernel: NftKernel, before: RulesetFacts, cause: PortguardError) -> None:
    """After a record failure, put the rules in force before back; raise RecordFailed."""
    previous = table_in_force(before.records, before.live)
    try:
        if before.live is None:
            kernel.delete_table()
        elif previous is not None:
            prefer = before.live.used_generation
            load_table(kernel, previous, read_live_table(kernel), prefer)
        elif before.live.listing is not None:  # not portguard's: its listing, in one batch
            replace_whole(kernel, before.live.listing)
    except PortguardError as failure:
        raise RecordFailed(
            f"{cause}; putting the previous rules back failed too ({failure});"
            " the new rules stay in force"
        ) from None
    checkpoint("rolled-back")
    raise RecordFailed(f"{cause}; the previous rules were put back, nothing changed") from None
