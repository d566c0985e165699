"""A running campaign's tick goes on from the campaign and outplan its last tick read,
and its claim checks they are still what is stored in the claim's own step (one store
call a tick, no read before the claim); a change stored meanwhile (another instance,
an API call) is seen by that tick all the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from dialerd.model import HangupReason
from dialerd.store import Store
from tests.integration.conftest import StoreMaker
from tests.integration.scheduler.engine_harness import World, running_engine

# The store calls that read a campaign for a tick or claim for it.
TICK_CALLS = {"campaign_and_outplan", "start_attempts", "start_attempts_if_unchanged"}


class Recording:
    """The store, with the names of the tick's calls to it recorded in order."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name not in TICK_CALLS:
            return attribute

        async def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await attribute(*args, **kwargs)

        return recorded


@asynccontextmanager
async def recorded_engine(
    new_store: StoreMaker, tmp_path: Path
) -> AsyncIterator[tuple[World, Recording]]:
    store = new_store()
    await store.open()
    recording = Recording(store)
    try:
        async with running_engine(tmp_path, store=recording) as world:  # type: ignore[arg-type]
            yield world, recording
    finally:
        await store.close()


async def one_call_a_tick(world: World) -> None:
    """Let the next tick claim one attempt (one agent free), then end its call without a
    refill (no agent free then): the tick after has one line to claim again."""
    world.queue.available = 1
    await world.advance(1.0)
    world.queue.available = 0
    for call in world.calls.ringing():
        await world.calls.end(call, HangupReason.BUSY)
    await world.advance(0.0)


async def test_a_running_campaign_s_tick_claims_in_one_store_call(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with recorded_engine(new_store, tmp_path) as (world, recording):
        campaign, _, _ = await world.campaign(targets=10)
        await world.run(campaign)
        await one_call_a_tick(world)
        for _ in range(3):
            recording.calls.clear()
            before = len(world.calls.originated)
            await one_call_a_tick(world)
            assert len(world.calls.originated) == before + 1
            # No read before the claim: the claim checks the tick's last read.
            assert recording.calls == ["start_attempts_if_unchanged"]


async def test_a_change_stored_by_another_writer_applies_at_the_next_tick(
    new_store: StoreMaker, tmp_path: Path
) -> None:
    async with recorded_engine(new_store, tmp_path) as (world, _):
        campaign, outplan, _ = await world.campaign(targets=10, dial_timeout_ms=30_000)
        await world.run(campaign)
        await one_call_a_tick(world)
        await one_call_a_tick(world)
        assert world.calls.originated[-1].dial_timeout_ms == 30_000
        # Another instance's API changes the outplan (its store, not this engine).
        other = new_store()
        await other.open()
        try:
            await other.update_outplan(msgspec.structs.replace(outplan, dial_timeout=12_000))
        finally:
            await other.close()
        before = len(world.calls.originated)
        await one_call_a_tick(world)
        assert len(world.calls.originated) == before + 1
        assert world.calls.originated[-1].dial_timeout_ms == 12_000
