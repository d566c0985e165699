"""What a customer holds, as the stores count it for quotas (``Store.quota_usage``),
run on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import msgspec
import pytest

from dialerd.core.quotas import Usage
from dialerd.model import CampaignStatus, DncNumber, OutdialTarget, format_time, new_id
from tests.integration.conftest import at

if TYPE_CHECKING:
    from dialerd.store import Store
    from tests.integration.conftest import Factory


def dnc(customer: str, number: str) -> DncNumber:
    return DncNumber(customer_id=customer, number=number, detail="", tm_create=format_time(at(0)))


async def failing(batch: Sequence[OutdialTarget]) -> AsyncIterator[Sequence[OutdialTarget]]:
    yield batch
    raise ValueError("a bad row at the end")


async def test_a_new_customer_holds_nothing(store: Store) -> None:
    assert await store.quota_usage(new_id()) == Usage()


async def test_usage_counts_the_customers_live_resources_only(store: Store, make: Factory) -> None:
    customer, other = new_id(), new_id()
    first = await store.create_outdial(make.outdial(customer))
    second = await store.create_outdial(make.outdial(customer))
    gone = await store.create_outdial(make.outdial(customer))
    await store.create_outdial(make.outdial(other))
    await store.create_targets([make.target(first.id) for _ in range(3)])
    await store.create_targets([make.target(second.id) for _ in range(2)])
    await store.create_targets([make.target(gone.id) for _ in range(7)])
    deleted_target = make.target(first.id)
    await store.create_targets([deleted_target])
    await store.delete_target(first.id, deleted_target.id, at(1))
    await store.delete_outdial(customer, gone.id, at(1))
    running = make.campaign(customer, status=CampaignStatus.RUN)
    stopping = make.campaign(customer, status=CampaignStatus.STOPPING)
    stopped = make.campaign(customer)
    deleted = make.campaign(customer)
    for campaign in (running, stopping, stopped, deleted):
        await store.create_campaign(campaign)
    await store.delete_campaign(customer, deleted.id, at(1))
    await store.create_campaign(make.campaign(other, status=CampaignStatus.RUN))
    await store.add_dnc_numbers([dnc(customer, "+15550001"), dnc(customer, "+15550002")])
    await store.add_dnc_numbers([dnc(customer, "+15550001"), dnc(other, "+15550003")])

    usage = await store.quota_usage(customer, first.id)

    assert usage == Usage(
        campaigns=3,
        running_campaigns=2,
        outdials=2,
        targets=5,
        dnc_numbers=2,
        outdial_targets=3,
    )
    assert (await store.quota_usage(customer)).outdial_targets == 0


async def test_a_campaign_counts_running_only_while_it_runs(store: Store, make: Factory) -> None:
    customer = new_id()
    campaign = await store.create_campaign(make.campaign(customer, status=CampaignStatus.RUN))
    assert (await store.quota_usage(customer)).running_campaigns == 1

    stopped = msgspec.structs.replace(campaign, status=CampaignStatus.STOP)
    await store.update_campaign(stopped)

    assert (await store.quota_usage(customer)).running_campaigns == 0


async def test_a_failed_import_leaves_nothing_counted(store: Store, make: Factory) -> None:
    customer = new_id()
    outdial = await store.create_outdial(make.outdial(customer))
    with pytest.raises(ValueError, match="bad row"):
        await store.import_targets(failing([make.target(outdial.id) for _ in range(5)]))

    usage = await store.quota_usage(customer, outdial.id)

    assert (usage.targets, usage.outdial_targets) == (0, 0)
