"""The event sender (dialerd/events/sender.py) against real HTTP receivers on loopback,
on every store backend: signed, every event at least once, in order per campaign; a
receiver down then back gets its backlog in order; a slow receiver holds back only its
own customer; an event its receiver never takes is set aside, then re-delivered."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest

from dialerd.config import EventsConfig, WebhooksConfig
from dialerd.core.targets import RetryRule
from dialerd.events.model import CustomerWebhook, WebhookMethod
from dialerd.events.receivers import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from dialerd.events.sender import EventSender
from dialerd.model import new_id
from dialerd.service.clock import SystemClock
from dialerd.store import Store
from tests.integration.store.store_steps import FAIL, claim
from tests.receivers import HttpReceiver, Received, free_port, http_receiver

if TYPE_CHECKING:
    from tests.integration.conftest import Dialing, Factory

SECRET = "a-signing-secret-of-the-customer"
# Loopback receivers are reached only because the operator's allow list names them.
LOOPBACK = WebhooksConfig(allow_hosts=["127.0.0.1"])
QUICK = EventsConfig(
    poll_interval=0.01,
    first_backoff=0.02,
    max_backoff=0.1,
    retry_for=60.0,
    lease_ttl=20.0,
    timeout=15.0,
)
WAIT = 20.0


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await anyio.sleep(0.01)


async def until_stored(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (bounded) until the store shows ``condition()``."""
    deadline = time.monotonic() + WAIT
    while not await condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await anyio.sleep(0.01)


@asynccontextmanager
async def sending(
    store: Store, config: EventsConfig = QUICK, owner: str = "sender-1"
) -> AsyncIterator[EventSender]:
    sender = EventSender(
        store, SystemClock(), owner=owner, config=config, webhooks=lambda: LOOPBACK
    )
    async with anyio.create_task_group() as group:
        await group.start(sender.run)
        yield sender
        group.cancel_scope.cancel()


async def subscribe(store: Store, customer_id: str, receiver: HttpReceiver) -> None:
    await store.put_webhook(
        CustomerWebhook(
            customer_id=customer_id,
            webhook_method=WebhookMethod.POST,
            webhook_uri=receiver.url + "/events",
            webhook_secret=SECRET,
        )
    )


def taken(receiver: HttpReceiver) -> list[Received]:
    return [request for request in receiver.received() if request.status == 200]


def ids(requests: list[Received]) -> list[str]:
    return [request.headers[EVENT_ID_HEADER.lower()] for request in requests]


async def calls_of(store: Store, make: Factory, dialing: Dialing, count: int) -> None:
    """``count`` attempts claimed, answered and ended (each leaves 4 events)."""
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(count)])
    for n in range(count):
        attempt = await claim(store, dialing, make.at(n))
        await store.mark_answered(attempt.id, make.at(n + 0.5))
        await store.finish_attempt(
            attempt.id, FAIL, "busy", RetryRule.of(dialing.outplan), make.at(n + 0.7)
        )


async def test_every_event_arrives_signed_and_in_order(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    with http_receiver() as receiver:
        await subscribe(store, customer, receiver)
        await calls_of(store, make, dialing, 5)
        written = [entry.position for entry in await store.read_events(customer, "", 1000)]
        async with sending(store):
            await until(lambda: len(taken(receiver)) >= len(written), "all events delivered")

            async def all_marked() -> bool:
                return await store.delivered_position(customer) == written[-1]

            await until_stored(all_marked, "the delivered position written")
        got = taken(receiver)
    assert ids(got) == written
    for request in got:
        assert request.method == "POST"
        assert request.path == "/events"
        assert verify(SECRET, request.headers[SIGNATURE_HEADER.lower()], request.body, time.time())
        assert not verify(
            "another secret", request.headers[SIGNATURE_HEADER.lower()], request.body, time.time()
        )
        event = msgspec.json.decode(request.body)
        assert set(event) == {"type", "data", "id", "time"}
        assert event["id"] == request.headers[EVENT_ID_HEADER.lower()]
    types = [msgspec.json.decode(request.body)["type"] for request in got]
    assert types[:5] == [
        "campaign_created",
        "campaigncall_created",
        "campaigncall_updated",
        "campaigncall_updated",
        "outdialtarget_updated",
    ]
    assert await store.delivered_position(customer) == written[-1]
    assert await store.outbox_backlog(customer) == 0


async def test_a_receiver_down_then_back_gets_the_backlog_in_order(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    with http_receiver(status=503) as receiver:
        await subscribe(store, customer, receiver)
        async with sending(store):
            await calls_of(store, make, dialing, 3)
            await until(lambda: len(receiver.received()) >= 3, "retries while down")
            assert taken(receiver) == []
            assert await store.outbox_backlog(customer) == 13
            receiver.status = 200
            written = [entry.position for entry in await store.read_events(customer, "", 1000)]
            await until(lambda: len(taken(receiver)) >= len(written), "the backlog delivered")
        assert ids(taken(receiver)) == written
        # Only the first event was retried while the receiver was down.
        refused = [r for r in receiver.received() if r.status == 503]
        assert set(ids(refused)) == {written[0]}
    assert await store.failed_events(customer) == []


async def test_a_slow_receiver_holds_back_only_its_own_customer(
    store: Store, make: Factory
) -> None:
    slow_customer = await make.dialing(store)
    quick_customer = await make.dialing(store)
    with http_receiver() as slow, http_receiver() as quick:
        slow.delay = 10.0
        await subscribe(store, slow_customer.campaign.customer_id, slow)
        await subscribe(store, quick_customer.campaign.customer_id, quick)
        async with sending(store):
            await until(lambda: len(slow.received()) == 1, "the slow receiver is asked")
            await calls_of(store, make, quick_customer, 5)
            await calls_of(store, make, slow_customer, 2)
            written = await store.read_events(quick_customer.campaign.customer_id, "", 1000)
            await until(lambda: len(taken(quick)) >= len(written), "the quick one served")
            # The slow receiver has not answered its first event yet.
            assert len(slow.received()) == 1
            slow.release.set()
            slow.delay = 0.0
            slow_written = await store.read_events(slow_customer.campaign.customer_id, "", 1000)
            await until(lambda: len(taken(slow)) >= len(slow_written), "the slow one served")
        assert ids(taken(quick)) == [entry.position for entry in written]
        assert ids(taken(slow)) == [entry.position for entry in slow_written]


async def test_an_event_never_taken_is_set_aside_then_redelivered(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    config = msgspec.structs.replace(QUICK, retry_for=0.2)
    with http_receiver(status=500) as receiver:
        await subscribe(store, customer, receiver)
        (entry,) = await store.read_events(customer, "", 10)
        async with sending(store, config):
            await until(lambda: len(receiver.received()) >= 2, "retried")

            async def set_aside() -> bool:
                return bool(await store.failed_events(customer))

            await until_stored(set_aside, "the event set aside")

            async def passed() -> bool:
                return await store.delivered_position(customer) == entry.position

            await until_stored(passed, "the delivered position past it")
            # The next events go on meanwhile.
            await store.append_event("campaign_state", customer, dialing.campaign.id, b"{}")
            receiver.status = 200
            await until(lambda: len(taken(receiver)) == 1, "the next event delivered")
            assert await store.redeliver_event(customer, entry.position) is not None
            await until(lambda: len(taken(receiver)) == 2, "the failed event redelivered")

            async def forgotten() -> bool:
                return await store.failed_events(customer) == []

            await until_stored(forgotten, "the redelivered event no longer failed")
        assert ids(taken(receiver))[-1] == entry.position


async def test_two_senders_deliver_each_event_once_between_them(
    store: Store, twin_store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    with http_receiver() as receiver:
        await subscribe(store, customer, receiver)
        await calls_of(store, make, dialing, 3)
        written = [entry.position for entry in await store.read_events(customer, "", 1000)]
        async with sending(store, owner="one"), sending(twin_store, owner="two"):
            await until(lambda: len(taken(receiver)) >= len(written), "all delivered")
            await calls_of(store, make, dialing, 2)
            written = [entry.position for entry in await store.read_events(customer, "", 1000)]
            await until(lambda: len(taken(receiver)) >= len(written), "all delivered")
        assert ids(taken(receiver)) == written


async def test_a_customer_without_webhook_gets_nothing_sent(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    other = new_id()
    with http_receiver() as receiver:
        await subscribe(store, other, receiver)
        await store.append_event("campaign_state", other, new_id(), b"{}")
        async with sending(store):
            await until(lambda: len(taken(receiver)) == 1, "the subscribed customer served")
        assert all(customer not in r.body.decode() for r in receiver.received())


async def test_several_campaigns_go_at_once_each_in_its_own_order(
    store: Store, make: Factory
) -> None:
    first = await make.dialing(store)
    customer = first.campaign.customer_id
    others = [await make.dialing(store, customer_id=customer) for _ in range(2)]
    with http_receiver() as receiver:
        receiver.delay = 0.005
        await subscribe(store, customer, receiver)
        for dialing in (first, *others):
            await calls_of(store, make, dialing, 4)
        written = await store.read_events(customer, "", 1000)
        async with sending(store):
            await until(lambda: len(taken(receiver)) >= len(written), "all delivered")
        got = ids(taken(receiver))
    assert sorted(got) == sorted(entry.position for entry in written)
    for dialing in (first, *others):
        own = [e.position for e in written if e.campaign_id == dialing.campaign.id]
        assert [position for position in got if position in own] == own


EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "event_receiver.py"


@pytest.fixture
def example_receiver() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """docs/examples/event_receiver.py running on a free port, with ``SECRET``."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), str(port)],
        env={**os.environ, "DIALERD_WEBHOOK_SECRET": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    yield port, process
    if process.poll() is None:
        process.kill()
        process.communicate(timeout=10)


async def test_the_docs_receiver_example_takes_signed_events_and_refuses_others(
    store: Store, make: Factory, example_receiver: tuple[int, subprocess.Popen[bytes]]
) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    port, process = example_receiver
    await store.put_webhook(
        CustomerWebhook(
            customer_id=customer,
            webhook_method=WebhookMethod.POST,
            webhook_uri=f"http://127.0.0.1:{port}/",
            webhook_secret="not the receiver's secret",
        )
    )
    (entry,) = await store.read_events(customer, "", 10)
    async with sending(store, msgspec.structs.replace(QUICK, retry_for=0.3)):

        async def refused() -> bool:
            return bool(await store.failed_events(customer))

        await until_stored(refused, "a wrongly signed event refused and set aside")
        await subscribe_url(store, customer, f"http://127.0.0.1:{port}/")
        await store.redeliver_event(customer, entry.position)

        async def taken_now() -> bool:
            return await store.failed_events(customer) == []

        await until_stored(taken_now, "the event taken once signed right")
    process.terminate()
    out, _ = process.communicate(timeout=10)
    assert b"campaign_created" in out
    assert dialing.campaign.id.encode() in out


async def subscribe_url(store: Store, customer_id: str, url: str) -> None:
    await store.put_webhook(
        CustomerWebhook(
            customer_id=customer_id,
            webhook_method=WebhookMethod.POST,
            webhook_uri=url,
            webhook_secret=SECRET,
        )
    )
