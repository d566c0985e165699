"""The event sender: delivers each customer's events to its webhook, at least once and
in order, off the dialing path.

One task per customer that has events, and only while this instance holds the
customer's delivery lease (``events:<customer_id>``, taken and renewed like a
campaign's): with several instances each customer's events go out from one of them.
Events go one at a time in outbox order (so in order per campaign); a delivery that
fails is retried with a doubling back-off ([events] first_backoff .. max_backoff) for
``retry_for`` seconds, then set aside as failed (``GET /v1.0/events/failed``) and the
next one goes. A slow or dead receiver holds back its own customer's task only. The
delivered position is written after a batch and before every back-off, so a crash
re-sends at most the events delivered since (receivers deduplicate by event id).

After a Redis failover an attempt's end that the promoted replica lost is written again
(``dialerd/store/redis/durable.py``, ``write_back``), and with it the end's events,
under new ids. The change an end's event shows is known by its resource, status and
``tm_update`` (the end is written again as it was made, at the same time); one this
sender delivered within ``REPLAYED_WINDOW`` seconds is not sent again, only passed.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime

import anyio
import httpx
import msgspec
import structlog
from anyio.abc import TaskStatus

from dialerd.adapters.action_services import guarded_client
from dialerd.config import EventsConfig, WebhooksConfig
from dialerd.events.model import (
    CustomerWebhook,
    EventType,
    OutboxEntry,
    WebhookMethod,
    encode_event,
    event_of,
)
from dialerd.events.receivers import EVENT_ID_HEADER, SIGNATURE_HEADER, signature
from dialerd.metrics import events as event_metrics
from dialerd.model import parse_time
from dialerd.ports import ActionFailed, Clock
from dialerd.store import EventStore, Fence, LeaseLost, StoreError

log = structlog.get_logger("dialerd.events")

# Events read per round; the delivered position is written after each round.
BATCH = 100
# How often a customer's redeliveries, outbox gauge and pruning are looked at (seconds).
HOUSEKEEPING_SECONDS = 2.0
_ENCODER_TYPE = "application/json"
# The changes delivered lately, not sent again when an end is written again after a
# failover: for this many seconds (longer than the write-back takes ends back, see
# durable.ENDED_KEPT_SECONDS), at most this many.
REPLAYED_WINDOW = 300.0
REPLAYED_KEPT = 100_000
# The events an attempt's end writes (the answer folded into it, the end, its target).
_REPLAYABLE = frozenset({EventType.CAMPAIGNCALL_UPDATED, EventType.OUTDIALTARGET_UPDATED})


class _Change(msgspec.Struct):
    """What identifies the change an event of ``_REPLAYABLE`` shows."""

    id: str = ""
    status: str = ""
    tm_update: str | None = None


_CHANGE = msgspec.json.Decoder(_Change)


def change_key(entry: OutboxEntry) -> int | None:
    """The change ``entry`` shows (its type, resource, status and ``tm_update``) as a
    key, for the events an end writes; None for others."""
    if entry.type not in _REPLAYABLE:
        return None
    try:
        change = _CHANGE.decode(entry.body)
    except msgspec.DecodeError:
        return None
    if not change.id or not change.tm_update:
        return None
    return hash((entry.type, change.id, change.status, change.tm_update))


def lease_name(customer_id: str) -> str:
    """The name of the customer's delivery lease (beside the campaigns' leases)."""
    return f"events:{customer_id}"


class _LeaseGone(Exception):
    """Another instance took the customer's delivery lease."""


class EventSender:
    """Delivers every customer's events to its webhook (``run`` in the daemon)."""

    def __init__(
        self,
        store: EventStore,
        clock: Clock,
        *,
        owner: str,
        config: EventsConfig,
        webhooks: Callable[[], WebhooksConfig],
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner
        self.config = config
        self._client = client or guarded_client(webhooks)
        self._serving: set[str] = set()
        # Per customer: the last position counted as written, and (monotonic time,
        # delivered position) checkpoints for pruning what was delivered long ago.
        self._seen: dict[str, str] = {}
        self._checkpoints: dict[str, deque[tuple[float, str]]] = {}
        # Per customer: when its lease was last renewed, and housekeeping last ran
        # (monotonic); the delivered position as this instance last wrote it.
        self._renewed: dict[str, float] = {}
        self._housekept: dict[str, float] = {}
        self._after: dict[str, str] = {}
        # ``change_key`` -> monotonic time, of the changes delivered lately.
        self._delivered: OrderedDict[int, float] = OrderedDict()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Find customers with events and serve each in a task of its own, until cancelled."""
        try:
            async with anyio.create_task_group() as group:
                task_status.started()
                while True:
                    try:
                        customers = await self.store.event_customers()
                    except StoreError as exc:
                        log.warning("event sender cannot list customers", error=str(exc))
                        customers = []
                    for customer_id in customers:
                        if customer_id not in self._serving:
                            self._serving.add(customer_id)
                            group.start_soon(self._serve, customer_id)
                    await self._sleep(self.config.poll_interval * 4)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await self._client.aclose()

    async def _sleep(self, seconds: float) -> None:
        await self.clock.sleep_until(self.clock.monotonic() + seconds)

    async def _serve(self, customer_id: str) -> None:
        """Deliver the customer's events while this instance holds its lease."""
        config = self.config
        held: Fence | None = None
        while True:
            try:
                fence = await self.store.acquire_lease(
                    lease_name(customer_id), self.owner, config.lease_ttl, self.clock.now()
                )
                if fence is None:
                    event_metrics.forget_outbox(customer_id)
                    await self._sleep(config.lease_ttl / 3)
                    continue
                if fence != held:
                    # Another instance may have delivered meanwhile: read where it got to.
                    self._after.pop(customer_id, None)
                    held = fence
                self._renewed[customer_id] = self.clock.monotonic()
                progressed = await self._round(customer_id, fence)
                if not progressed:
                    await self._sleep(config.poll_interval)
            except (LeaseLost, _LeaseGone):
                log.info("event delivery lease lost", customer_id=customer_id)
                event_metrics.forget_outbox(customer_id)
                held = None
                await self._sleep(config.lease_ttl / 3)
            except StoreError as exc:
                log.warning("event sender: store unavailable", error=str(exc))
                held = None
                await self._sleep(config.poll_interval * 4)

    async def _round(self, customer_id: str, fence: Fence) -> bool:
        """Deliver the next batch of the customer's events (and, now and then, what a
        client asked to redeliver); True if there was any."""
        store = self.store
        redelivered = await self._housekeeping(customer_id)
        after = self._after.get(customer_id)
        if after is None:
            after = await store.delivered_position(customer_id)
        entries = await store.read_events(customer_id, after, BATCH)
        if not entries:
            self._after[customer_id] = after
            return redelivered
        self._count_written(customer_id, entries)
        webhook = await store.get_webhook(customer_id)
        if webhook is not None and webhook.webhook_uri and webhook.webhook_method:
            await self._deliver(entries, webhook, fence)
        # Else nobody listens: the events stay for the stream until pruned.
        await store.mark_delivered(
            customer_id, entries[-1].position, len(entries), fence, self.clock.now()
        )
        self._after[customer_id] = entries[-1].position
        self._checkpoints.setdefault(customer_id, deque()).append(
            (self.clock.monotonic(), entries[-1].position)
        )
        return True

    async def _deliver(
        self, entries: list[OutboxEntry], webhook: CustomerWebhook, fence: Fence
    ) -> None:
        """Each entry delivered or set aside: one campaign's in order, up to
        ``concurrency`` campaigns' at once."""
        by_campaign: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            by_campaign.setdefault(entry.campaign_id, []).append(entry)
        limiter = anyio.CapacityLimiter(self.config.concurrency)

        async def campaign(sequence: list[OutboxEntry]) -> None:
            for entry in sequence:
                if self._delivered_lately(entry):
                    continue
                async with limiter:
                    await self._keep_lease(entry.customer_id, fence)
                    error = await self._send(entry, webhook)
                if error is not None:
                    await self._retry(entry, webhook, error, fence)

        if len(by_campaign) == 1:
            await campaign(entries)
            return
        async with anyio.create_task_group() as group:
            for sequence in by_campaign.values():
                group.start_soon(campaign, sequence)

    async def _housekeeping(self, customer_id: str) -> bool:
        """Every ``HOUSEKEEPING_SECONDS``: redeliveries asked for, the outbox gauge, pruning."""
        now = self.clock.monotonic()
        if now - self._housekept.get(customer_id, -HOUSEKEEPING_SECONDS) < HOUSEKEEPING_SECONDS:
            return False
        self._housekept[customer_id] = now
        webhook = await self.store.get_webhook(customer_id)
        redelivered = await self._redeliver(customer_id, webhook)
        event_metrics.outbox_events(customer_id, await self.store.outbox_backlog(customer_id))
        await self._prune(customer_id)
        return redelivered

    async def _retry(
        self, entry: OutboxEntry, webhook: CustomerWebhook, error: str, fence: Fence
    ) -> None:
        """Send ``entry`` again with back-off until it is taken or the window ends (then
        it is set aside)."""
        config = self.config
        customer_id = entry.customer_id
        started = self.clock.monotonic()
        backoff = config.first_backoff
        while True:
            left = config.retry_for - (self.clock.monotonic() - started)
            if left <= 0:
                await self.store.set_aside(entry, error, self.clock.now(), fence)
                event_metrics.event_failed(customer_id)
                log.warning(
                    "event set aside: its receiver did not take it",
                    customer_id=customer_id,
                    event_id=entry.position,
                    error=error,
                )
                return
            event_metrics.event_retried(customer_id)
            log.info(
                "event delivery failed; retrying",
                customer_id=customer_id,
                event_id=entry.position,
                error=error,
                retry_in=round(min(backoff, left), 3),
            )
            await self._hold(customer_id, fence, min(backoff, left))
            backoff = min(backoff * 2, config.max_backoff)
            webhook = await self.store.get_webhook(customer_id) or webhook
            if not webhook.webhook_uri or not webhook.webhook_method:
                return
            sent = await self._send(entry, webhook)
            if sent is None:
                return
            error = sent

    async def _keep_lease(self, customer_id: str, fence: Fence) -> None:
        """Renew the customer's lease when a third of it has passed since the last time."""
        now = self.clock.monotonic()
        if now - self._renewed.get(customer_id, 0.0) < self.config.lease_ttl / 3:
            return
        renewed = await self.store.acquire_lease(
            lease_name(customer_id), self.owner, self.config.lease_ttl, self.clock.now()
        )
        if renewed != fence:
            raise _LeaseGone(customer_id)
        self._renewed[customer_id] = now

    async def _hold(self, customer_id: str, fence: Fence, seconds: float) -> None:
        """Wait ``seconds``, renewing the customer's lease meanwhile."""
        deadline = self.clock.monotonic() + seconds
        step = self.config.lease_ttl / 3
        while True:
            now = self.clock.monotonic()
            if now >= deadline:
                return
            await self.clock.sleep_until(min(deadline, now + step))
            await self._keep_lease(customer_id, fence)

    async def _send(self, entry: OutboxEntry, webhook: CustomerWebhook) -> str | None:
        """One signed delivery; None when the receiver took it (2xx), else why not."""
        event = event_of(entry)
        body = encode_event(event)
        timestamp = math.floor(self.clock.now().timestamp())
        headers = {
            "Content-Type": _ENCODER_TYPE,
            SIGNATURE_HEADER: signature(webhook.webhook_secret, timestamp, body),
            EVENT_ID_HEADER: entry.position,
            "Dialerd-Event-Type": entry.type,
        }
        method = webhook.webhook_method.value or WebhookMethod.POST.value
        timeout = self.config.timeout
        try:
            with anyio.fail_after(timeout):
                response = await self._client.request(
                    method, webhook.webhook_uri, content=body, headers=headers, timeout=timeout
                )
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except (httpx.HTTPError, ActionFailed) as exc:
            return str(exc) or type(exc).__name__
        if not 200 <= response.status_code < 300:
            return f"HTTP {response.status_code}"
        event_metrics.event_delivered(entry.customer_id, self._delay(event.time))
        self._note_delivered(entry)
        return None

    def _note_delivered(self, entry: OutboxEntry) -> None:
        key = change_key(entry)
        if key is None:
            return
        delivered = self._delivered
        now = self.clock.monotonic()
        delivered[key] = now
        delivered.move_to_end(key)
        while delivered and (
            len(delivered) > REPLAYED_KEPT or next(iter(delivered.values())) < now - REPLAYED_WINDOW
        ):
            delivered.popitem(last=False)

    def _delivered_lately(self, entry: OutboxEntry) -> bool:
        """Whether this sender delivered the change ``entry`` shows lately (under
        another id: an end written again after a failover); logged, then passed."""
        key = change_key(entry)
        if key is None:
            return False
        at = self._delivered.get(key)
        if at is None or at < self.clock.monotonic() - REPLAYED_WINDOW:
            return False
        log.info(
            "event not sent: its change was delivered already (an end written again "
            "after a failover)",
            customer_id=entry.customer_id,
            event_id=entry.position,
            type=entry.type,
        )
        return True

    def _delay(self, stamp: str) -> float | None:
        try:
            changed: datetime = parse_time(stamp)
        except ValueError:
            return None
        return (self.clock.now() - changed).total_seconds()

    async def _redeliver(self, customer_id: str, webhook: CustomerWebhook | None) -> bool:
        """Send once each failed event a client asked to have sent again."""
        if webhook is None or not webhook.webhook_uri:
            return False
        marked = [each for each in await self.store.failed_events(customer_id) if each.redeliver]
        for failed in marked:
            error = await self._send(failed.entry, webhook)
            await self.store.forget_failed(customer_id, failed.entry.position, error)
        return bool(marked)

    def _count_written(self, customer_id: str, entries: list[OutboxEntry]) -> None:
        positions = [entry.position for entry in entries]
        seen = self._seen.get(customer_id)
        fresh = (
            len(positions) - (positions.index(seen) + 1) if seen in positions else len(positions)
        )
        if fresh:
            event_metrics.events_written(customer_id, fresh)
        self._seen[customer_id] = positions[-1]

    async def _prune(self, customer_id: str) -> None:
        """Delete events delivered more than ``keep_delivered`` seconds ago."""
        checkpoints = self._checkpoints.get(customer_id)
        if not checkpoints:
            return
        horizon = self.clock.monotonic() - self.config.keep_delivered
        before = ""
        while checkpoints and checkpoints[0][0] <= horizon:
            before = checkpoints.popleft()[1]
        if before:
            await self.store.prune_events(customer_id, before)
