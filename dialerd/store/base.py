"""What every part of the store shares: its errors and the values its ports pass.

The ports themselves (one per user of the store) are in ``dialerd.store.ports``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from dialerd.core.targets import CallingRules, RetryRule
from dialerd.model import (
    Campaign,
    Campaigncall,
    CampaigncallResult,
    OutdialTarget,
    Outplan,
)

MAX_PAGE_SIZE = 100


class StoreError(Exception):
    """The store cannot do what was asked (unreachable, full disk, read-only...)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or written right now; nothing was changed."""


class StoreBusy(StoreUnavailable):
    """Every connection of this process's pool to the store stayed busy for the pool's
    timeout: the call never reached the server (which may be up and idle); nothing was
    changed. A bigger pool (``[store.redis] pool_size``), or fewer calls at once, helps;
    the network does not."""


class Conflict(StoreError):
    """The change conflicts with the resource's current state (for example: in use)."""


class CampaignChanged(Conflict):
    """A conditional campaign write found the campaign changed since it was read."""


class InUse(Conflict):
    """A delete refused because running (or stopping) campaigns use the resource."""

    def __init__(self, kind: str, resource_id: str, users: Sequence[str]) -> None:
        self.kind = kind
        self.resource_id = resource_id
        self.users = tuple(users)
        super().__init__(
            f"{kind} {resource_id} is used by running campaign(s) {', '.join(self.users)}"
        )


class CampaignNotRunning(Conflict):
    """A claim for a campaign whose status is not ``run``: nothing was claimed."""


class LeaseLost(StoreError):
    """The write was fenced off: the campaign's lease is no longer this owner's (expired,
    taken over, or released). Nothing was changed."""


class Fence(msgspec.Struct, frozen=True):
    """A held campaign lease; fenced writes carry it and are refused once it is stale."""

    campaign_id: str
    # An instance id, e.g. "<hostname>:<pid>:<random>".
    owner: str
    # Strictly increasing per campaign, each time the lease changes hands.
    token: int


class AttemptPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What ``start_attempt`` needs: which campaign dials, with which outplan.

    ``campaigncall_id`` (and ``reference_id`` / ``activeflow_id``) are chosen by the
    caller so the same ids can key the origination (idempotency).
    """

    campaign: Campaign
    outplan: Outplan
    campaigncall_id: str
    reference_id: str
    activeflow_id: str
    now: datetime
    fence: Fence | None = None
    # The calling rules of the campaign's customer (hours); None: none apply.
    rules: CallingRules | None = None


class AsStored(msgspec.Struct, frozen=True):
    """A campaign (None: gone) and its outplan (None: gone or not the campaign's
    customer's) as stored now, as ``campaign_and_outplan`` reads them: what
    ``start_attempts_if_unchanged`` answers when they changed since the plans' read."""

    campaign: Campaign | None
    outplan: Outplan | None


class FinishResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``finish_attempt`` did.

    ``finished`` is False when the attempt had already ended (a repeated or late
    hangup): nothing was changed and ``campaigncall`` is the stored, finished one.
    ``target`` is the target after the change (``None`` if it no longer exists).
    """

    finished: bool
    campaigncall: Campaigncall
    target: OutdialTarget | None


class AttemptEnd(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt's end, as ``finish_attempts`` takes it: the arguments of
    ``finish_attempt`` (see there).

    ``answered``: the call's answer came in the same burst of events as its end and was
    not written on its own (no ``mark_answered``): the end is the one write of both.
    """

    campaigncall_id: str
    result: CampaigncallResult
    reason: str
    rule: RetryRule
    now: datetime
    fence: Fence | None = None
    give_back_try: bool = False
    calling_rules: CallingRules | None = None
    answered: bool = False
