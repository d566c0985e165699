"""The campaign service: its commands over a real SQLite store, with a scheduler double
that records what it was told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest

from dialerd.campaigns import (
    ActionsRefused,
    CampaignNotFound,
    CampaignNotStopped,
    CampaignService,
    ReferenceMissing,
    RunRefused,
)
from dialerd.insight import CampaignInsight
from dialerd.model import NIL_UUID, Action, Campaign, CampaignStatus, CampaignType, new_id
from dialerd.service.identity import public_id
from dialerd.store import Store
from dialerd.store.base import AttemptPlan
from dialerd.store.sqlite import SqliteStore
from tests.fakes.clock import FakeClock
from tests.integration.conftest import Factory, queues_of

CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
OTHER_CUSTOMER = "0b7e2d36-1c55-4f0e-9a33-2b8f0c6d1e47"


class RecordingScheduler:
    """The scheduler as the service sees it: what it was told, and what it knows."""

    def __init__(self) -> None:
        self.woken: list[str] = []
        self.stopped: list[str] = []
        self.known: dict[str, CampaignInsight] = {}

    def wake(self, campaign_id: str) -> None:
        self.woken.append(campaign_id)

    def note_stop(self, campaign_id: str) -> None:
        self.stopped.append(campaign_id)

    def insight(self, campaign_id: str) -> CampaignInsight | None:
        return self.known.get(campaign_id)


class QuotaRefusal(Exception):
    pass


class RecordingQuota:
    """A quota gate that records each room asked for and refuses past ``limit``."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.asked: list[tuple[str, str, int]] = []

    @asynccontextmanager
    async def room(
        self, store: Store, customer_id: str, kind: str, adding: int = 1
    ) -> AsyncIterator[object]:
        self.asked.append((customer_id, kind, adding))
        if self.limit is not None and adding > self.limit:
            raise QuotaRefusal(kind)
        yield None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "campaigns.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def scheduler() -> RecordingScheduler:
    return RecordingScheduler()


@pytest.fixture
def service(store: SqliteStore, scheduler: RecordingScheduler) -> CampaignService:
    return CampaignService(store, FakeClock(), scheduler, queues=queues_of(CUSTOMER))


async def ready_campaign(
    store: Store, status: CampaignStatus = CampaignStatus.STOP, *, targets: int = 1
) -> Campaign:
    """A campaign of ``CUSTOMER`` with an outplan and an outdial holding ``targets``."""
    make = Factory()
    outplan = await store.create_outplan(make.outplan(CUSTOMER))
    outdial = await store.create_outdial(make.outdial(CUSTOMER))
    if targets:
        await store.create_targets([make.target(outdial.id) for _ in range(targets)])
    return await store.create_campaign(
        make.campaign(CUSTOMER, outplan_id=outplan.id, outdial_id=outdial.id, status=status)
    )


async def status_of(store: Store, campaign: Campaign) -> CampaignStatus | None:
    stored = await store.get_campaign(CUSTOMER, campaign.id)
    return None if stored is None else stored.status


async def test_run_stores_run_and_wakes_the_scheduler_for_that_campaign(
    store: SqliteStore, service: CampaignService, scheduler: RecordingScheduler
) -> None:
    campaign = await ready_campaign(store)

    started = await service.run(CUSTOMER, campaign.id)

    assert started.status is CampaignStatus.RUN
    assert await status_of(store, campaign) is CampaignStatus.RUN
    assert scheduler.woken == [campaign.id]


async def test_run_without_an_outplan_is_refused_naming_it_and_changes_nothing(
    store: SqliteStore, service: CampaignService, scheduler: RecordingScheduler
) -> None:
    campaign = await store.create_campaign(Factory().campaign(CUSTOMER))

    with pytest.raises(RunRefused) as refused:
        await service.run(CUSTOMER, campaign.id)

    assert any("outplan" in problem for problem in refused.value.problems)
    assert await status_of(store, campaign) is CampaignStatus.STOP
    assert scheduler.woken == []


async def test_an_edit_a_running_campaign_could_not_run_with_is_refused(
    store: SqliteStore, service: CampaignService
) -> None:
    campaign = await ready_campaign(store, CampaignStatus.RUN)

    with pytest.raises(RunRefused):
        await service.edit(CUSTOMER, campaign.id, outplan_id=NIL_UUID)

    stored = await store.get_campaign(CUSTOMER, campaign.id)
    assert stored is not None
    assert stored.outplan_id == campaign.outplan_id


async def test_stop_without_active_attempts_stops_and_tells_the_scheduler(
    store: SqliteStore, service: CampaignService, scheduler: RecordingScheduler
) -> None:
    campaign = await ready_campaign(store, CampaignStatus.RUN)

    stopped = await service.stop(CUSTOMER, campaign.id)

    assert stopped.status is CampaignStatus.STOP
    assert scheduler.stopped == [campaign.id]
    assert scheduler.woken == []


async def test_stop_with_a_call_in_progress_waits_in_stopping(
    store: SqliteStore, service: CampaignService, scheduler: RecordingScheduler
) -> None:
    campaign = await ready_campaign(store, CampaignStatus.RUN)
    outplan = await store.get_outplan(CUSTOMER, campaign.outplan_id)
    assert outplan is not None
    ids = {name: new_id() for name in ("campaigncall_id", "reference_id", "activeflow_id")}
    plan = AttemptPlan(campaign=campaign, outplan=outplan, now=service.clock.now(), **ids)
    assert await store.start_attempt(plan) is not None

    stopped = await service.stop(CUSTOMER, campaign.id)

    assert stopped.status is CampaignStatus.STOPPING
    assert scheduler.stopped == [campaign.id]


async def test_deleting_a_running_campaign_is_refused_with_its_status_and_keeps_it(
    store: SqliteStore, service: CampaignService
) -> None:
    campaign = await ready_campaign(store, CampaignStatus.RUN)

    with pytest.raises(CampaignNotStopped) as refused:
        await service.delete(CUSTOMER, campaign.id)

    assert refused.value.status is CampaignStatus.RUN
    assert "stop it before deleting it" in str(refused.value)
    assert await status_of(store, campaign) is CampaignStatus.RUN


async def test_a_stopped_campaign_is_deleted_and_then_not_found(
    store: SqliteStore, service: CampaignService
) -> None:
    campaign = await ready_campaign(store)

    deleted = await service.delete(CUSTOMER, campaign.id)

    assert deleted.id == campaign.id
    with pytest.raises(CampaignNotFound):
        await service.get(CUSTOMER, campaign.id)
    with pytest.raises(CampaignNotFound):
        await service.delete(CUSTOMER, campaign.id)


async def test_another_customers_campaign_is_not_found(
    store: SqliteStore, service: CampaignService
) -> None:
    campaign = await ready_campaign(store)

    for command in (service.get, service.delete, service.state, service.run, service.stop):
        with pytest.raises(CampaignNotFound):
            await command(OTHER_CUSTOMER, campaign.id)
    assert await status_of(store, campaign) is CampaignStatus.STOP


async def test_state_is_the_schedulers_insight_when_it_runs_the_campaign(
    store: SqliteStore, service: CampaignService, scheduler: RecordingScheduler
) -> None:
    campaign = await ready_campaign(store, CampaignStatus.RUN)
    known = CampaignInsight(campaign_id=campaign.id, status="run", state="dialing", dialing=3)
    scheduler.known[campaign.id] = known

    assert await service.state(CUSTOMER, campaign.id) == known


async def test_state_of_a_campaign_no_scheduler_here_runs(
    store: SqliteStore, service: CampaignService
) -> None:
    stopped = await ready_campaign(store)
    waiting = await ready_campaign(store, CampaignStatus.RUN)
    elsewhere = await ready_campaign(store, CampaignStatus.RUN)
    owner = "other-host:4242:abcd1234"
    assert await store.acquire_lease(elsewhere.id, owner, 30.0, service.clock.now())

    assert (await service.state(CUSTOMER, stopped.id)).state == "stopped"
    starting = await service.state(CUSTOMER, waiting.id)
    assert (starting.state, starting.instance) == ("starting", "")
    other = await service.state(CUSTOMER, elsewhere.id)
    assert other.state == "run_elsewhere"
    assert other.instance == public_id(owner)
    assert owner not in other.detail


async def test_a_request_naming_another_customers_outplan_is_refused_naming_the_field(
    store: SqliteStore, service: CampaignService
) -> None:
    campaign = await ready_campaign(store)
    foreign = await store.create_outplan(Factory().outplan(OTHER_CUSTOMER))

    with pytest.raises(ReferenceMissing) as refused:
        await service.command(
            CUSTOMER, campaign.id, {"outplan_id": foreign.id}, None, RecordingQuota()
        )

    assert refused.value.field == "outplan_id"
    stored = await store.get_campaign(CUSTOMER, campaign.id)
    assert stored is not None
    assert stored.outplan_id == campaign.outplan_id


async def test_a_requested_run_counts_against_the_running_quota_only_when_it_starts(
    store: SqliteStore, service: CampaignService
) -> None:
    campaign = await ready_campaign(store)
    quota = RecordingQuota()

    await service.command(CUSTOMER, campaign.id, {}, CampaignStatus.RUN, quota)
    await service.command(CUSTOMER, campaign.id, {}, CampaignStatus.RUN, quota)

    assert quota.asked == [(CUSTOMER, "run", 1), (CUSTOMER, "run", 0)]


async def test_a_run_the_quota_refuses_leaves_the_campaign_stopped(
    store: SqliteStore, service: CampaignService, scheduler: RecordingScheduler
) -> None:
    campaign = await ready_campaign(store)

    with pytest.raises(QuotaRefusal):
        await service.command(CUSTOMER, campaign.id, {}, CampaignStatus.RUN, RecordingQuota(0))

    assert await status_of(store, campaign) is CampaignStatus.STOP
    assert scheduler.woken == []


async def test_create_refuses_actions_that_cannot_run_naming_index_and_field(
    store: SqliteStore, service: CampaignService
) -> None:
    campaign = msgspec.structs.replace(
        Factory().campaign(CUSTOMER, type=CampaignType.FLOW),
        actions=[Action(type="variable_set", option={}), Action(type="talk", option={})],
    )
    quota = RecordingQuota()

    with pytest.raises(ActionsRefused) as refused:
        await service.create(campaign, quota)

    assert refused.value.errors[0].index == 0
    assert refused.value.errors[0].field.startswith("$.actions[0]")
    assert quota.asked == []
    assert await store.get_campaign(CUSTOMER, campaign.id) is None


async def test_running_by_queue_lists_only_the_customers_running_and_stopping_campaigns(
    store: SqliteStore, service: CampaignService
) -> None:
    running = await ready_campaign(store, CampaignStatus.RUN)
    stopping = await ready_campaign(store, CampaignStatus.STOPPING)
    await ready_campaign(store)
    make = Factory()
    await store.create_campaign(make.campaign(OTHER_CUSTOMER, status=CampaignStatus.RUN))

    by_queue = await service.running_by_queue(CUSTOMER)

    assert by_queue == {running.queue_id: sorted([running.id, stopping.id])}
