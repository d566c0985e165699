"""A simulated call's actions: the interpreter on the simulated line (digits, machines,
hang-ups during a prompt, the queue after a prompt), the opt-out on a real SQLite list."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dialerd import metrics
from dialerd.adapters.action_services import ActionServices
from dialerd.adapters.sim import SimCallCentre
from dialerd.config import Range, SimOutcomes
from dialerd.demo.sim import IVR_PROMPT, ivr_actions
from dialerd.model import Action
from dialerd.ports import AgentConnected, HangupReason
from dialerd.store.sqlite import SqliteStore
from tests.fakes.clock import FakeClock
from tests.integration.adapters.test_sim import CAMPAIGN, QUEUE, origination, running, sim_config

CUSTOMER = "5e4a0f6e-8c7b-4d3a-9f2e-1b0c9d8e7f6a"
TALK = Action(type="talk", option={"text": "Please wait for the next agent"})  # 30 chars: 2 s
QUEUE_JOIN = Action(type="queue_join")


@pytest.fixture(autouse=True)
def forget_metrics() -> Iterator[None]:
    """The engine drops a campaign's series when its loop ends; these calls run without
    one, so their series go here."""
    yield
    metrics.forget_campaign(CAMPAIGN)


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "dialerd.sqlite3")
    await store.open()
    yield store
    await store.close()


def centre(store: SqliteStore, clock: FakeClock, **changes: object) -> SimCallCentre:
    return SimCallCentre(sim_config(**changes), clock, services=ActionServices(store, clock))


async def test_callees_choose_by_digit_and_nine_puts_the_number_on_the_dnc_list(
    sqlite: SqliteStore,
) -> None:
    clock = FakeClock()
    world = centre(sqlite, clock, digits={"1": 0.5, "9": 0.3}, default_agents=50)
    calls = 60
    async with running(world, clock) as recorder:
        for number in range(calls):
            await world.telephony.originate(origination(number, actions=ivr_actions()))
        await clock.advance(600)
    snapshot = world.snapshot()
    chosen = snapshot.chosen
    assert sum(chosen.values()) == calls
    assert chosen["1"] > 15
    assert chosen["9"] > 8
    assert chosen["other"] > 3
    # 1: an agent, waited for from the answer (the prompt alone is 58 / 15 s).
    agent_waits = [e.wait_seconds for _, e in recorder.events if isinstance(e, AgentConnected)]
    assert len(agent_waits) == chosen["1"]
    assert min(agent_waits) > len(IVR_PROMPT) / 15
    # 9: the number is on the customer's list, with the campaign and call named.
    assert snapshot.opt_outs == chosen["9"]
    numbers = [f"+1555{number:07d}" for number in range(calls)]
    listed = await sqlite.dnc_listed(CUSTOMER, numbers)
    assert len(listed) == chosen["9"]
    entry = await sqlite.get_dnc_number(CUSTOMER, sorted(listed)[0])
    assert entry is not None
    assert "campaign" in entry.detail
    assert "campaigncall cc-" in entry.detail
    # Every call ended once, normally: by the agent, the goodbye, or no key pressed.
    assert set(recorder.reasons().values()) == {HangupReason.NORMAL}
    assert len(recorder.ended()) == calls


async def test_a_prompt_before_the_queue_counts_in_the_wait_for_an_agent(
    sqlite: SqliteStore,
) -> None:
    clock = FakeClock()
    world = centre(sqlite, clock)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1, actions=[TALK, QUEUE_JOIN]))
        await clock.advance(100)
    # Answered at 5 s, the talk takes 2 s, then the queue, an agent free at once, talk
    # time 60 s.
    assert recorder.times("cc-1") == [("Answered", 5.0), ("Ended", 67.0)]
    assert recorder.waits("cc-1") == [2.0]
    assert recorder.reasons() == {"cc-1": HangupReason.NORMAL}


async def test_actions_that_run_off_their_end_join_the_campaigns_queue(
    sqlite: SqliteStore,
) -> None:
    clock = FakeClock()
    world = centre(sqlite, clock)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1, actions=[TALK]))
        await clock.advance(100)
    # The seed's campaign: a talk, then an agent (VoIPbin appends a queue_join).
    assert recorder.times("cc-1") == [("Answered", 5.0), ("Ended", 67.0)]
    assert recorder.waits("cc-1") == [2.0]


@pytest.mark.parametrize(
    ("queue_id", "actions"),
    [("", [TALK]), (QUEUE, [TALK, Action(type="hangup")]), (QUEUE, [TALK, Action(type="stop")])],
)
async def test_the_call_is_hung_up_without_a_queue_or_after_hangup_or_stop(
    sqlite: SqliteStore, queue_id: str, actions: list[Action]
) -> None:
    clock = FakeClock()
    world = centre(sqlite, clock)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1, queue_id=queue_id, actions=actions))
        await clock.advance(100)
    assert recorder.times("cc-1") == [("Answered", 5.0), ("Ended", 7.0)]
    assert recorder.waits("cc-1") == []


async def test_amd_finds_the_machines_and_hangs_up_on_them(sqlite: SqliteStore) -> None:
    clock = FakeClock()
    machines = SimOutcomes(
        machine=1.0, busy=0, no_answer=0, failure=0, ring_time=Range(min=5, max=5)
    )
    world = centre(sqlite, clock, outcomes=machines)
    amd = [Action(type="amd", option={"machine_handle": "hangup"}), TALK]
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1, actions=amd))
        # Without amd a machine never answers.
        await world.telephony.originate(origination(2, actions=[TALK]))
        await clock.advance(100)
    assert [name for name, _ in recorder.times("cc-1")] == ["Answered", "Ended"]
    assert [name for name, _ in recorder.times("cc-2")] == ["Ended"]
    assert recorder.reasons() == {"cc-1": HangupReason.MACHINE, "cc-2": HangupReason.MACHINE}
    assert recorder.waits("cc-1") == []


async def test_a_callee_hanging_up_during_the_prompt_never_reaches_the_queue(
    sqlite: SqliteStore,
) -> None:
    clock = FakeClock()
    world = centre(sqlite, clock, hangup_during_prompt=1.0)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1, actions=[TALK]))
        await clock.advance(100)
    (answered, ended) = recorder.times("cc-1")
    assert answered == ("Answered", 5.0)
    assert ended[0] == "Ended"
    assert 5.0 <= ended[1] < 7.0
    assert recorder.waits("cc-1") == []
    assert world.snapshot().prompt_hangups == 1
    assert world.snapshot().connected == 0


def test_sim_digit_shares_are_checked() -> None:
    with pytest.raises(ValueError, match="digits"):
        sim_config(digits={"12": 0.5})
    with pytest.raises(ValueError, match="more than 1"):
        sim_config(digits={"1": 0.7, "2": 0.5})


async def test_a_key_pressed_during_a_prompt_with_digits_handle_next_stops_it(
    sqlite: SqliteStore,
) -> None:
    clock = FakeClock()
    world = centre(sqlite, clock, digits={"1": 1.0})
    agent = "3f0c8a1e-5b2d-4c6e-8f7a-9b0c1d2e3f4a"
    long_prompt = "Press 1 at any time to speak to an agent. " * 4  # 168 chars: 11.2 s
    actions = [
        Action(type="talk", option={"text": long_prompt, "digits_handle": "next"}),
        Action(type="branch", option={"target_ids": {"1": agent}}),
        Action(type="hangup"),
        Action(id=agent, type="queue_join"),
    ]
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1, actions=actions))
        await clock.advance(100)
    # The key came 1-4 s into the prompt: the agent took the call well before its end.
    (wait,) = recorder.waits("cc-1")
    assert 1.0 <= wait <= 4.0
    assert world.snapshot().chosen == {"1": 1}
