"""The ``Leases`` port (dialerd/store/ports.py) and the fencing of the engine's writes;
run on every backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
import pytest

from dialerd.core.targets import RetryRule
from dialerd.model import (
    Campaigncall,
    CampaigncallStatus,
    CampaignStatus,
    format_time,
)
from dialerd.store import (
    Fence,
    FinishResult,
    LeaseLost,
    Store,
)
from tests.integration.conftest import SHORT_LEASE, Dialing, outlive_lease
from tests.integration.store.store_steps import FAIL, SUCCESS, claim

if TYPE_CHECKING:
    from datetime import datetime

    from tests.integration.conftest import Factory


ALICE, BOB, CAROL = "host-a:101:0a0a", "host-b:202:0b0b", "host-c:303:0c0c"
LONG_LEASE = 60.0


async def test_a_campaign_lease_has_one_owner_at_a_time(store: Store, make: Factory) -> None:
    now = make.at(0)
    fence = await store.acquire_lease("campaign-1", ALICE, LONG_LEASE, now)
    assert fence is not None
    assert (fence.campaign_id, fence.owner) == ("campaign-1", ALICE)
    assert await store.acquire_lease("campaign-1", BOB, LONG_LEASE, now) is None
    assert await store.lease_owner("campaign-1", now) == ALICE
    # Another campaign's lease is another matter.
    assert await store.lease_owner("campaign-2", now) is None
    other = await store.acquire_lease("campaign-2", BOB, LONG_LEASE, now)
    assert other is not None
    assert await store.lease_owner("campaign-2", now) == BOB


async def test_a_renewal_keeps_the_token_and_restarts_the_ttl(store: Store, make: Factory) -> None:
    now = make.at(0)
    first = await store.acquire_lease("campaign-1", ALICE, LONG_LEASE, now)
    # Renewed with a short ttl: the lease now ends soon, not LONG_LEASE after ``now``.
    renewed = await store.acquire_lease("campaign-1", ALICE, SHORT_LEASE, now)
    assert renewed == first
    later = await outlive_lease(store, "campaign-1", SHORT_LEASE, now)
    assert await store.lease_owner("campaign-1", later) is None


async def test_a_lapsed_lease_goes_to_the_next_owner_with_a_greater_token(
    store: Store, make: Factory
) -> None:
    now = make.at(0)
    tokens: list[int] = []
    for owner in (ALICE, BOB, CAROL, ALICE):
        fence = await store.acquire_lease("campaign-1", owner, SHORT_LEASE, now)
        assert fence is not None
        assert fence.owner == owner
        tokens.append(fence.token)
        for contender in sorted({ALICE, BOB, CAROL} - {owner}):
            assert await store.acquire_lease("campaign-1", contender, SHORT_LEASE, now) is None
        now = await outlive_lease(store, "campaign-1", SHORT_LEASE, now)
        assert await store.lease_owner("campaign-1", now) is None
    assert tokens == sorted(set(tokens))  # strictly increasing, even back to ALICE


async def test_an_owner_retaking_its_lapsed_lease_keeps_its_token(
    store: Store, make: Factory
) -> None:
    now = make.at(0)
    first = await store.acquire_lease("campaign-1", ALICE, SHORT_LEASE, now)
    later = await outlive_lease(store, "campaign-1", SHORT_LEASE, now)
    # Nobody held it in between, so nothing was written under another token.
    assert await store.acquire_lease("campaign-1", ALICE, LONG_LEASE, later) == first


async def test_a_released_lease_can_be_taken_at_once(store: Store, make: Factory) -> None:
    now = make.at(0)
    first = await store.acquire_lease("campaign-1", ALICE, LONG_LEASE, now)
    assert first is not None
    # Only the fence that holds the lease gives it up.
    await store.release_lease(Fence("campaign-1", ALICE, first.token + 1))
    await store.release_lease(Fence("campaign-1", BOB, first.token))
    await store.release_lease(Fence("no-such-campaign", ALICE, first.token))
    assert await store.lease_owner("campaign-1", now) == ALICE

    await store.release_lease(first)
    assert await store.lease_owner("campaign-1", now) is None
    taken = await store.acquire_lease("campaign-1", BOB, LONG_LEASE, now)
    assert taken is not None
    assert taken.token > first.token
    await store.release_lease(first)  # stale: the new holder keeps its lease
    assert await store.lease_owner("campaign-1", now) == BOB


async def snapshot(store: Store, dialing: Dialing) -> bytes:
    """Everything a write of the campaign could change, as comparable bytes."""
    customer = dialing.campaign.customer_id
    return msgspec.json.encode(
        [
            await store.get_campaign(None, dialing.campaign.id),
            (await store.list_campaigncalls(customer, dialing.campaign.id)).result,
            (await store.list_targets(dialing.outdial.id)).result,
            await store.active_attempts(dialing.campaign.id),
            await store.count_dialing(dialing.campaign.id),
        ]
    )


async def two_fenced_attempts(
    store: Store, dialing: Dialing, fence: Fence, now: datetime
) -> tuple[Campaigncall, Campaigncall]:
    """Start two attempts under ``fence``: one left dialing, one answered."""
    attempts = []
    for _ in range(2):
        campaigncall = await store.start_attempt(
            msgspec.structs.replace(dialing.plan(now), fence=fence)
        )
        assert campaigncall is not None
        attempts.append(campaigncall)
    assert await store.mark_answered(attempts[1].id, now, fence=fence) is not None
    return attempts[0], attempts[1]


def fenced_writes(
    store: Store,
    dialing: Dialing,
    attempts: tuple[Campaigncall, Campaigncall],
    fence: Fence,
    now: datetime,
) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
    """Every fenced write the engine makes for the campaign, by name, ready to try."""
    dialed, answered = attempts
    limits = RetryRule.of(dialing.outplan)
    stopped = msgspec.structs.replace(
        dialing.campaign, status=CampaignStatus.STOP, tm_update=format_time(now)
    )
    plan = msgspec.structs.replace(dialing.plan(now), fence=fence)
    return [
        ("start_attempt", lambda: store.start_attempt(plan)),
        ("mark_answered", lambda: store.mark_answered(dialed.id, now, fence=fence)),
        (
            "finish_attempt of a dialing attempt",
            lambda: store.finish_attempt(dialed.id, FAIL, "busy", limits, now, fence=fence),
        ),
        (
            "finish_attempt of an answered attempt",
            lambda: store.finish_attempt(answered.id, SUCCESS, "normal", limits, now, fence=fence),
        ),
        ("update_campaign", lambda: store.update_campaign(stopped, fence=fence)),
    ]


async def test_fenced_writes_with_the_held_lease_succeed(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    fence = await store.acquire_lease(dialing.campaign.id, ALICE, LONG_LEASE, make.at(1))
    assert fence is not None
    attempts = await two_fenced_attempts(store, dialing, fence, make.at(1))
    writes = dict(fenced_writes(store, dialing, attempts, fence, make.at(2)))

    started = await writes["start_attempt"]()
    assert isinstance(started, Campaigncall)
    assert started.status == CampaigncallStatus.DIALING
    answered = await writes["mark_answered"]()
    assert isinstance(answered, Campaigncall)
    assert answered.status == CampaigncallStatus.PROGRESSING
    for name in ("finish_attempt of a dialing attempt", "finish_attempt of an answered attempt"):
        finished = await writes[name]()
        assert isinstance(finished, FinishResult)
        assert finished.finished
    await writes["update_campaign"]()
    stored = await store.get_campaign(None, dialing.campaign.id)
    assert stored is not None
    assert stored.status == CampaignStatus.STOP
    assert [c.id for c in await store.active_attempts(dialing.campaign.id)] == [started.id]


@pytest.mark.parametrize("loss", ["expiry", "takeover", "release"])
async def test_a_stale_fence_writes_nothing(store: Store, make: Factory, loss: str) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    now = make.at(1)
    old = await store.acquire_lease(dialing.campaign.id, ALICE, SHORT_LEASE, now)
    assert old is not None
    attempts = await two_fenced_attempts(store, dialing, old, now)
    if loss == "release":
        await store.release_lease(old)
        later = now
    else:
        later = await outlive_lease(store, dialing.campaign.id, SHORT_LEASE, now)
    holder = ALICE
    if loss == "takeover":
        holder = BOB
        assert await store.acquire_lease(dialing.campaign.id, BOB, LONG_LEASE, later) is not None

    before = await snapshot(store, dialing)
    for name, write in fenced_writes(store, dialing, attempts, old, later):
        with pytest.raises(LeaseLost):
            await write()
        assert await snapshot(store, dialing) == before, f"{name} changed the store"

    # Whoever holds the lease now writes with its own fence.
    current = await store.acquire_lease(dialing.campaign.id, holder, LONG_LEASE, later)
    assert current is not None
    for name, write in fenced_writes(store, dialing, attempts, current, later):
        await write()
        assert await snapshot(store, dialing) != before, f"{name} changed nothing"
        before = await snapshot(store, dialing)


async def test_a_fence_that_is_not_the_campaigns_lease_is_refused(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    now = make.at(1)
    mine = await store.acquire_lease(dialing.campaign.id, ALICE, LONG_LEASE, now)
    elsewhere = await store.acquire_lease("another-campaign", ALICE, LONG_LEASE, now)
    assert mine is not None
    assert elsewhere is not None
    attempts = await two_fenced_attempts(store, dialing, mine, now)
    before = await snapshot(store, dialing)
    wrong = [
        elsewhere,
        Fence(dialing.campaign.id, ALICE, mine.token + 1),
        Fence(dialing.campaign.id, BOB, mine.token),
    ]
    for fence in wrong:
        for name, write in fenced_writes(store, dialing, attempts, fence, now):
            with pytest.raises(LeaseLost):
                await write()
            assert await snapshot(store, dialing) == before, f"{name} with {fence} wrote"


async def test_unfenced_writes_ignore_leases(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id)])
    assert await store.acquire_lease(dialing.campaign.id, BOB, LONG_LEASE, make.at(0))
    campaigncall = await claim(store, dialing, make.at(1))
    assert await store.mark_answered(campaigncall.id, make.at(2)) is not None
    finished = await store.finish_attempt(
        campaigncall.id, SUCCESS, "normal", RetryRule.of(dialing.outplan), make.at(3)
    )
    assert finished is not None
    assert finished.finished
    paused = msgspec.structs.replace(dialing.campaign, status=CampaignStatus.STOP)
    assert await store.update_campaign(paused) == paused
    assert await store.get_campaign(None, dialing.campaign.id) == paused
