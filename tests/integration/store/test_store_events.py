"""The ``Outbox`` and ``WebhookSettings`` ports (dialerd/store/ports.py, dialerd.events):
every change of a campaign, an attempt or a target leaves its event in the same step,
in order; delivery progress under the customer's lease; run on every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import pytest

from dialerd.core.targets import RetryRule
from dialerd.events.model import CustomerWebhook, WebhookMethod, event_json, event_of
from dialerd.model import CampaigncallStatus, CampaignStatus, new_id
from dialerd.store import AttemptEnd, CampaignNotRunning, FinishResult, LeaseLost, Store
from tests.integration.store.store_steps import SUCCESS, claim, finish

if TYPE_CHECKING:
    from tests.integration.conftest import Factory


def _data(entry_body: object) -> object:
    return msgspec.json.decode(msgspec.json.encode(entry_body))


async def test_every_change_of_a_campaign_and_its_attempts_is_an_event_in_order(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    first = await claim(store, dialing, make.at(1))
    await store.mark_answered(first.id, make.at(2))
    await store.finish_attempt(
        first.id, SUCCESS, "normal", RetryRule.of(dialing.outplan), make.at(3)
    )
    stopped = msgspec.structs.replace(
        dialing.campaign, status=CampaignStatus.STOP, tm_update=make.stamp(4)
    )
    await store.update_campaign(stopped, cause="request")
    await store.delete_campaign(customer, dialing.campaign.id, make.at(5))

    entries = await store.read_events(customer, "", 100)
    assert [entry.type for entry in entries] == [
        "campaign_created",
        "campaigncall_created",
        "campaigncall_updated",
        "campaigncall_updated",
        "outdialtarget_updated",
        "campaign_updated",
        "campaign_deleted",
    ]
    assert {entry.campaign_id for entry in entries} == {dialing.campaign.id}
    events = [event_of(entry) for entry in entries]
    assert [event.id for event in events] == [entry.position for entry in entries]
    # The data is the resource exactly as the API shows it now.
    call = await store.get_campaigncall(customer, first.id)
    assert msgspec.json.decode(events[3].data) == _data(call)
    assert msgspec.json.decode(events[1].data)["status"] == "dialing"
    assert msgspec.json.decode(events[2].data)["status"] == "progressing"
    ended = msgspec.json.decode(events[3].data)
    assert (ended["status"], ended["result"], ended["reason"]) == ("done", "success", "normal")
    assert msgspec.json.decode(events[4].data) == _data(
        await store.get_target(dialing.outdial.id, target.id)
    )
    assert msgspec.json.decode(events[5].data)["status"] == "stop"
    # A status change says why; the JSON has a cause only then.
    assert events[5].cause == "request"
    assert msgspec.json.decode(event_json(entries[5]))["cause"] == "request"
    assert "cause" not in msgspec.json.decode(event_json(entries[1]))
    assert events[6].time == make.stamp(5)
    # Reading on from any position gives the rest.
    rest = await store.read_events(customer, entries[2].position, 100)
    assert rest == entries[3:]


async def test_an_answer_that_came_with_its_end_is_an_event_before_the_end(
    store: Store, make: Factory
) -> None:
    """A burst's answer is not written apart from its end (``finish_attempts`` with
    ``answered``): the receiver still sees the call progressing, then ended."""
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    await store.create_targets([make.target(dialing.outdial.id)])
    call = await claim(store, dialing, make.at(1))
    rule = RetryRule.of(dialing.outplan)
    end = AttemptEnd(
        campaigncall_id=call.id, result=SUCCESS, reason="normal", rule=rule, now=make.at(3),
        answered=True,
    )  # fmt: skip
    await store.finish_attempts([end])
    entries = await store.read_events(customer, "", 100)
    calls = [
        msgspec.json.decode(event_of(entry).data)
        for entry in entries
        if entry.type.startswith("campaigncall")
    ]
    assert [c["status"] for c in calls] == ["dialing", "progressing", "done"]
    assert calls[1]["tm_update"] == make.stamp(3)
    # Written again, the burst adds no event.
    await store.finish_attempts([end])
    assert await store.read_events(customer, "", 100) == entries


async def test_a_ticks_claims_and_a_bursts_ends_are_each_an_event_of_its_own(
    store: Store, make: Factory
) -> None:
    """Claims made together and ends written in one burst: each change is one event,
    its data exactly the resource as it was, each with a position of its own that
    reading, delivery, the backlog and pruning go by (SQLite packs them: schema 12)."""
    dialing = await make.dialing(store)
    other = await make.dialing(store, customer_id=dialing.campaign.customer_id)
    customer = dialing.campaign.customer_id
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(5)])
    await store.create_targets([make.target(other.outdial.id) for _ in range(2)])
    calls = await store.start_attempts([dialing.plan(make.at(1)) for _ in range(5)])
    calls += await store.start_attempts([other.plan(make.at(1)) for _ in range(2)])
    assert len(calls) == 7
    ends = [
        AttemptEnd(
            campaigncall_id=call.id, result=SUCCESS, reason="normal", now=make.at(2),
            rule=RetryRule.of(dialing.outplan), answered=True,
        )
        for call in calls
    ]  # fmt: skip
    results = await store.finish_attempts(ends)
    expected: list[tuple[str, object]] = [("campaigncall_created", call) for call in calls]
    for call, result in zip(calls, results, strict=True):
        assert isinstance(result, FinishResult)
        progressing = msgspec.structs.replace(
            call, status=CampaigncallStatus.PROGRESSING, tm_update=make.stamp(2)
        )
        expected += [
            ("campaigncall_updated", progressing),
            ("campaigncall_updated", result.campaigncall),
            ("outdialtarget_updated", result.target),
        ]
    entries = (await store.read_events(customer, "", 100))[2:]  # after the campaigns'
    assert [(entry.type, bytes(event_of(entry).data)) for entry in entries] == [
        (kind, msgspec.json.encode(resource)) for kind, resource in expected
    ]
    positions = [entry.position for entry in entries]
    assert len(set(positions)) == len(entries) == 28
    # Read on from any position, a page at a time, or one campaign's.
    for n, entry in enumerate(entries):
        assert await store.read_events(customer, entry.position, 100) == entries[n + 1 :]
    assert await store.read_events(customer, entries[2].position, 4) == entries[3:7]
    mine = await store.read_events(customer, entries[2].position, 100, dialing.campaign.id)
    assert mine == [e for e in entries[3:] if e.campaign_id == dialing.campaign.id]
    # Delivered up to one inside a burst: the rest is the backlog, and pruning keeps it.
    fence = await store.acquire_lease(f"events:{customer}", "sender", 30, make.at(3))
    assert fence is not None
    await store.mark_delivered(customer, entries[9].position, 12, fence, make.at(3))  # and 2 before
    assert await store.outbox_backlog(customer) == 18
    await store.prune_events(customer, entries[20].position)
    left = await store.read_events(customer, "", 100)
    assert left[-18:] == entries[10:]
    assert await store.outbox_backlog(customer) == 18
    assert await store.read_events(customer, entries[9].position, 100) == entries[10:]


async def test_a_held_target_event_says_why_and_until_when(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, try_interval=60_000)
    await store.create_targets([make.target(dialing.outdial.id)])
    attempt = await claim(store, dialing, make.at(1))
    await finish(store, dialing, attempt, make.at(2))
    customer = dialing.campaign.customer_id
    (entry,) = [
        e for e in await store.read_events(customer, "", 100) if e.type == "outdialtarget_updated"
    ]
    shown = msgspec.json.decode(event_of(entry).data)
    assert shown["status"] == "idle"
    assert shown["try_count_0"] == 1
    stored = await store.get_target(dialing.outdial.id, attempt.outdial_target_id)
    assert shown == _data(stored)


async def test_a_refused_step_leaves_no_event(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    await store.create_targets([make.target(dialing.outdial.id)])
    stopped = msgspec.structs.replace(dialing.campaign, status=CampaignStatus.STOP)
    await store.update_campaign(stopped)
    before = await store.read_events(customer, "", 100)
    with pytest.raises(CampaignNotRunning):
        await store.start_attempt(dialing.plan(make.at(1)))
    assert await store.read_events(customer, "", 100) == before


async def test_each_customer_sees_only_its_own_events_and_a_campaign_filter(
    store: Store, make: Factory
) -> None:
    one = await make.dialing(store)
    other = await make.dialing(store)
    again = await make.dialing(store, customer_id=one.campaign.customer_id)
    mine = await store.read_events(one.campaign.customer_id, "", 100)
    assert [entry.campaign_id for entry in mine] == [one.campaign.id, again.campaign.id]
    only = await store.read_events(one.campaign.customer_id, "", 100, campaign_id=again.campaign.id)
    assert [entry.campaign_id for entry in only] == [again.campaign.id]
    customers = await store.event_customers()
    assert {one.campaign.customer_id, other.campaign.customer_id} <= set(customers)


async def test_delivery_progress_needs_the_customers_lease(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    await store.append_event("campaign_state", customer, dialing.campaign.id, b'{"time":"x"}')
    entries = await store.read_events(customer, "", 100)
    assert await store.outbox_backlog(customer) == 2
    fence = await store.acquire_lease(f"events:{customer}", "sender-a", 30, make.at(0))
    assert fence is not None
    await store.mark_delivered(customer, entries[0].position, 1, fence, make.at(1))
    assert await store.delivered_position(customer) == entries[0].position
    assert await store.outbox_backlog(customer) == 1
    await store.release_lease(fence)
    taken = await store.acquire_lease(f"events:{customer}", "sender-b", 30, make.at(2))
    assert taken is not None
    with pytest.raises(LeaseLost):
        await store.mark_delivered(customer, entries[1].position, 1, fence, make.at(2))
    assert await store.delivered_position(customer) == entries[0].position
    # Never backwards.
    await store.mark_delivered(customer, entries[1].position, 1, taken, make.at(3))
    await store.mark_delivered(customer, entries[0].position, 1, taken, make.at(3))
    assert await store.delivered_position(customer) == entries[1].position
    assert await store.outbox_backlog(customer) == 0


async def test_a_set_aside_event_is_kept_failed_until_redelivered(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    (entry,) = await store.read_events(customer, "", 100)
    fence = await store.acquire_lease(f"events:{customer}", "sender", 30, make.at(0))
    assert fence is not None
    await store.set_aside(entry, "HTTP 500", make.at(1), fence)
    assert await store.delivered_position(customer) == ""
    (failed,) = await store.failed_events(customer)
    assert (failed.entry, failed.error, failed.redeliver) == (entry, "HTTP 500", False)
    assert await store.redeliver_event(customer, "nope") is None
    marked = await store.redeliver_event(customer, entry.position)
    assert marked is not None
    assert marked.redeliver
    await store.forget_failed(customer, entry.position, "HTTP 502")
    (again,) = await store.failed_events(customer)
    assert (again.error, again.redeliver) == ("HTTP 502", False)
    await store.forget_failed(customer, entry.position, None)
    assert await store.failed_events(customer) == []


async def test_delivered_events_can_be_pruned(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    customer = dialing.campaign.customer_id
    for _ in range(3):
        await store.append_event("campaign_state", customer, dialing.campaign.id, b"{}")
    entries = await store.read_events(customer, "", 100)
    fence = await store.acquire_lease(f"events:{customer}", "sender", 30, make.at(0))
    assert fence is not None
    await store.mark_delivered(customer, entries[1].position, 2, fence, make.at(1))
    await store.prune_events(customer, entries[3].position)
    left = await store.read_events(customer, "", 100)
    # Only delivered ones go; the position delivered last stays (a stream's resume point).
    assert [entry.position for entry in left][-2:] == [e.position for e in entries[2:]]
    assert entries[0] not in left


async def test_webhook_settings_are_kept_per_customer(store: Store) -> None:
    customer = new_id()
    assert await store.get_webhook(customer) is None
    settings = CustomerWebhook(
        customer_id=customer,
        webhook_method=WebhookMethod.POST,
        webhook_uri="https://crm.example.com/hook",
        webhook_secret="s" * 32,
        tm_update="2026-03-02 09:00:00.000000",
    )
    await store.put_webhook(settings)
    assert await store.get_webhook(customer) == settings
    assert await store.get_webhook(new_id()) is None
