"""``campaign_state`` events: why a campaign is or is not dialing, when that changes.

The scheduler's dialing state lives in memory (``dialerd.scheduler.states``), not in the
store, so its changes have no store step to ride on: the scheduler only notes the
campaign's id (no I/O in the tick), and this task appends one event per noted campaign
with its state answer (``GET /campaigns/{id}/state``) as it is when the event is
written; the event's time is the state's ``since``. Changes within one ``interval``
come out as one event (the latest state); a crash loses the changes noted and not yet
written (the next change writes the state)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import anyio
import msgspec
import structlog
from anyio.abc import TaskStatus

from dialerd.events.model import EventType
from dialerd.insight import CampaignInsight
from dialerd.ports import Clock
from dialerd.store import CampaignReads, Outbox, StoreError

log = structlog.get_logger("dialerd.events")

# At most this many campaigns wait to be written; more are dropped (and logged).
MAX_PENDING = 10_000


class StateStore(CampaignReads, Outbox, Protocol):
    """What the state events need of the store (a protocol made of two ports)."""


class CampaignStateEvents:
    """Notes campaigns whose dialing state changed; ``run`` writes their events."""

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        insight: Callable[[str], CampaignInsight | None],
        interval: float = 0.2,
    ) -> None:
        self.store = store
        self.clock = clock
        self.insight = insight
        self.interval = interval
        self._pending: dict[str, None] = {}
        self._customers: dict[str, str] = {}

    def note(self, campaign_id: str) -> None:
        """The campaign's state changed (called inside the tick: no I/O)."""
        if len(self._pending) < MAX_PENDING:
            self._pending[campaign_id] = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Write the noted campaigns' events every ``interval`` until cancelled."""
        task_status.started()
        while True:
            await self.clock.sleep_until(self.clock.monotonic() + self.interval)
            try:
                await self.flush()
            except StoreError as exc:
                log.warning("campaign state events not written", error=str(exc))

    async def flush(self) -> None:
        """Write one event per noted campaign (its state now)."""
        pending, self._pending = list(self._pending), {}
        for campaign_id in pending:
            insight = self.insight(campaign_id)
            if insight is None:
                continue
            customer_id = await self._customer_of(campaign_id)
            if customer_id is None:
                continue
            body = msgspec.json.encode(insight)
            await self.store.append_event(EventType.CAMPAIGN_STATE, customer_id, campaign_id, body)

    async def _customer_of(self, campaign_id: str) -> str | None:
        customer_id = self._customers.get(campaign_id)
        if customer_id is None:
            campaign = await self.store.get_campaign(None, campaign_id)
            if campaign is None:
                return None
            customer_id = self._customers[campaign_id] = campaign.customer_id
        return customer_id
