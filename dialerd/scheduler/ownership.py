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
from dialerd.ports import HangupReason, TelephonyUnavailable
from dialerd.scheduler.calls import Calls
from dialerd.scheduler.shared import STORE_RETRY, CampaignLoop, SharedState, log
from dialerd.store import StoreError

# Attempts the store has as active but this engine does not follow (a reply lost in an
# outage) are ended as lost once this old.
ORPHAN_AGE = 30.0


class Ownership:
    """Campaign leases, and the one reconciliation of store and backend."""

    def __init__(self, shared: SharedState, calls: Calls) -> None:
        self.shared = shared
        self.calls = calls

    async def hold_lease(self, loop: CampaignLoop) -> bool:
        """Take or renew the campaign's lease; False when another instance holds it."""
        shared = self.shared
        now = shared.clock.monotonic()
        ttl = shared.config.lease_ttl
        if loop.fence is not None and now - loop.lease_renewed < ttl / 3:
            return True
        fence = await shared.store.acquire_lease(
            loop.campaign_id, shared.owner, ttl, shared.clock.now()
        )
        if fence is None or (loop.fence is not None and fence.token != loop.fence.token):
            if loop.fence is not None:
                self.abandon(loop, "the lease expired")
            shared.foreign[loop.campaign_id] = now + ttl / 3
            return False
        taken = loop.fence is None
        loop.fence = fence
        if taken:
            # This instance runs the campaign now: its series exist from here, at 0.
            metrics.declare_campaign(loop.campaign_id)
        # A lease just taken counts as renewed a random part of a renewal period ago:
        # campaigns started together then renew at different ticks, not all at once.
        loop.lease_renewed = now - (random.uniform(0, ttl / 3) if taken else 0.0)
        if not loop.taken_over:
            # Nothing is dialed before the previous owner's attempts are settled; if the
            # backend cannot tell which live, the tick fails and is retried.
            await self.take_over(loop)
            loop.taken_over = True
        return True

    async def release_lease(self, loop: CampaignLoop) -> None:
        """Give the lease back as the loop ends."""
        if loop.fence is None:
            return
        # Shielded and bounded; if the store is away the lease simply expires.
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(STORE_RETRY),
            contextlib.suppress(StoreError),
        ):
            await self.shared.store.release_lease(loop.fence)

    def abandon(self, loop: CampaignLoop, why: str) -> None:
        """The lease is gone: stop following the campaign's calls and drop them, unwritten."""
        log.warning("campaign lease lost; another instance takes over", reason=why)
        loop.fence = None
        loop.taken_over = False
        task_group = self.shared.task_group
        assert task_group is not None
        for attempt in self.shared.attempts:
            if attempt.campaign_id == loop.campaign_id:
                self.shared.attempts.pop(attempt.campaigncall_id)
                if attempt.timer is not None:
                    attempt.timer.cancel()
                task_group.start_soon(self.calls.release, attempt)
        self.calls.publish_active(loop.campaign_id)

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
            if campaigncall.id in self.shared.attempts:
                continue
            if campaigncall.id in live:
                if follow_live:
                    self.calls.follow(
                        campaigncall, answered=campaigncall.status != "dialing", placed=True
                    )
                continue
            if warning is not None:
                log.warning(warning, campaigncall_id=campaigncall.id,
                            campaign_id=campaigncall.campaign_id)  # fmt: skip
            await self.calls.finish(campaigncall.id, HangupReason.LOST, campaigncall=campaigncall)

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

    async def take_over(self, loop: CampaignLoop) -> None:
        """A newly leased campaign: attempts of a previous owner that this process does
        not have live are ended as lost, before anything is dialed."""
        live = await self.calls.live_calls()
        await self.reconcile(await self.shared.store.active_attempts(loop.campaign_id), live)

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
            if shared.fence(campaigncall.campaign_id) is not None
            and parse_time(campaigncall.tm_create) <= cutoff
        )
        await self.reconcile(orphans, live, follow_live=False, warning="orphan attempt ended")
        await self._end_vanished(live)

    async def _end_vanished(self, live: set[str]) -> None:
        """End followed calls the backend no longer has, whose end event never came (a
        lost event). Missing from two sweeps in a row: an end event already on its way
        is written first, and wins."""
        for attempt in self.shared.attempts:
            if not attempt.placed or attempt.campaigncall_id in live:
                attempt.missing_sweeps = 0
                continue
            attempt.missing_sweeps += 1
            if attempt.missing_sweeps < 2:
                continue
            log.warning(
                "call vanished without an end event; attempt ended as lost",
                campaigncall_id=attempt.campaigncall_id,
                campaign_id=attempt.campaign_id,
            )
            await self.calls.reliably(
                attempt.campaigncall_id, "vanished", self.calls.finish, HangupReason.LOST
            )
