"""Who runs a campaign: its lease (taken, renewed, lost), and reconciliation: the
attempts the store has as active set against the calls the backend has live."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable
from datetime import timedelta

import anyio

from dialerd import metrics
from dialerd.model import Campaigncall, parse_time
from dialerd.ports import TelephonyUnavailable
from dialerd.scheduler.calls import Calls, is_answered
from dialerd.scheduler.registry import Lease, Leases
from dialerd.scheduler.shared import STORE_RETRY, SharedState, log
from dialerd.store import StoreError

# Attempts the store has as active but this engine does not follow (a reply lost in an
# outage) are ended as lost once this old.
ORPHAN_AGE = 30.0


class Ownership:
    """Campaign leases, and the one reconciliation of store and backend."""

    def __init__(self, shared: SharedState, leases: Leases, calls: Calls) -> None:
        self.shared = shared
        self._leases = leases
        self.calls = calls
        self._writing_back = anyio.Lock()

    async def hold_lease(self, campaign_id: str) -> bool:
        """Take or renew the campaign's lease; False when another instance holds it."""
        shared = self.shared
        now = shared.clock.monotonic()
        ttl = shared.config.lease_ttl
        lease = self._leases.lease(campaign_id)
        if lease is not None and now - lease.renewed < ttl / 3:
            return True
        fence = await shared.store.acquire_lease(campaign_id, shared.owner, ttl, shared.clock.now())
        if fence is None or (lease is not None and fence.token != lease.fence.token):
            if lease is not None:
                self.abandon(campaign_id, "the lease expired")
            self._leases.refused(campaign_id, now + ttl / 3)
            return False
        if lease is None:
            # This instance runs the campaign now: its series exist from here, at 0.
            metrics.declare_campaign(campaign_id)
            # A lease just taken counts as renewed a random part of a renewal period
            # ago: campaigns started together then renew at different ticks.
            lease = self._leases.take(campaign_id, Lease(fence, now - random.uniform(0, ttl / 3)))
        else:
            lease.fence, lease.renewed = fence, now
        if not lease.taken_over:
            # Nothing is dialed before the previous owner's attempts are settled; if the
            # backend cannot tell which live, the tick fails and is retried.
            await self.take_over(campaign_id)
            lease.taken_over = True
        return True

    async def write_back(self) -> None:
        """After the store failed over to a replica that may lack the latest writes
        (behaviour.md, "Redis failover"): this instance's leases and live attempts are
        written back before it claims anything (one write-back at a time; the store
        refuses claims until then). Raises ``StoreError`` when the store cannot take it."""
        store = self.shared.store
        if not store.failed_over:
            return
        async with self._writing_back:
            if not store.failed_over:
                return
            fences = self._leases.fences()
            attempts = self.calls.live_attempts()
            log.warning(
                "store failed over: writing back leases and live attempts",
                leases=len(fences),
                attempts=len(attempts),
            )
            await store.write_back(fences, self.shared.config.lease_ttl, attempts)

    async def release_lease(self, campaign_id: str) -> None:
        """Give the lease back as the loop ends."""
        lease = self._leases.drop(campaign_id)
        if lease is None:
            return
        # Shielded and bounded; if the store is away the lease simply expires.
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(STORE_RETRY),
            contextlib.suppress(StoreError),
        ):
            await self.shared.store.release_lease(lease.fence)

    def abandon(self, campaign_id: str, why: str) -> None:
        """The lease is gone: stop following the campaign's calls and drop them, unwritten."""
        log.warning("campaign lease lost; another instance takes over", reason=why)
        self._leases.drop(campaign_id)
        self.calls.abandon(campaign_id)

    # -- reconciliation ----------------------------------------------------------
    async def reconcile(
        self,
        active: Iterable[Campaigncall],
        live: set[str],
        *,
        follow_live: bool = True,
        warning: str | None = None,
    ) -> None:
        """Attempts the store has as active that this engine does not follow: follow the
        ones whose call the backend has live (with ``follow_live``), end the others as
        ``lost`` (logging ``warning`` for each, if given)."""
        for campaigncall in active:
            if campaigncall.id in self.calls.view:
                continue
            if campaigncall.id in live:
                if follow_live:
                    self.calls.follow(campaigncall, answered=is_answered(campaigncall), placed=True)
                continue
            await self.calls.end_as_lost(campaigncall, warning=warning)

    async def reconcile_at_start(self) -> None:
        """After a restart: keep following live attempts; end the others as ``lost``.

        Campaigns leased by another instance are that instance's to reconcile. When the
        backend cannot tell which calls live, each campaign's loop does it on its own
        (``take_over``) before it dials.
        """
        shared = self.shared
        try:
            live = await self.calls.live_calls()
        except TelephonyUnavailable as exc:
            log.warning("reconciliation deferred: telephony unavailable", error=str(exc))
            return
        owners: dict[str, str | None] = {}
        ours: list[Campaigncall] = []
        for campaigncall in await shared.store.active_attempts(None):
            campaign_id = campaigncall.campaign_id
            if campaign_id not in owners:
                owners[campaign_id] = await shared.store.lease_owner(
                    campaign_id, shared.clock.now()
                )
            if owners[campaign_id] in (None, shared.owner):
                ours.append(campaigncall)
        await self.reconcile(ours, live)

    async def take_over(self, campaign_id: str) -> None:
        """A newly leased campaign: attempts of a previous owner that this process does
        not have live are ended as lost, before anything is dialed."""
        live = await self.calls.live_calls()
        await self.reconcile(await self.shared.store.active_attempts(campaign_id), live)

    async def sweep(self) -> None:
        """Housekeeping's reconciliation: end active attempts nobody follows (their
        start's reply was lost in an outage), and followed ones whose call vanished
        without an end event."""
        shared = self.shared
        cutoff = shared.clock.now() - timedelta(seconds=ORPHAN_AGE)
        try:
            live = await self.calls.live_calls()
        except TelephonyUnavailable:
            return  # cannot tell which are live: next round
        active = await shared.store.active_attempts(None)
        # Lazily: whether the campaign is still ours is asked as each one comes.
        orphans = (
            campaigncall
            for campaigncall in active
            if self._leases.fence(campaigncall.campaign_id) is not None
            and parse_time(campaigncall.tm_create) <= cutoff
        )
        await self.reconcile(orphans, live, follow_live=False, warning="orphan attempt ended")
        await self.calls.end_vanished(live)
