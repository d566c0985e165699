"""The ``Targets`` port (dialerd/store/ports.py): an outdial's targets created, imported,
found, listed and deleted; run on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from dialerd.model import (
    OutdialTarget,
    new_id,
)
from dialerd.store import (
    Conflict,
    Store,
    StoreError,
)
from tests.integration.store.store_steps import claim, finish

if TYPE_CHECKING:
    from tests.integration.conftest import Factory


async def test_an_import_is_invisible_until_its_last_batch_then_all_there_in_order(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    batches = [[make.target(dialing.outdial.id) for _ in range(3)] for _ in range(3)]
    seen_while_importing: list[int] = []

    async def staged() -> AsyncIterator[list[OutdialTarget]]:
        for batch in batches:
            yield batch
            listed = await store.list_targets(dialing.outdial.id)
            found = await store.get_target(dialing.outdial.id, batch[0].id)
            claimed = await store.start_attempt(dialing.plan(make.at(0.5)))
            seen_while_importing.append(
                len(listed.result) + (found is not None) + (claimed is not None)
            )

    assert await store.import_targets(staged()) == 9
    assert seen_while_importing == [0, 0, 0]
    listed = await store.list_targets(dialing.outdial.id)
    assert {t.id for t in listed.result} == {t.id for batch in batches for t in batch}
    claimed = await claim(store, dialing, make.at(1))
    assert claimed.outdial_target_id == batches[0][0].id


async def test_an_import_whose_batches_fail_leaves_nothing(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)

    async def failing() -> AsyncIterator[list[OutdialTarget]]:
        yield [make.target(dialing.outdial.id) for _ in range(4)]
        raise ValueError("line 9 is bad")

    with pytest.raises(ValueError, match="line 9 is bad"):
        await store.import_targets(failing())
    existing = make.target(dialing.outdial.id)
    await store.create_targets([existing])

    async def clashing() -> AsyncIterator[list[OutdialTarget]]:
        yield [make.target(dialing.outdial.id) for _ in range(4)]
        yield [existing]

    with pytest.raises(Conflict):
        await store.import_targets(clashing())
    assert [t.id for t in (await store.list_targets(dialing.outdial.id)).result] == [existing.id]
    # Only the existing target can be dialed: nothing staged is left to claim.
    assert (await claim(store, dialing, make.at(1))).outdial_target_id == existing.id
    assert await store.start_attempt(dialing.plan(make.at(2))) is None


async def test_targets_list_pages_and_hide_deleted(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    targets = [make.target(dialing.outdial.id, tm_create=make.stamp(s % 3)) for s in range(9)]
    await store.create_targets(targets)
    removed = await store.delete_target(dialing.outdial.id, targets[4].id, make.at(10))
    assert removed is not None
    assert removed.tm_delete == make.stamp(10)
    assert await store.get_target(dialing.outdial.id, targets[4].id) is None

    listed: list[str] = []
    token = ""
    for _ in range(10):
        page = await store.list_targets(dialing.outdial.id, page_size=2, page_token=token)
        listed += [target.id for target in page.result]
        token = page.next_page_token
        if not token:
            break
    expected = sorted(
        (t for t in targets if t.id != targets[4].id),
        key=lambda t: (t.tm_create, t.id),
        reverse=True,
    )
    assert listed == [t.id for t in expected]
    assert (await store.list_targets(new_id())).result == []


# -- targets and campaigncalls: deletion rules ---------------------------------------------


async def test_bulk_insert_is_all_or_nothing(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    existing = make.target(dialing.outdial.id)
    assert await store.create_targets([existing]) == 1
    batch = [make.target(dialing.outdial.id) for _ in range(5)]
    with pytest.raises(StoreError):
        await store.create_targets([*batch, existing])
    for target in batch:
        assert await store.get_target(dialing.outdial.id, target.id) is None
    assert len((await store.list_targets(dialing.outdial.id)).result) == 1


async def test_a_target_is_only_found_in_its_outdial(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    assert await store.get_target(new_id(), target.id) is None
    assert await store.get_target(dialing.outdial.id, target.id) == target


async def test_a_progressing_target_cannot_be_deleted(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    campaigncall = await claim(store, dialing, make.at(1))
    with pytest.raises(Conflict):
        await store.delete_target(dialing.outdial.id, target.id, make.at(2))
    await finish(store, dialing, campaigncall, make.at(3))
    assert await store.delete_target(dialing.outdial.id, target.id, make.at(4)) is not None
