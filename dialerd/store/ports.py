"""The store's ports: what each user of persistent storage sees of it.

One protocol per part of the store (resources, targets, campaigncalls, the dial ledger,
leases, the do-not-call list, quota counts, pacing priors), and one per user made of the
parts it uses: the scheduler (``SchedulerStore``), the API (``ApiStore``), campaign commands
(``ControlStore``). ``Store`` is all of them: what the daemon opens, and what both
backends (``dialerd.store.sqlite``, ``dialerd.store.redis``) implement; one conformance
suite per part (``tests/integration/store/test_store_*.py``) runs on both.

Every method is scoped: reads and writes of a customer's resources take that
``customer_id``; the engine's own reads pass ``customer_id=None`` to mean "any customer".

Semantics every backend shares:

- Timestamps are the reference strings of ``dialerd.model``; the caller passes ``now``.
- Soft delete: ``delete_*`` sets ``tm_delete`` to ``now``; deleted resources are not
  returned by ``get_*`` or ``list_*``.
- Listing is newest first by ``tm_create`` (ties broken by ``id`` descending), at most
  ``page_size`` items; ``page_token`` is the ``next_page_token`` of the previous page.
  The token is the last item's ``tm_create``; when items share a ``tm_create`` it also
  carries the id (``"<tm_create>|<id>"``) so nothing is skipped or repeated. A client
  may pass a bare ``tm_create`` as token: items strictly older are returned.
- Targets: the stores evaluate no dialing rule. Beside each target they keep the
  ``dialerd.core.targets.Placement`` the core decided (when it was created, claimed or
  its attempt ended) and index it: the ready targets in (touched, creation) order, the
  waiting ones by ``due``. A claim moves the waiting targets whose ``due`` has come to
  the ready ones, takes the first ready target, asks the core for its slot, and writes
  the claim, all in one atomic step; ``finish_attempt`` writes what the core decides.
- Leases: one instance at a time holds a campaign's lease (``acquire_lease``) and
  renews it before ``ttl`` runs out. Its ``Fence`` carries a token that is the same for
  as long as one owner holds the lease (renewals, and also re-taking it when nobody
  else held it in between) and greater than every earlier token when another owner
  takes it. Redis expires leases by its own clock (several hosts share it); SQLite
  serves one host and compares the ``now`` the caller passes (the wall clock when a
  call has none).
- Fencing: the engine's writes (``start_attempt`` through ``AttemptPlan.fence``,
  ``mark_answered``, ``finish_attempt``, ``update_campaign``) may carry the campaign's
  ``Fence``; the check and the write are one atomic step, and a fence that is not the
  campaign's valid lease now (expired, taken over, released, or of another campaign)
  raises ``LeaseLost`` with nothing changed. Unfenced writes (the API's) are not checked.
- Do-not-call numbers are kept per customer, keyed by the E.164 number (callers
  normalize it); they are listed like other resources with the number in place of the
  id (``"<tm_create>|<number>"``), and removing one deletes it (no soft delete).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from datetime import datetime
from typing import Protocol

from dialerd.core.abandonment import DayCount
from dialerd.core.predictive import PacingPrior
from dialerd.core.quotas import Usage
from dialerd.core.targets import CallingRules, RetryRule
from dialerd.events.model import CustomerWebhook, FailedEvent, OutboxEntry
from dialerd.insight import TargetCounts
from dialerd.model import (
    Campaign,
    Campaigncall,
    CampaigncallResult,
    CampaignStatus,
    DncNumber,
    Outdial,
    OutdialTarget,
    Outplan,
    Page,
)
from dialerd.store.base import (
    MAX_PAGE_SIZE,
    AsStored,
    AttemptEnd,
    AttemptPlan,
    Fence,
    FinishResult,
    LeaseLost,
)


class Lifecycle(Protocol):
    """Opening and closing the store (the daemon and tests)."""

    backend: str

    async def open(self) -> None:
        """Connect and apply schema migrations; raise ``StoreError`` if impossible."""

    async def close(self) -> None:
        """Release connections. Idempotent."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers now."""


class CampaignReads(Protocol):
    """The reads of campaigns and outplans every user makes."""

    async def get_campaign(self, customer_id: str | None, campaign_id: str) -> Campaign | None: ...

    async def get_outplan(self, customer_id: str | None, outplan_id: str) -> Outplan | None: ...

    async def campaigns_with_status(self, statuses: Sequence[CampaignStatus]) -> list[Campaign]:
        """Every not-deleted campaign, of any customer, whose status is one of these."""


class Resources(CampaignReads, Protocol):
    """Campaigns, outplans and outdials: created, read, replaced, deleted, listed."""

    async def create_campaign(self, campaign: Campaign) -> Campaign: ...

    async def update_campaign(
        self,
        campaign: Campaign,
        *,
        fence: Fence | None = None,
        if_updated: str | None = None,
        cause: str = "",
    ) -> Campaign:
        """Replace the stored campaign (same id, not deleted) with this one.

        With ``fence``, only while that lease is still held; else ``LeaseLost``. With
        ``if_updated``, only while the stored campaign's ``tm_update`` is that ("" for a
        campaign never updated): nobody wrote it since it was read, on any instance;
        else ``CampaignChanged``. A write that sets the campaign running (or running on
        another outplan or outdial) must find them (its customer's, not deleted) in the
        same atomic step, else ``CampaignChanged`` (a delete came first: read again). SQLite takes
        the campaign's ``tm_update`` as the moment of the write. ``cause`` (why it changed)
        goes with its ``campaign_updated`` event.
        """

    async def delete_campaign(
        self, customer_id: str, campaign_id: str, now: datetime
    ) -> Campaign | None:
        """Soft-delete a stopped campaign; ``Conflict`` unless its status is ``stop``
        (checked in the same atomic step as the write)."""

    async def list_campaigns(
        self, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[Campaign]: ...

    async def create_outplan(self, outplan: Outplan) -> Outplan: ...

    async def update_outplan(self, outplan: Outplan) -> Outplan: ...

    async def delete_outplan(
        self, customer_id: str, outplan_id: str, now: datetime
    ) -> Outplan | None:
        """Soft-delete it unless a ``run`` or ``stopping`` campaign of the customer uses
        it: then ``InUse`` naming them, checked in the same atomic step as the write (a
        campaign set running meanwhile sees it deleted; see ``update_campaign``)."""

    async def list_outplans(
        self, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[Outplan]: ...

    async def create_outdial(self, outdial: Outdial) -> Outdial: ...

    async def get_outdial(self, customer_id: str | None, outdial_id: str) -> Outdial | None: ...

    async def update_outdial(self, outdial: Outdial) -> Outdial: ...

    async def delete_outdial(
        self, customer_id: str, outdial_id: str, now: datetime
    ) -> Outdial | None:
        """As ``delete_outplan``: ``InUse`` while a ``run`` or ``stopping`` campaign of the
        customer dials it, checked in the same atomic step as the write."""

    async def list_outdials(
        self, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[Outdial]: ...


class Targets(Protocol):
    """An outdial's targets, as the API handles them."""

    async def create_targets(self, targets: Sequence[OutdialTarget]) -> int:
        """Insert targets (all or none); they keep the given order as creation order."""

    async def import_targets(self, batches: AsyncIterable[Sequence[OutdialTarget]]) -> int:
        """Insert the targets of every batch, all or none, in order; return how many.

        Each batch is staged as it comes (invisible: not listed, found or dialed), so
        memory holds one batch whatever the import's size and other work goes on between
        batches; once ``batches`` ends, everything staged is published in one step. If
        ``batches`` raises (or the import is cancelled, or a target id exists), what was
        staged is discarded and the error propagates.
        """

    async def get_target(self, outdial_id: str, target_id: str) -> OutdialTarget | None: ...

    async def delete_target(
        self, outdial_id: str, target_id: str, now: datetime
    ) -> OutdialTarget | None:
        """Soft-delete a target; raise ``Conflict`` while it is ``progressing``."""

    async def list_targets(
        self, outdial_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[OutdialTarget]: ...


class Campaigncalls(Protocol):
    """The attempts, as the API shows and deletes them."""

    async def get_campaigncall(
        self, customer_id: str | None, campaigncall_id: str
    ) -> Campaigncall | None: ...

    async def list_campaigncalls(
        self,
        customer_id: str,
        campaign_id: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        page_token: str = "",
    ) -> Page[Campaigncall]: ...

    async def delete_campaigncall(
        self, customer_id: str, campaigncall_id: str, now: datetime
    ) -> Campaigncall | None:
        """Soft-delete a finished campaigncall; raise ``Conflict`` while it is active."""


class Ledger(Protocol):
    """The dial ledger: the engine's atomic steps (behaviour.md §4-§6) and its counts."""

    async def campaign_and_outplan(
        self, campaign_id: str
    ) -> tuple[Campaign | None, Outplan | None]:
        """What a tick reads, in one step: the campaign (any customer; None if gone) and
        its outplan (None if gone or not the campaign's customer's)."""

    async def start_attempt(self, plan: AttemptPlan) -> Campaigncall | None:
        """Claim the next eligible target of the campaign's outdial and create its attempt.

        In one atomic step: check that the stored campaign is ``run`` (else
        ``CampaignNotRunning``: from the moment a stop is stored nothing is claimed),
        take the first ready target (waiting ones whose ``due`` has come count as
        ready), let ``dialerd.core.targets.decide_claim`` choose its slot under the
        plan's outplan (a target it finds spent is written done and the next is taken),
        increment ``try_count_N``, set it ``progressing`` and create the campaigncall
        ``dialing`` with ``try_count`` = the new count. ``None`` when no target is ready
        now.
        """

    async def start_attempts(self, plans: Sequence[AttemptPlan]) -> list[Campaigncall]:
        """``start_attempt`` for each plan in turn (one tick's claims, all of one
        campaign), in as few round trips as the store can: the attempts claimed, in
        order, until the first plan that finds no target ready. ``CampaignNotRunning``
        only when the first plan is refused; a stop stored between two plans ends the
        list there."""

    async def start_attempts_if_unchanged(
        self, plans: Sequence[AttemptPlan]
    ) -> list[Campaigncall] | AsStored:
        """``start_attempts``, only while the stored campaign and its outplan are still
        the plans' (equal to ``plans[0].campaign`` and ``.outplan``): a tick that claims
        on what it read last. Else nothing is claimed and they are answered as stored
        now (``AsStored``, what ``campaign_and_outplan`` reads), for the tick to go on
        with. Redis checks and claims in one script call (the tick's one round trip);
        SQLite reads, compares, then claims."""

    async def mark_answered(
        self, campaigncall_id: str, now: datetime, *, fence: Fence | None = None
    ) -> Campaigncall | None:
        """``dialing`` -> ``progressing``; ``None`` if the attempt is not ``dialing``."""

    async def mark_answered_many(
        self, answers: Sequence[tuple[str, Fence | None]], now: datetime
    ) -> list[Campaigncall | LeaseLost | None]:
        """``mark_answered`` of each (campaigncall id, fence), in as few round trips as
        the store can (SQLite: one transaction; Redis: one pipelined round trip of the
        answer script): the answers in order, each what ``mark_answered`` returns for
        it or the ``LeaseLost`` it would raise (that one changed nothing). Any other
        error is raised for the whole list, and then none of it (SQLite) or a part of
        it (Redis) was written: writing it again is safe."""

    async def finish_attempt(
        self,
        campaigncall_id: str,
        result: CampaigncallResult,
        reason: str,
        rule: RetryRule,
        now: datetime,
        *,
        fence: Fence | None = None,
        give_back_try: bool = False,
        calling_rules: CallingRules | None = None,
    ) -> FinishResult | None:
        """End an active attempt exactly once (behaviour.md §5).

        The campaigncall becomes ``done`` with ``result`` and ``reason``; its target,
        if still ``progressing``, takes the try counts and placement that
        ``dialerd.core.targets.place_after`` decides under ``rule`` (``give_back_try``:
        a call a stop ended before it was answered). In the same step, the number is
        locked until ``calling_rules.lockout_after`` says (an abandoned call). ``None``
        if the campaigncall does not exist.
        """

    async def finish_attempts(
        self, ends: Sequence[AttemptEnd]
    ) -> list[FinishResult | LeaseLost | None]:
        """``finish_attempt`` for each end (one burst of events), in as few round trips
        as the store can (SQLite: one transaction; Redis: one pipelined round trip of
        the finish script). Each end is its own atomic step: the answers, in order, are
        what ``finish_attempt`` returns for it, or the ``LeaseLost`` it would raise (that
        end changed nothing; the others are written). Any other error is raised for the
        whole burst, and then none of it (SQLite) or a part of it (Redis) was written:
        writing the burst again is safe, an end already written is reported
        ``finished=False``."""

    async def active_attempts(self, campaign_id: str | None = None) -> list[Campaigncall]:
        """Attempts ``dialing`` or ``progressing`` (of one campaign, or of all)."""

    async def count_dialing(self, campaign_id: str) -> int:
        """How many of the campaign's attempts are ``dialing``."""

    async def target_counts(self, outdial_id: str, now: datetime) -> TargetCounts:
        """The outdial's not-deleted targets: idle and not waiting at ``now`` (due, or
        with nothing to dial), idle and waiting (their ``due`` later), progressing, done.

        A scan of the list: for progress reports, not for every tick."""

    async def outdial_exhausted(self, campaign_id: str, outdial_id: str) -> bool:
        """True when ``dialerd.core.targets.exhausted`` says so (behaviour.md §6): no
        target of the outdial is ready or waiting, none is ``progressing`` (nor staged
        by an import being published), and the campaign has no active attempt."""

    async def add_abandonment(
        self, campaign_id: str, day: str, live: int, abandoned: int
    ) -> DayCount:
        """Add live answers and abandoned calls to the campaign's count of ``day``
        (``YYYY-MM-DD``) atomically; returns the day's new count (behaviour.md §10).

        Counts outlive the campaign's lease: a restart or another instance goes on from
        them. Unfenced: a call's measurement stands whichever instance reports it."""

    async def abandonment_days(self, campaign_id: str, since: str) -> list[DayCount]:
        """The campaign's counts of ``since`` and later days, oldest first."""

    async def prune_locks(self, now: datetime) -> int:
        """Delete the number locks (after an abandoned call) that ended by ``now``, so
        they do not pile up; return how many. Housekeeping calls it; a lock that a
        finish extends meanwhile is kept."""


class PacingPriors(Protocol):
    """A campaign's pacing prior: what its predictive model knew when its last day
    ended (or it stopped), so the next day does not start blind (behaviour.md §10).
    One per campaign; it outlives the campaign's lease (another instance reads it)."""

    async def save_pacing_prior(self, campaign_id: str, prior: PacingPrior) -> None:
        """Keep ``prior`` as the campaign's latest, replacing the one before."""

    async def pacing_prior(self, campaign_id: str) -> PacingPrior | None:
        """The campaign's latest prior; None if none was kept, or if it cannot be read
        (kept by another version): a prior is only a head start."""


class LeaseReads(Protocol):
    """Who holds a campaign's lease (the API's state answer reads it)."""

    async def lease_owner(self, campaign_id: str, now: datetime | None = None) -> str | None:
        """The owner of the campaign's valid lease, or None (``now``: see Leases above)."""


class Leases(LeaseReads, Protocol):
    """Campaign leases: one instance ticks a campaign at a time."""

    async def acquire_lease(
        self, campaign_id: str, owner: str, ttl: float, now: datetime
    ) -> Fence | None:
        """Take the campaign's lease for ``ttl`` seconds, or renew it if ``owner`` holds it.

        None while another owner's lease is valid. The token is strictly greater than
        every token handed out before for that campaign, and changes only when the
        lease changes hands (a renewal keeps it).
        """

    async def release_lease(self, fence: Fence) -> None:
        """Give the lease up (a no-op unless ``fence`` still holds it), so another
        instance can take it at once."""


class Failover(Protocol):
    """A store that can fail over to a replica that lacks the latest writes (Redis
    with Sentinel): the scheduler writes its leases and live attempts back before it
    claims again (behaviour.md, "Redis failover")."""

    @property
    def failed_over(self) -> bool:
        """A new primary was seen and this instance has not written back to it yet."""

    async def write_back(
        self, fences: Sequence[Fence], ttl: float, attempts: Sequence[Campaigncall]
    ) -> None:
        """Re-assert the leases ``fences`` (for ``ttl`` seconds) and write the live
        ``attempts`` again where the store lost them, their targets out of reach of any
        claim; raise ``StoreError`` if the store cannot take it now."""


class DoNotCall(Protocol):
    """Do-not-call numbers, per customer (behaviour.md §10)."""

    async def add_dnc_numbers(self, entries: Sequence[DncNumber]) -> list[DncNumber]:
        """List these numbers, all or none; a number already listed keeps its stored
        entry (adding it again is not an error). Returns each number's stored entry."""

    async def remove_dnc_number(self, customer_id: str, number: str) -> DncNumber | None:
        """Take a number off the customer's list; the removed entry, or None if unlisted."""

    async def get_dnc_number(self, customer_id: str, number: str) -> DncNumber | None: ...

    async def list_dnc_numbers(
        self, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[DncNumber]: ...

    async def import_dnc_numbers(self, batches: AsyncIterable[Sequence[DncNumber]]) -> int:
        """List the numbers of every batch, all or none, as ``add_dnc_numbers`` does;
        return how many entries the batches held.

        As ``import_targets``: batches are staged as they come (not listed, not checked
        by ``dnc_listed``); once ``batches`` ends the import is published, and its numbers
        become listed a chunk at a time before this returns (a restart finishes a
        published import). If ``batches`` raises or the import is cancelled first, what
        was staged is discarded and the error propagates.
        """

    async def dnc_listed(self, customer_id: str, numbers: Sequence[str]) -> set[str]:
        """Which of these numbers are on the customer's do-not-call list."""


class Quotas(Protocol):
    """What a customer holds (behaviour.md §10, Quotas)."""

    # Which backend counts (a label of the quota check metrics).
    backend: str

    async def quota_usage(self, customer_id: str, outdial_id: str | None = None) -> Usage:
        """What the customer holds, from counts the store keeps indexed: its campaigns
        (and those ``run`` or ``stopping``), outdials, the targets of those outdials
        (staged imports included) and do-not-call numbers; with ``outdial_id``, also
        that outdial's targets. Deleted resources do not count."""


class Outbox(Protocol):
    """The durable outbox of events (``dialerd.events``) and their delivery's progress.

    Every step that changes a campaign (create, update, delete), a campaigncall (claim,
    answer, finish) or a target (finish) appends its event in the same atomic step
    (``campaign_state`` events are appended on their own). Positions are per customer,
    strictly increasing, and compare as ``position_key`` says; "" is before the first.
    The sender's writes carry the customer's delivery lease (``acquire_lease`` of
    ``"events:<customer_id>"``) and are refused with ``LeaseLost`` once it is gone.
    """

    async def append_event(
        self, event_type: str, customer_id: str, campaign_id: str, body: bytes
    ) -> str:
        """Append one event; its position."""

    async def read_events(
        self, customer_id: str, after: str, limit: int, campaign_id: str | None = None
    ) -> list[OutboxEntry]:
        """The customer's events after position ``after`` (of one campaign or all), oldest
        first, at most ``limit``."""

    async def event_customers(self) -> list[str]:
        """Every customer that has had an event."""

    async def delivered_position(self, customer_id: str) -> str:
        """The position up to which the customer's events are delivered or set aside."""

    async def mark_delivered(
        self, customer_id: str, position: str, passed: int, fence: Fence, now: datetime
    ) -> None:
        """Move the customer's delivered position forward to ``position`` (never back),
        past ``passed`` events."""

    async def set_aside(self, entry: OutboxEntry, error: str, now: datetime, fence: Fence) -> None:
        """Keep the entry as failed; the caller then moves the delivered position past it
        (with the events around it: one campaign's failure does not move the position
        past another campaign's events still being sent)."""

    async def failed_events(self, customer_id: str) -> list[FailedEvent]:
        """The customer's events set aside, oldest first."""

    async def redeliver_event(self, customer_id: str, position: str) -> FailedEvent | None:
        """Mark a failed event to be sent again; None if there is no such failed event."""

    async def forget_failed(self, customer_id: str, position: str, error: str | None) -> None:
        """A failed event sent again: ``error`` None drops it (delivered), else it stays
        failed with this error and no longer marked for redelivery."""

    async def outbox_backlog(self, customer_id: str) -> int:
        """How many of the customer's events are after its delivered position."""

    async def prune_events(self, customer_id: str, before: str) -> int:
        """Delete the customer's delivered events before position ``before``."""


class WebhookSettings(Protocol):
    """The customers' webhook settings (what the API sets, the sender reads)."""

    async def get_webhook(self, customer_id: str) -> CustomerWebhook | None: ...

    async def put_webhook(self, webhook: CustomerWebhook) -> CustomerWebhook: ...


class EventStore(Leases, Outbox, WebhookSettings, Protocol):
    """What the event sender and the event stream use."""


class SchedulerStore(CampaignReads, Ledger, Leases, PacingPriors, Failover, Protocol):
    """What the scheduler uses: the ledger, leases, the pacing priors, failover write-back,
    the reads of a tick."""

    backend: str
    # How many calls of any kind the store serves at once (a Redis store's pool, less
    # the connections it holds for script calls: one more waits for a free connection,
    # and fails ``StoreBusy`` after the pool's timeout); None when nothing bounds them
    # but the store itself (SQLite).
    concurrent_calls: int | None

    async def get_target(self, outdial_id: str, target_id: str) -> OutdialTarget | None: ...


class ApiStore(
    Resources,
    Targets,
    Campaigncalls,
    DoNotCall,
    Quotas,
    LeaseReads,
    Outbox,
    WebhookSettings,
    Protocol,
):
    """What the HTTP API uses."""


class ControlStore(Resources, Quotas, LeaseReads, Protocol):
    """What campaign commands use: the resources, the attempts a stop waits for, who
    holds a campaign's lease (its state answer) and the counts its quotas read."""

    async def active_attempts(self, campaign_id: str | None = None) -> list[Campaigncall]:
        """Attempts ``dialing`` or ``progressing`` (of one campaign, or of all)."""


class Store(Lifecycle, ControlStore, ApiStore, SchedulerStore, EventStore, Protocol):
    """Every port in one object: what the daemon opens and each backend implements."""
