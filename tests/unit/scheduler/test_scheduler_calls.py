"""The attempts part over the fakes: following attempts, the counts the other parts
read, and releasing a stopping campaign's calls (no store is reached)."""

from __future__ import annotations

import anyio

from dialerd.config import EngineConfig
from dialerd.model import (
    NIL_UUID,
    Address,
    AddressType,
    Campaigncall,
    CampaigncallResult,
    CampaigncallStatus,
    ReferenceType,
    new_id,
)
from dialerd.scheduler.calls import Calls
from tests.fakes.clock import FakeClock, settle
from tests.fakes.engine import scheduler_ports
from tests.fakes.telephony import ScriptedCalls

CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
CAMPAIGN = "0b7f1a3e-0000-4000-8000-000000000001"
OTHER = "0b7f1a3e-0000-4000-8000-000000000002"


def campaigncall(campaign_id: str = CAMPAIGN, *, answered: bool = False) -> Campaigncall:
    return Campaigncall(
        id=new_id(),
        customer_id=CUSTOMER,
        campaign_id=campaign_id,
        outplan_id=NIL_UUID,
        outdial_id=NIL_UUID,
        outdial_target_id=NIL_UUID,
        queue_id=NIL_UUID,
        flow_id=NIL_UUID,
        activeflow_id=NIL_UUID,
        reference_type=ReferenceType.CALL,
        reference_id=new_id(),
        status=CampaigncallStatus.PROGRESSING if answered else CampaigncallStatus.DIALING,
        result=CampaigncallResult.NONE,
        source=Address(type=AddressType.TEL, target="+15550000000"),
        destination=Address(type=AddressType.TEL, target="+15550000001"),
        destination_index=0,
        try_count=1,
        tm_create="2026-01-05T09:00:00.000000Z",
        tm_update=None,
        tm_delete=None,
    )


def calls_on(clock: FakeClock, telephony: ScriptedCalls) -> Calls:
    shared = scheduler_ports(clock, telephony=telephony, config=EngineConfig(stop_grace=30.0))
    return Calls(shared, fence=lambda _: None, runs=lambda _: True, wake=lambda _: None)


async def test_followed_attempts_are_counted_per_campaign_and_customer() -> None:
    clock = FakeClock()
    calls = calls_on(clock, ScriptedCalls(clock=clock))
    calls.follow(campaigncall())
    calls.follow(campaigncall(answered=True), answered=True, placed=True)
    calls.follow(campaigncall(OTHER))

    count = calls.view.of_campaign(CAMPAIGN)
    assert (count.dialing, count.active) == (1, 2)
    assert calls.view.of_customer(CUSTOMER) == 3
    assert (len(calls.view), calls.view.dialing, calls.view.max_dialing) == (3, 2, 2)


async def test_a_stopping_campaign_releases_unanswered_calls_before_its_grace() -> None:
    clock = FakeClock()
    telephony = ScriptedCalls(clock=clock)
    calls = calls_on(clock, telephony)
    ringing, talking = campaigncall(), campaigncall(answered=True)
    calls.follow(ringing, placed=True)
    calls.follow(talking, answered=True, placed=True)
    async with anyio.create_task_group() as task_group:
        calls.shared.task_group = task_group
        calls.release_stopping([ringing, talking], grace_over=False)
        await settle()
        assert telephony.release_requests == [ringing.id]

        calls.release_stopping([ringing, talking], grace_over=True)
        await settle()
        assert talking.id in telephony.release_requests
        task_group.cancel_scope.cancel()


async def test_an_abandoned_campaign_stops_being_followed_and_its_calls_are_dropped() -> None:
    clock = FakeClock()
    telephony = ScriptedCalls(clock=clock)
    calls = calls_on(clock, telephony)
    lost, kept = campaigncall(), campaigncall(OTHER)
    calls.follow(lost, placed=True)
    calls.follow(kept, placed=True)
    async with anyio.create_task_group() as task_group:
        calls.shared.task_group = task_group
        calls.abandon(CAMPAIGN)
        await settle()
        task_group.cancel_scope.cancel()
    assert lost.id not in calls.view
    assert kept.id in calls.view
    assert telephony.release_requests == [lost.id]
