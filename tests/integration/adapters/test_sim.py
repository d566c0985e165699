"""The simulated call centre under a fake clock: outcomes, agents, abandonment, the ledger."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import ObjectReceiveStream

from dialerd import metrics
from dialerd.adapters.sim import SimCallCentre
from dialerd.config import Range, SimConfig, SimOutcomes
from dialerd.model import NIL_UUID, Action, Address, AddressType
from dialerd.ports import (
    AgentConnected,
    Answered,
    Ended,
    HangupReason,
    Origination,
    OriginationError,
    TelephonyEvent,
)
from tests.fakes.clock import FakeClock

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()
QUEUE = "5b2c9a4e-1d2f-4c7a-9e3b-0a1b2c3d4e5f"
CAMPAIGN = "0d6f1c2e-7a8b-4c9d-8e0f-112233445566"
ALL_LIVE = SimOutcomes(
    machine=0,
    busy=0,
    no_answer=0,
    failure=0,
    ring_time=Range(min=5, max=5),
    talk_time=Range(min=60, max=60),
)


def origination(
    number: int,
    *,
    queue_id: str = QUEUE,
    campaign_id: str = CAMPAIGN,
    actions: list[Action] | None = None,
) -> Origination:
    """The attempt ``cc-<number>`` of a call campaign (without actions: the queue)."""
    return Origination(
        campaigncall_id=f"cc-{number}",
        campaign_id=campaign_id,
        customer_id="5e4a0f6e-8c7b-4d3a-9f2e-1b0c9d8e7f6a",
        reference_id=f"target-{number}",
        queue_id=queue_id,
        source=Address(type=AddressType.TEL, target="+15550000000"),
        destination=Address(type=AddressType.TEL, target=f"+1555{number:07d}"),
        actions=actions or [],
        dial_timeout_ms=30000,
    )


class Recorder:
    """Every event the simulated backends send, with the clock time it arrived."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.events: list[tuple[float, TelephonyEvent]] = []
        self._changed = anyio.Event()

    async def collect(self, receive: ObjectReceiveStream[TelephonyEvent]) -> None:
        async with receive:
            async for event in receive:
                self.events.append((self.clock.monotonic(), event))
                self._changed.set()
                self._changed = anyio.Event()

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait (in simulated time) until ``done()`` holds."""
        while not done():
            await self._changed.wait()

    def ended(self) -> list[Ended]:
        return [event for _, event in self.events if isinstance(event, Ended)]

    def reasons(self) -> dict[str, HangupReason]:
        return {event.campaigncall_id: event.reason for event in self.ended()}

    def times(self, campaigncall_id: str) -> list[tuple[str, float]]:
        """The call's answer and end (agent connections: ``waits``)."""
        return [
            (type(event).__name__, at)
            for at, event in self.events
            if event.campaigncall_id == campaigncall_id and not isinstance(event, AgentConnected)
        ]

    def waits(self, campaigncall_id: str) -> list[float]:
        """How long the call waited for an agent, as each ``AgentConnected`` said."""
        return [
            event.wait_seconds
            for _, event in self.events
            if event.campaigncall_id == campaigncall_id and isinstance(event, AgentConnected)
        ]


@asynccontextmanager
async def running(world: SimCallCentre, clock: FakeClock) -> AsyncIterator[Recorder]:
    """Run the world's telephony backend, recording its events."""
    recorder = Recorder(clock)
    send, receive = anyio.create_memory_object_stream[TelephonyEvent](math.inf)
    async with anyio.create_task_group() as task_group:
        async with send:
            await task_group.start(world.telephony.run, send.clone())
        task_group.start_soon(recorder.collect, receive)
        yield recorder
        task_group.cancel_scope.cancel()


def sim_config(**changes: object) -> SimConfig:
    settings: dict[str, object] = {
        "seed": 7,
        "default_agents": 2,
        "outcomes": ALL_LIVE,
        "wrap_up": Range(min=10, max=10),
    }
    settings.update(changes)
    return SimConfig(**settings)  # type: ignore[arg-type]


async def test_outcome_shares_follow_the_configured_rates() -> None:
    outcomes = SimOutcomes(machine=0.1, busy=0.2, no_answer=0.15, failure=0.08)
    clock = FakeClock()
    world = SimCallCentre(sim_config(default_agents=1000, outcomes=outcomes), clock)
    calls = 800
    refused = 0
    with anyio.fail_after(30):
        async with clock.autojump(max_seconds=3600), running(world, clock) as recorder:
            for number in range(calls):
                try:
                    await world.telephony.originate(origination(number))
                except OriginationError:
                    refused += 1
            placed = calls - refused
            await recorder.until(lambda: len(recorder.ended()) == placed)
    shares = Counter(recorder.reasons().values())
    assert shares[HangupReason.MACHINE] / calls == pytest.approx(0.1, abs=0.03)
    assert shares[HangupReason.BUSY] / calls == pytest.approx(0.2, abs=0.03)
    assert shares[HangupReason.NO_ANSWER] / calls == pytest.approx(0.15, abs=0.03)
    assert (shares[HangupReason.FAILED] + refused) / calls == pytest.approx(0.08, abs=0.03)
    assert 0 < refused < shares[HangupReason.FAILED]
    assert shares[HangupReason.NORMAL] / calls == pytest.approx(0.47, abs=0.04)
    assert shares[HangupReason.ABANDONED] == 0
    snapshot = world.snapshot()
    assert snapshot.originated == placed
    assert snapshot.refused == refused
    assert snapshot.answered == snapshot.connected == shares[HangupReason.NORMAL]
    assert snapshot.live_calls == 0


async def test_every_placed_call_gets_exactly_one_ended_and_answers_only_if_answered() -> None:
    outcomes = SimOutcomes(machine=0.1, busy=0.2, no_answer=0.1, failure=0.05)
    clock = FakeClock()
    world = SimCallCentre(sim_config(default_agents=3, outcomes=outcomes), clock)
    placed: list[str] = []
    with anyio.fail_after(30):
        async with clock.autojump(max_seconds=3600), running(world, clock) as recorder:
            for number in range(200):
                call = origination(number)
                try:
                    await world.telephony.originate(call)
                except OriginationError:
                    continue
                placed.append(call.campaigncall_id)
                await clock.sleep_until(clock.monotonic() + 0.5)
            await recorder.until(lambda: len(recorder.ended()) >= len(placed))
            await clock.sleep_until(clock.monotonic() + 200)
    ended = Counter(event.campaigncall_id for event in recorder.ended())
    assert ended == Counter(placed)
    answered = {
        event.campaigncall_id for _, event in recorder.events if isinstance(event, Answered)
    }
    reasons = recorder.reasons()
    assert answered == {
        call for call, reason in reasons.items()
        if reason in (HangupReason.NORMAL, HangupReason.ABANDONED)
    }  # fmt: skip
    assert HangupReason.ABANDONED in reasons.values()
    assert await world.telephony.live_calls() == set()


async def test_same_seed_gives_the_same_calls() -> None:
    async def play() -> list[tuple[float, TelephonyEvent]]:
        outcomes = SimOutcomes(machine=0.1, busy=0.2, no_answer=0.1, failure=0.0)
        clock = FakeClock()
        world = SimCallCentre(sim_config(default_agents=2, outcomes=outcomes), clock)
        async with clock.autojump(max_seconds=3600), running(world, clock) as recorder:
            for number in range(40):
                await world.telephony.originate(origination(number))
            await recorder.until(lambda: len(recorder.ended()) == 40)
        return recorder.events

    with anyio.fail_after(30):
        first, second = await play(), await play()
    assert first == second
    assert len({at for at, _ in first}) > 10


async def test_an_answered_call_no_agent_takes_in_time_is_abandoned() -> None:
    clock = FakeClock()
    world = SimCallCentre(sim_config(agents={QUEUE: 1}, abandon_after=2.0), clock)
    async with running(world, clock) as recorder:
        for number in range(3):
            await world.telephony.originate(origination(number))
        await clock.advance(5)
        assert world.snapshot().answered == 3
        assert await world.queue.available_agents(QUEUE) == 0
        await clock.advance(2)
        assert sorted(recorder.reasons().values()) == [HangupReason.ABANDONED] * 2
        assert {at for at, event in recorder.events if isinstance(event, Ended)} == {7.0}
        await clock.advance(60)
    reasons = recorder.reasons()
    assert sorted(reasons.values()) == [HangupReason.ABANDONED] * 2 + [HangupReason.NORMAL]
    snapshot = world.snapshot()
    assert (snapshot.connected, snapshot.abandoned) == (1, 2)


def agent_states(queue: str) -> dict[str, float | None]:
    """``dialerd_queue_agents`` of ``queue`` by state, as exported now."""
    return {
        state: REGISTRY.get_sample_value("dialerd_queue_agents", {"queue": queue, "state": state})
        for state in metrics.AGENT_STATES
    }


NO_AGENTS: dict[str, float | None] = dict.fromkeys(metrics.AGENT_STATES, 0.0)


async def test_agents_take_new_calls_only_after_wrap_up() -> None:
    clock = FakeClock()
    world = SimCallCentre(sim_config(agents={QUEUE: 1}, abandon_after=20.0), clock)
    async with running(world, clock) as recorder:
        assert await world.queue.available_agents(QUEUE) == 1
        await world.telephony.originate(origination(1))
        await clock.advance(5)
        assert await world.queue.available_agents(QUEUE) == 0
        assert agent_states(QUEUE) == {**NO_AGENTS, "busy": 1}
        await clock.advance(60)  # talk ends at 65, wrap-up until 75
        assert recorder.reasons() == {"cc-1": HangupReason.NORMAL}
        assert await world.queue.available_agents(QUEUE) == 0
        assert agent_states(QUEUE) == {**NO_AGENTS, "wrap_up": 1}
        snapshot = world.snapshot()
        assert (snapshot.agents_busy, snapshot.agents_total) == (1, 1)
        await world.telephony.originate(origination(2))  # answered at 70, waits for the agent
        await clock.advance(10)
        assert recorder.times("cc-2") == [("Answered", 70.0)]
        await clock.advance(60)
        assert recorder.times("cc-2") == [("Answered", 70.0), ("Ended", 135.0)]
        await clock.advance(10)
        assert await world.queue.available_agents(QUEUE) == 1
        assert agent_states(QUEUE) == {**NO_AGENTS, "available": 1}
    assert recorder.reasons() == {"cc-1": HangupReason.NORMAL, "cc-2": HangupReason.NORMAL}
    # The engine is told how long each caller waited for the agent (the 2-second rule).
    assert recorder.waits("cc-1") == [0.0]
    assert recorder.waits("cc-2") == [5.0]


async def test_occupancy_integrates_busy_agent_time_over_staffed_time() -> None:
    clock = FakeClock()
    world = SimCallCentre(sim_config(agents={QUEUE: 2}), clock)
    async with running(world, clock):
        assert await world.queue.available_agents(QUEUE) == 2
        await world.telephony.originate(origination(1))
        await clock.advance(100)  # answered at 5, talk until 65, wrap-up until 75
        snapshot = world.snapshot()
    assert snapshot.staffed_agent_seconds == pytest.approx(200.0)
    assert snapshot.busy_agent_seconds == pytest.approx(70.0)


async def test_agents_per_queue_come_from_the_config() -> None:
    clock = FakeClock()
    world = SimCallCentre(sim_config(agents={QUEUE: 5}, default_agents=3), clock)
    assert await world.queue.available_agents(QUEUE) == 5
    assert await world.queue.available_agents("any-other-queue") == 3
    assert world.snapshot().agents_total == 8
    world.reconfigure(sim_config(agents={QUEUE: 2}, default_agents=4))
    assert await world.queue.available_agents(QUEUE) == 2
    assert await world.queue.available_agents("any-other-queue") == 4


async def test_fewer_agents_after_a_reload_leave_once_their_calls_are_done() -> None:
    clock = FakeClock()
    world = SimCallCentre(sim_config(agents={QUEUE: 3}), clock)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1))
        await world.telephony.originate(origination(2))
        await clock.advance(10)
        assert await world.queue.available_agents(QUEUE) == 1
        world.reconfigure(sim_config(agents={QUEUE: 1}))
        assert await world.queue.available_agents(QUEUE) == 0
        assert world.snapshot().agents_total == 1
        await clock.advance(65)  # both calls ended at 65, wrap-up until 75
        assert await world.queue.available_agents(QUEUE) == 1
        world.reconfigure(sim_config(agents={QUEUE: 4}))
        assert await world.queue.available_agents(QUEUE) == 4
    assert recorder.reasons() == {"cc-1": HangupReason.NORMAL, "cc-2": HangupReason.NORMAL}


async def test_a_call_without_a_queue_talks_and_ends_normally_without_agents() -> None:
    clock = FakeClock()
    world = SimCallCentre(sim_config(default_agents=0), clock)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1, queue_id=NIL_UUID))
        await clock.advance(100)
    assert recorder.times("cc-1") == [("Answered", 5.0), ("Ended", 65.0)]
    assert recorder.reasons() == {"cc-1": HangupReason.NORMAL}


async def test_a_second_originate_with_the_same_id_places_no_second_call(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = tmp_path / "ledger.jsonl"
    world = SimCallCentre(sim_config(), clock, ledger_path=ledger)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1))
        await world.telephony.originate(origination(1))
        await clock.advance(100)
        await world.telephony.originate(origination(1))
        await clock.advance(100)
    assert [event.campaigncall_id for event in recorder.ended()] == ["cc-1"]
    assert world.snapshot().originated == 1
    assert len(ledger.read_text().splitlines()) == 1


async def test_the_ledger_has_one_line_per_placed_call(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = tmp_path / "sim" / "ledger.jsonl"
    ledger.parent.mkdir()
    world = SimCallCentre(sim_config(), clock, ledger_path=ledger)
    async with running(world, clock):
        await world.telephony.originate(origination(1))
        await clock.advance(3)
        assert len(ledger.read_text().splitlines()) == 1
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert lines == [
        {
            "tm": "2026-01-01 00:00:00.000000",
            "kind": "call",
            "campaigncall_id": "cc-1",
            "campaign_id": CAMPAIGN,
            "customer_id": "5e4a0f6e-8c7b-4d3a-9f2e-1b0c9d8e7f6a",
            "reference_id": "target-1",
            "queue_id": QUEUE,
            "destination": "+15550000001",
        },
    ]


async def test_an_unwritable_ledger_refuses_the_call(tmp_path: Path) -> None:
    clock = FakeClock()
    world = SimCallCentre(sim_config(), clock, ledger_path=tmp_path / "missing" / "ledger")
    async with running(world, clock):
        with pytest.raises(OriginationError, match=r"sim ledger .*missing/ledger: cannot write"):
            await world.telephony.originate(origination(1))
        assert await world.telephony.live_calls() == set()


async def test_refused_originations_place_no_call_and_send_no_event(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = tmp_path / "ledger.jsonl"
    outcomes = SimOutcomes(failure=1.0, machine=0, busy=0, no_answer=0)
    world = SimCallCentre(sim_config(outcomes=outcomes), clock, ledger_path=ledger)
    refusals: list[str] = []
    async with running(world, clock) as recorder:
        for number in range(40):
            try:
                await world.telephony.originate(origination(number))
            except OriginationError as exc:
                refusals.append(str(exc))
        await clock.advance(2)
    refused = len(refusals)
    assert set(refusals) == {"sim trunk refused the call"}
    assert 0 < refused < 40
    assert len(recorder.ended()) == 40 - refused
    assert set(recorder.reasons().values()) == {HangupReason.FAILED}
    assert len(ledger.read_text().splitlines()) == 40 - refused


async def test_per_campaign_outcomes_override_the_defaults() -> None:
    clock = FakeClock()
    busy = SimOutcomes(busy=1.0, machine=0, no_answer=0, failure=0)
    world = SimCallCentre(sim_config(campaigns={"busy-campaign": busy}), clock)
    async with running(world, clock) as recorder:
        for number in range(10):
            await world.telephony.originate(origination(number, campaign_id="busy-campaign"))
        await world.telephony.originate(origination(99))
        await clock.advance(100)
    reasons = recorder.reasons()
    assert reasons.pop("cc-99") == HangupReason.NORMAL
    assert set(reasons.values()) == {HangupReason.BUSY}


async def test_cancel_ends_a_ringing_call_once_and_ignores_answered_or_unknown_calls() -> None:
    clock = FakeClock()
    outcomes = SimOutcomes(no_answer=1.0, machine=0, busy=0, failure=0)
    world = SimCallCentre(sim_config(campaigns={"silent": outcomes}), clock)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1, campaign_id="silent"))
        await world.telephony.originate(origination(2))
        await clock.advance(30)
        assert await world.telephony.live_calls() == {"cc-1", "cc-2"}
        await world.telephony.cancel("cc-1")
        await world.telephony.cancel("cc-1")
        await world.telephony.cancel("cc-2")  # answered: a cancel does not end it
        await world.telephony.cancel("unknown")
        await clock.advance(0)
        assert recorder.times("cc-1") == [("Ended", 30.0)]
        assert await world.telephony.live_calls() == {"cc-2"}
        await clock.advance(100)
    assert recorder.reasons() == {"cc-1": HangupReason.CANCELLED, "cc-2": HangupReason.NORMAL}


async def test_nobody_answering_ends_as_no_answer_after_two_minutes() -> None:
    clock = FakeClock()
    outcomes = SimOutcomes(no_answer=1.0, machine=0, busy=0, failure=0)
    world = SimCallCentre(sim_config(outcomes=outcomes), clock)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1))
        await clock.advance(119)
        assert recorder.events == []
        await clock.advance(1)
    assert recorder.times("cc-1") == [("Ended", 120.0)]
    assert recorder.reasons() == {"cc-1": HangupReason.NO_ANSWER}


async def test_hangup_ends_an_answered_call_and_its_agent_wraps_up() -> None:
    clock = FakeClock()
    world = SimCallCentre(sim_config(agents={QUEUE: 1}), clock)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1))
        await world.telephony.originate(origination(2))
        await clock.advance(20)
        await world.telephony.hangup("cc-1")
        await world.telephony.hangup("cc-1")
        await clock.advance(0)
        assert recorder.times("cc-1") == [("Answered", 5.0), ("Ended", 20.0)]
        assert await world.queue.available_agents(QUEUE) == 0
        await clock.advance(10)
        assert await world.queue.available_agents(QUEUE) == 1
    assert recorder.reasons() == {"cc-1": HangupReason.NORMAL, "cc-2": HangupReason.ABANDONED}


async def test_hangup_of_a_ringing_call_cancels_it() -> None:
    clock = FakeClock()
    world = SimCallCentre(sim_config(), clock)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1))
        await clock.advance(1)
        await world.telephony.hangup("cc-1")
        await clock.advance(100)
    assert recorder.times("cc-1") == [("Ended", 1.0)]
    assert recorder.reasons() == {"cc-1": HangupReason.CANCELLED}


async def test_cancel_right_after_originate_ends_the_call_cancelled() -> None:
    clock = FakeClock()
    world = SimCallCentre(sim_config(), clock)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1))
        await world.telephony.cancel("cc-1")
        await clock.advance(100)
    assert recorder.times("cc-1") == [("Ended", 0.0)]
    assert recorder.reasons() == {"cc-1": HangupReason.CANCELLED}


async def test_speed_makes_simulated_seconds_pass_faster_on_the_clock() -> None:
    clock = FakeClock()
    world = SimCallCentre(sim_config(speed=10.0), clock)
    async with running(world, clock) as recorder:
        await world.telephony.originate(origination(1))
        await clock.advance(10)
    assert recorder.times("cc-1") == [("Answered", 0.5), ("Ended", 6.5)]


async def test_originate_before_the_backend_runs_is_refused() -> None:
    world = SimCallCentre(sim_config(), FakeClock())
    with pytest.raises(OriginationError, match="not running"):
        await world.telephony.originate(origination(1))
