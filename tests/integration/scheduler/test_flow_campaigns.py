"""Flow campaigns run by the engine with the real flow runner: a webhook per target to
a real HTTP receiver on loopback, no call placed, failures retried per the outplan; and
the IVR's opt-out keeping a number from every later campaign of the customer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import msgspec
import pytest

from dialerd import metrics
from dialerd.adapters.action_services import ActionServices
from dialerd.adapters.sim import SimCallCentre
from dialerd.campaigns import RunRefused
from dialerd.config import EngineConfig, Range, SimConfig, SimOutcomes, WebhooksConfig
from dialerd.demo.sim import ivr_actions
from dialerd.model import Action, Campaign, Campaigncall, CampaignStatus, CampaignType, EndHandle
from dialerd.scheduler import Engine
from dialerd.store.sqlite import SqliteStore
from tests.fakes.clock import FakeClock
from tests.fakes.engine import sim_engine
from tests.integration.conftest import EPOCH, Factory, queue_of, queues_of, tel
from tests.integration.scheduler.engine_harness import CUSTOMER
from tests.receivers import http_receiver

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()
LOOPBACK = WebhooksConfig(allow_hosts=["127.0.0.1"], timeout=5.0)
ALL_LIVE = SimOutcomes(
    machine=0, busy=0, no_answer=0, failure=0,
    ring_time=Range(min=2, max=2), talk_time=Range(min=10, max=10),
)  # fmt: skip


@dataclass
class Run:
    store: SqliteStore
    clock: FakeClock
    engine: Engine
    centre: SimCallCentre
    make: Factory


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    store = SqliteStore(tmp_path / "dialerd.sqlite3")
    await store.open()
    clock = FakeClock(EPOCH)
    services = ActionServices(store, clock, webhooks=LOOPBACK)
    centre = SimCallCentre(
        SimConfig(seed=5, default_agents=20, outcomes=ALL_LIVE, digits={"9": 1.0}),
        clock,
        services=services,
    )
    engine = sim_engine(
        store,
        clock,
        centre,
        services=services,
        queues=queues_of(CUSTOMER),
        config=EngineConfig(max_concurrent_attempts=20, stop_grace=5.0),
    )
    yield Run(store, clock, engine, centre, Factory())
    await services.aclose()
    await store.close()


async def campaign_of(
    run: Run,
    actions: list[Action],
    numbers: Sequence[str],
    *,
    type: CampaignType = CampaignType.FLOW,
    tries: int = 1,
    end_handle: EndHandle = EndHandle.STOP,
) -> Campaign:
    make, store = run.make, run.store
    outplan = await store.create_outplan(make.outplan(CUSTOMER, max_try_counts=(tries,)))
    outdial = await store.create_outdial(make.outdial(CUSTOMER))
    await store.create_targets(
        [make.target(outdial.id, tel(number), name=f"lead {number}") for number in numbers]
    )
    campaign = msgspec.structs.replace(
        make.campaign(CUSTOMER, outplan_id=outplan.id, outdial_id=outdial.id, type=type),
        end_handle=end_handle,
        actions=actions,
    )
    return await store.create_campaign(campaign)


async def run_to_stop(run: Run, *campaigns: Campaign) -> None:
    """Run the campaigns one after the other, each until it stops by itself."""
    async with (
        anyio.create_task_group() as task_group,
        run.clock.autojump(max_seconds=3600, threshold=0.02),
    ):
        await task_group.start(run.engine.run)
        for campaign in campaigns:
            await run.engine.control.run(CUSTOMER, campaign.id)
            status = CampaignStatus.RUN
            while status != CampaignStatus.STOP:
                await run.clock.sleep_until(run.clock.monotonic() + 1)
                stored = await run.store.get_campaign(None, campaign.id)
                assert stored is not None
                status = stored.status
        task_group.cancel_scope.cancel()


async def calls_of(run: Run, campaign: Campaign) -> list[Campaigncall]:
    page = await run.store.list_campaigncalls(CUSTOMER, campaign.id, 100, "")
    return page.result


def webhook(uri: str, **option: object) -> Action:
    return Action(type="webhook_send", option={"uri": uri, **option})


NUMBERS = [f"+1555010{n:04d}" for n in range(6)]


async def test_a_flow_campaign_posts_once_per_target_and_places_no_call(run: Run) -> None:
    data = '{"target": "${target.name}", "call": "${campaigncall.id}"}'
    with http_receiver() as receiver:
        campaign = await campaign_of(run, [webhook(f"{receiver.url}/leads", data=data)], NUMBERS)
        await run_to_stop(run, campaign)
        received = receiver.received()
    calls = await calls_of(run, campaign)
    assert len(received) == len(NUMBERS) == len(calls)
    bodies = [json.loads(request.body) for request in received]
    assert sorted(body["target"] for body in bodies) == [f"lead {n}" for n in NUMBERS]
    assert sorted(body["call"] for body in bodies) == sorted(call.id for call in calls)
    assert {request.path for request in received} == {"/leads"}
    assert {(call.result, call.reason) for call in calls} == {("success", "normal")}
    # No call: the telephony backend placed nothing.
    assert run.centre.snapshot().originated == 0


async def test_a_webhook_answered_500_fails_the_attempt_and_the_outplan_retries(
    run: Run,
) -> None:
    with http_receiver(status=500) as receiver:
        campaign = await campaign_of(run, [webhook(receiver.url, data="x")], NUMBERS[:3], tries=2)
        await run_to_stop(run, campaign)
        received = receiver.received()
    calls = await calls_of(run, campaign)
    assert len(received) == len(calls) == 6  # two tries per target
    assert {(call.result, call.reason) for call in calls} == {("fail", "failed")}


async def test_a_refused_url_fails_the_attempt_without_a_request(run: Run) -> None:
    with http_receiver() as receiver:
        refused = f"http://localhost:{receiver.port}/"  # loopback, but not allowed
        campaign = await campaign_of(run, [webhook(refused), webhook(receiver.url)], NUMBERS[:2])
        await run_to_stop(run, campaign)
        assert receiver.received() == []
    assert {call.reason for call in await calls_of(run, campaign)} == {"failed"}


async def test_a_flow_with_variable_set_sleep_and_stop_completes(run: Run) -> None:
    actions = [
        Action(type="variable_set", option={"key": "greeting", "value": "hi ${target.name}"}),
        Action(type="sleep", option={"duration": 2000}),
        webhook("RECEIVER", data="${greeting}"),
        Action(type="stop"),
        webhook("RECEIVER", data="never sent"),
    ]
    with http_receiver() as receiver:
        actions = [
            msgspec.structs.replace(
                action, option={**action.option, "uri": receiver.url}
            ) if action.option.get("uri") == "RECEIVER" else action
            for action in actions
        ]  # fmt: skip
        campaign = await campaign_of(run, actions, NUMBERS[:1])
        await run_to_stop(run, campaign)
        assert [request.body for request in receiver.received()] == [
            f"hi lead {NUMBERS[0]}".encode()
        ]
    assert [call.reason for call in await calls_of(run, campaign)] == ["normal"]


async def test_message_send_cannot_run(run: Run) -> None:
    message = Action(
        type="message_send",
        option={"destinations": [{"type": "tel", "target": "+15550100001"}], "text": "hi"},
    )
    campaign = await campaign_of(run, [message], NUMBERS[:1])
    with pytest.raises(RunRefused, match="message_send"):
        await run.engine.control.run(CUSTOMER, campaign.id)


async def test_an_opted_out_number_is_never_dialed_by_a_later_campaign(run: Run) -> None:
    # Every callee presses 9 ([sim] digits): the IVR puts each number on the list.
    first = await campaign_of(run, ivr_actions(), NUMBERS[:4], type=CampaignType.CALL)
    second = await campaign_of(run, [], NUMBERS[:4], type=CampaignType.CALL, tries=3)
    await run_to_stop(run, first, second)
    listed = await run.store.dnc_listed(CUSTOMER, NUMBERS[:4])
    assert listed == set(NUMBERS[:4])
    assert len(await calls_of(run, first)) == 4
    assert await calls_of(run, second) == []
    assert run.centre.snapshot().originated == 4
    assert run.centre.snapshot().opt_outs == 4


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_state_says_what_running_flows_wait_on_and_metrics_count_actions(
    run: Run,
) -> None:
    with http_receiver() as receiver:
        actions = [
            webhook(receiver.url, data="x"),
            Action(type="sleep", option={"duration": 60_000}),
        ]
        campaign = await campaign_of(run, actions, NUMBERS[:3])
        async with anyio.create_task_group() as task_group:
            await task_group.start(run.engine.run)
            await run.engine.control.run(CUSTOMER, campaign.id)
            await run.clock.advance(5, busy=lambda: len(receiver.received()) < 3)
            await run.clock.advance(1)
            insight = run.engine.insight(campaign.id)
            # (A campaign's series go when it stops running here: read them now.)
            done = sample("dialerd_campaign_actions_total", campaign_id=campaign.id,
                          type="webhook_send", outcome="done")  # fmt: skip
            task_group.cancel_scope.cancel()
    assert insight is not None
    assert insight.running_actions == {"sleep": 3}
    assert "flows wait on sleep 3" in insight.detail
    assert done == 3


async def test_metrics_count_the_ivr_choices_and_opt_outs(run: Run) -> None:
    campaign = await campaign_of(
        run, ivr_actions(), NUMBERS[:3], type=CampaignType.CALL, end_handle=EndHandle.CONTINUE
    )
    async with (
        anyio.create_task_group() as task_group,
        run.clock.autojump(max_seconds=3600, threshold=0.02),
    ):
        await task_group.start(run.engine.run)
        await run.engine.control.run(CUSTOMER, campaign.id)
        await run.clock.sleep_until(run.clock.monotonic() + 40)
        opt_outs = sample("dialerd_campaign_opt_outs_total", campaign_id=campaign.id)
        nines = sample("dialerd_campaign_digits_chosen_total", campaign_id=campaign.id, digits="9")
        dnc = sample("dialerd_campaign_actions_total", campaign_id=campaign.id, type="dnc_add",
                     outcome="done")  # fmt: skip
        task_group.cancel_scope.cancel()
    assert (opt_outs, nines, dnc) == (3, 3, 3)


async def test_the_state_shows_the_answer_to_agent_time_a_prompt_before_the_queue_costs(
    run: Run,
) -> None:
    # 45 characters at the sim's 15 a second: 3 s of prompt, then the queue (20 free agents).
    talk = Action(type="talk", option={"text": "Please wait until the agent answers the call."})
    campaign = await campaign_of(run, [talk], NUMBERS[:3], type=CampaignType.CALL)
    campaign = await run.store.update_campaign(
        msgspec.structs.replace(campaign, queue_id=queue_of(CUSTOMER))
    )
    async with anyio.create_task_group() as task_group:
        await task_group.start(run.engine.run)
        await run.engine.control.run(CUSTOMER, campaign.id)
        # Rings 2 s, the prompt 3 s, the agent at once: each call reaches one at 5 s.
        await run.clock.advance(8)
        insight = run.engine.insight(campaign.id)
        task_group.cancel_scope.cancel()
    assert insight is not None
    assert insight.answer_to_agent_seconds == pytest.approx(3.0, abs=0.1)
