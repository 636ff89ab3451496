"""Apply a policy under the state dir's lock (sets, then an atomic rule swap); record it."""

from __future__ import annotations

from dataclasses import dataclass

from portguard.backends.nftables import apply_table, delete_table, list_table, open_nftables
from portguard.drift import RulesetState, classify
from portguard.errors import PortguardError
from portguard.model import Policy
from portguard.render.nftables import render_nftables
from portguard.state import AppliedState, StateDir, listing_digest, now_text

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "ApplyOutcome",
    "EmptyListing",
    "apply_policy",
    "apply_rendered",
    "state_before_apply",
]

DEFAULT_LOCK_TIMEOUT = 30.0


class EmptyListing(PortguardError):
    """The kernel accepted the transaction, yet the table is not there afterwards."""


@dataclass(frozen=True)
class ApplyOutcome:
    """What an apply did: whether the kernel was touched, and the state it found first."""

    changed: bool
    state_before: RulesetState
    applied: AppliedState


def apply_policy(
    policy: Policy,
    policy_text: str,
    state: StateDir,
    *,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
) -> ApplyOutcome:
    """Render `policy` and apply it (see apply_rendered)."""
    return apply_rendered(
        render_nftables(policy), policy.path, policy_text, state, lock_timeout=lock_timeout
    )


def state_before_apply(policy: Policy, state: StateDir) -> RulesetState:
    """How the live table compares with `policy` now (in-sync means apply has nothing to do)."""
    open_nftables()
    return classify(render_nftables(policy), state.read_applied(), list_table())


def apply_rendered(
    rendered: str,
    policy_path: str,
    policy_text: str,
    state: StateDir,
    *,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    promote: bool = True,
) -> ApplyOutcome:
    """Replace the table with `rendered` unless it is already in sync; record and promote it.

    Under the state dir's lock: a live table that is what was recorded and a rendering equal
    to the record mean nothing to do. Otherwise one transaction replaces the table, the
    kernel's listing is recorded, and (with `promote`) it becomes last-known-good. If
    recording fails, the table is put back as it was before and the error is raised.
    """
    open_nftables()  # fail early and clearly: not root, or python-nftables missing
    with state.lock(lock_timeout):
        recorded = state.read_applied()
        live_before = list_table()
        before = classify(rendered, recorded, live_before)
        if before is RulesetState.IN_SYNC and recorded is not None:
            return ApplyOutcome(changed=False, state_before=before, applied=recorded)
        apply_table(rendered, live_before)
        try:
            applied = _record(rendered, policy_path, policy_text, state, promote=promote)
        except BaseException:
            _restore(live_before)
            raise
        return ApplyOutcome(changed=True, state_before=before, applied=applied)


def _record(
    rendered: str, policy_path: str, policy_text: str, state: StateDir, *, promote: bool
) -> AppliedState:
    listing = list_table()
    if listing is None:
        raise EmptyListing("nftables accepted the ruleset but table inet portguard is missing")
    applied = AppliedState(
        policy_path=policy_path,
        policy_text=policy_text,
        rendered=rendered,
        listing=listing,
        listing_sha256=listing_digest(listing),
        applied_at=now_text(),
    )
    state.record_applied(applied)
    if promote:
        state.promote_last_known_good(applied)
    return applied


def _restore(live_before: str | None) -> None:
    """Put the table back as it was listed before the failed apply (or delete it if none)."""
    if live_before is None:
        delete_table()
    else:
        apply_table(live_before, list_table())
