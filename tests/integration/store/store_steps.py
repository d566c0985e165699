"""Steps the store suites share: an attempt claimed, an attempt ended, a claim held, a
target held by the later attempt after a write-back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio

from dialerd.core.targets import RetryRule
from dialerd.model import Campaigncall, CampaigncallResult, TargetStatus
from dialerd.store.base import StoreUnavailable

if TYPE_CHECKING:
    from datetime import datetime

    import pytest

    from dialerd.store import Store
    from dialerd.store.redis import RedisStore
    from tests.integration.conftest import Dialing

FAIL = CampaigncallResult.FAIL
SUCCESS = CampaigncallResult.SUCCESS


async def claim(store: Store, dialing: Dialing, now: datetime) -> Campaigncall:
    """Start an attempt that must find a target."""
    campaigncall = await store.start_attempt(dialing.plan(now))
    assert campaigncall is not None
    return campaigncall


async def finish(store: Store, dialing: Dialing, campaigncall: Campaigncall, now: datetime) -> None:
    """End an attempt as failed (busy); it must not have ended before."""
    done = await store.finish_attempt(
        campaigncall.id, FAIL, "busy", RetryRule.of(dialing.outplan), now
    )
    assert done is not None
    assert done.finished


async def held_until_the_later_attempt_ends(
    store: Store, dialing: Dialing, later: Campaigncall, now: datetime
) -> None:
    """After a write-back that ended an earlier attempt of ``later``'s target: ``later`` is
    the only live attempt, its target stays progressing and no claim (at ``now``) takes
    it; once ``later`` ends, the next claim takes the target and is the only live one."""
    live = await store.active_attempts(dialing.campaign.id)
    assert [call.id for call in live] == [later.id]
    target = await store.get_target(dialing.outdial.id, later.outdial_target_id)
    assert target is not None
    assert target.status == TargetStatus.PROGRESSING
    assert await store.start_attempts([dialing.plan(now)]) == []

    await finish(store, dialing, later, now + timedelta(seconds=1))
    next_one = await claim(store, dialing, now + timedelta(seconds=2))
    assert next_one.outdial_target_id == later.outdial_target_id
    live = await store.active_attempts(dialing.campaign.id)
    assert [call.id for call in live] == [next_one.id]


def hold_next_claim(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> HeldClaim:
    """The Redis store's next claim is held once it has begun, before its script reaches
    the server, until ``go`` is set (``begun`` is set when it is held)."""
    held = HeldClaim(anyio.Event(), anyio.Event(), [])
    run = store._run

    async def holding(name: str, *args: object, customer: str) -> object:
        if name == "start" and not held.begun.is_set():
            held.begun.set()
            await held.go.wait()
        return await run(name, *args, customer=customer)

    monkeypatch.setattr(store, "_run", holding)
    return held


@dataclass
class HeldClaim:
    """``hold_next_claim``'s events, and what ``claim_into`` got: the claimed attempts,
    or the outage it raised."""

    begun: anyio.Event
    go: anyio.Event
    outcome: list[object]

    async def claim_into(self, store: Store, dialing: Dialing, now: datetime) -> None:
        try:
            self.outcome.append(await store.start_attempts([dialing.plan(now)]))
        except StoreUnavailable as exc:
            self.outcome.append(exc)
