"""Starting, stopping and editing campaigns: the one path by which a status changes.

The API and the engine both change campaigns; every read-modify-write of a campaign
goes through ``CampaignLocks`` so an edit and a status change never overwrite each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import structlog

from dialerd import lifecycle
from dialerd.model import NIL_UUID, Campaign, CampaignStatus, format_time
from dialerd.ports import Clock
from dialerd.store import Fence, Store

log = structlog.get_logger("dialerd.control")


class CampaignNotFound(Exception):
    """No such campaign for this customer (or it was deleted)."""


class RunRefused(Exception):
    """The campaign may not run; ``problems`` names each thing missing or invalid."""

    def __init__(self, campaign_id: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"campaign {campaign_id} cannot run: " + "; ".join(problems))


class CampaignLocks:
    """One lock per campaign id, for read-modify-write of that campaign."""

    def __init__(self) -> None:
        self._locks: dict[str, anyio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, campaign_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(campaign_id, anyio.Lock())
        self._users[campaign_id] = self._users.get(campaign_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[campaign_id] -= 1
            if self._users[campaign_id] == 0:
                del self._users[campaign_id]
                del self._locks[campaign_id]


class CampaignControl:
    """Validates and applies status changes and edits; wakes the scheduler after each."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        locks: CampaignLocks | None = None,
        wake: Callable[[str], None] = lambda _campaign_id: None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.locks = locks or CampaignLocks()
        self.wake = wake

    async def problems(self, campaign: Campaign) -> list[str]:
        """Why ``campaign`` may not run now (behaviour.md §2); empty when it may."""
        customer = campaign.customer_id
        outplan = (
            await self.store.get_outplan(customer, campaign.outplan_id)
            if campaign.outplan_id != NIL_UUID
            else None
        )
        outdial = (
            await self.store.get_outdial(customer, campaign.outdial_id)
            if campaign.outdial_id != NIL_UUID
            else None
        )
        next_campaign = (
            await self.store.get_campaign(customer, campaign.next_campaign_id)
            if campaign.next_campaign_id not in (NIL_UUID, campaign.id)
            else None
        )
        return lifecycle.run_problems(campaign, outplan, outdial, next_campaign)

    async def run(self, customer_id: str, campaign_id: str, *, cause: str = "request") -> Campaign:
        """Start the campaign; raise ``RunRefused`` naming what is missing."""
        async with self.locks.hold(campaign_id):
            campaign = await self._get(customer_id, campaign_id)
            if campaign.status == CampaignStatus.RUN:
                return campaign
            problems = await self.problems(campaign)
            if problems:
                raise RunRefused(campaign_id, problems)
            updated = await self._write(campaign, status=CampaignStatus.RUN)
        log.info(
            "campaign status changed",
            campaign_id=campaign_id,
            status="run",
            previous=campaign.status.value,
            cause=cause,
        )
        self.wake(campaign_id)
        return updated

    async def stop(self, customer_id: str, campaign_id: str, *, cause: str = "request") -> Campaign:
        """Stop the campaign: ``stopping`` while attempts are active, else ``stop``."""
        async with self.locks.hold(campaign_id):
            campaign = await self._get(customer_id, campaign_id)
            active = len(await self.store.active_attempts(campaign_id))
            status = lifecycle.status_after_stop_request(campaign.status, active)
            if status == campaign.status:
                return campaign
            updated = await self._write(campaign, status=status)
        log.info(
            "campaign status changed",
            campaign_id=campaign_id,
            status=status.value,
            previous=campaign.status.value,
            cause=cause,
        )
        self.wake(campaign_id)
        return updated

    async def edit(self, customer_id: str, campaign_id: str, **changes: Any) -> Campaign:
        """Change the given fields (not ``status``); they take effect at the next tick."""
        if "status" in changes:
            raise ValueError("status changes go through run() and stop()")
        async with self.locks.hold(campaign_id):
            campaign = await self._get(customer_id, campaign_id)
            updated = await self._write(campaign, **changes)
        self.wake(campaign_id)
        return updated

    async def transition(
        self,
        campaign_id: str,
        expected: CampaignStatus,
        status: CampaignStatus,
        *,
        cause: str,
        fence: Fence | None = None,
    ) -> Campaign | None:
        """The engine's own change: ``expected`` -> ``status``, if nobody changed it meanwhile.

        With ``fence``, the write happens only while the engine still holds the lease.
        """
        async with self.locks.hold(campaign_id):
            campaign = await self.store.get_campaign(None, campaign_id)
            if campaign is None or campaign.status != expected:
                return None
            updated = await self._write(campaign, fence=fence, status=status)
        log.info(
            "campaign status changed",
            campaign_id=campaign_id,
            status=status.value,
            previous=expected.value,
            cause=cause,
        )
        return updated

    async def _get(self, customer_id: str, campaign_id: str) -> Campaign:
        campaign = await self.store.get_campaign(customer_id, campaign_id)
        if campaign is None:
            raise CampaignNotFound(campaign_id)
        return campaign

    async def _write(
        self, campaign: Campaign, *, fence: Fence | None = None, **changes: Any
    ) -> Campaign:
        updated = msgspec.structs.replace(
            campaign, tm_update=format_time(self.clock.now()), **changes
        )
        return await self.store.update_campaign(updated, fence=fence)
