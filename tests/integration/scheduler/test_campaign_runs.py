"""Whole campaigns on the simulated call centre, randomized, checked against the invariants.

Each run draws a campaign (service level, agents, targets with one to three numbers,
retry limits) and a call centre (outcome shares, ring and talk times) from a seed, runs
it to the end on a fake clock, and checks what behaviour.md promises whatever happens.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import anyio
import msgspec
import pytest

from dialerd.adapters.sim import SimCallCentre
from dialerd.config import EngineConfig, Range, SimConfig, SimOutcomes
from dialerd.model import Campaigncall, CampaignStatus, EndHandle, TargetStatus
from dialerd.store.sqlite import SqliteStore
from tests.fakes.clock import FakeClock
from tests.fakes.engine import sim_engine
from tests.integration.conftest import EPOCH, Factory, queues_of, tel
from tests.integration.scheduler.engine_harness import CUSTOMER

SEEDS = [11, 23, 37, 41, 59, 73]
# A bound on simulated time, so a run that never ends fails instead of hanging.
MAX_SIMULATED_SECONDS = 6 * 3600


def draw_sim(rng: random.Random, seed: int) -> SimConfig:
    shares = [rng.uniform(0, 0.2) for _ in range(4)]
    return SimConfig(
        seed=seed,
        default_agents=rng.randint(1, 6),
        wrap_up=Range(min=1.0, max=rng.uniform(1.0, 15.0)),
        outcomes=SimOutcomes(
            machine=shares[0],
            busy=shares[1],
            no_answer=shares[2],
            failure=shares[3],
            ring_time=Range(min=1.0, max=rng.uniform(1.0, 20.0)),
            talk_time=Range(min=5.0, max=rng.uniform(5.0, 120.0)),
        ),
    )


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_campaign_runs_to_stop_within_every_invariant(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    sim_config = draw_sim(rng, seed)
    service_level = rng.choice([50, 100, 150, 200])
    max_try_counts = (rng.randint(1, 3), rng.randint(0, 2), rng.randint(0, 2), 0, 0)
    make = Factory()

    store = SqliteStore(tmp_path / "dialerd.sqlite3")
    await store.open()
    clock = FakeClock(EPOCH)
    centre = SimCallCentre(sim_config, clock)
    engine = sim_engine(
        store,
        clock,
        centre,
        queues=queues_of(CUSTOMER),
        config=EngineConfig(max_concurrent_attempts=50, stop_grace=5.0),
    )
    outplan = msgspec.structs.replace(
        make.outplan(CUSTOMER, max_try_counts=max_try_counts, try_interval=rng.choice([0, 30_000])),
        dial_timeout=rng.choice([0, 8_000, 30_000]),
    )
    await store.create_outplan(outplan)
    outdial = await store.create_outdial(make.outdial(CUSTOMER))
    targets = [
        make.target(
            outdial.id,
            *[tel(f"+1555{n:03d}{slot}") for slot in range(rng.randint(1, 3))],
        )
        for n in range(rng.randint(10, 40))
    ]
    await store.create_targets(targets)
    campaign = msgspec.structs.replace(
        make.campaign(CUSTOMER, outplan_id=outplan.id, outdial_id=outdial.id),
        service_level=service_level,
        end_handle=EndHandle.STOP,
        # No actions: an answered call joins the queue at once (a prompt before the
        # queue lets the pacing hand its agent to another call: the operator's choice).
        actions=[],
    )
    await store.create_campaign(campaign)

    try:
        async with (
            anyio.create_task_group() as task_group,
            clock.autojump(max_seconds=MAX_SIMULATED_SECONDS),
        ):
            await task_group.start(engine.run)
            await engine.control.run(CUSTOMER, campaign.id)
            status = CampaignStatus.RUN
            while status != CampaignStatus.STOP:
                await clock.sleep_until(clock.monotonic() + 5)
                stored = await store.get_campaign(None, campaign.id)
                assert stored is not None
                status = stored.status
            task_group.cancel_scope.cancel()

        calls = await _all_calls(store, campaign.id)
        stored_targets = [await store.get_target(outdial.id, target.id) for target in targets]
        # Every target ends done, and nothing is left active.
        assert all(t is not None and t.status == TargetStatus.DONE for t in stored_targets)
        assert all(call.status == "done" for call in calls)
        assert await store.active_attempts(campaign.id) == []
        # No slot is tried more than its limit, and try counts match the attempts made.
        per_slot = Counter((call.outdial_target_id, call.destination_index) for call in calls)
        for target in stored_targets:
            assert target is not None
            for slot, limit in enumerate(max_try_counts):
                assert target.try_counts[slot] <= limit
                assert per_slot[(target.id, slot)] == target.try_counts[slot]
        # Each attempt was finished exactly once.
        assert engine.stats.attempts_finished == len(calls) == engine.stats.attempts_started
        # The service-level rule: never more lines dialing than agents allow.
        agents = sim_config.default_agents
        assert (engine.max_dialing - 1) * service_level < agents * 100
        # One line per free agent at most: every answered call finds its agent. (The
        # engine and the centre must mean the same queue by the campaign's queue_id.)
        if service_level >= 100:
            assert not [call for call in calls if call.reason == "abandoned"]
        # Targets that succeeded have exactly one successful attempt; others none.
        successes = Counter(call.outdial_target_id for call in calls if call.result == "success")
        assert all(count == 1 for count in successes.values())
    finally:
        await store.close()


async def _all_calls(store: SqliteStore, campaign_id: str) -> list[Campaigncall]:
    found: list[Campaigncall] = []
    token = ""
    while True:
        page = await store.list_campaigncalls(CUSTOMER, campaign_id, 100, token)
        found.extend(page.result)
        if not page.next_page_token:
            return found
        token = page.next_page_token
