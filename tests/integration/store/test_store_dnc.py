"""Do-not-call numbers in the Store port (dialerd/store/base.py), run on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import pytest

from dialerd.model import DncNumber, format_time, new_id
from tests.integration.conftest import at

if TYPE_CHECKING:
    from dialerd.store import Store
    from tests.integration.conftest import StoreMaker


def entry(customer: str, number: str, seconds: float = 0, detail: str = "") -> DncNumber:
    return DncNumber(
        customer_id=customer, number=number, detail=detail, tm_create=format_time(at(seconds))
    )


async def batches_of(*batches: Sequence[DncNumber]) -> AsyncIterator[Sequence[DncNumber]]:
    for batch in batches:
        yield batch


async def failing_after(*batches: Sequence[DncNumber]) -> AsyncIterator[Sequence[DncNumber]]:
    async for batch in batches_of(*batches):
        yield batch
    raise ValueError("a bad row at the end")


async def all_numbers(store: Store, customer: str, page_size: int = 100) -> list[str]:
    numbers: list[str] = []
    token = ""
    while True:
        page = await store.list_dnc_numbers(customer, page_size, token)
        numbers += [item.number for item in page.result]
        if not page.result or not page.next_page_token:
            return numbers
        token = page.next_page_token


async def test_added_numbers_are_listed_found_and_removed(store: Store) -> None:
    customer = new_id()
    added = await store.add_dnc_numbers(
        [entry(customer, "+15550101", 1, "asked on the phone"), entry(customer, "+15550102", 2)]
    )
    assert [item.number for item in added] == ["+15550101", "+15550102"]
    assert await store.get_dnc_number(customer, "+15550101") == added[0]
    assert await all_numbers(store, customer) == ["+15550102", "+15550101"]
    assert await store.dnc_listed(customer, ["+15550101", "+15550103"]) == {"+15550101"}

    assert await store.remove_dnc_number(customer, "+15550101") == added[0]
    assert await store.remove_dnc_number(customer, "+15550101") is None
    assert await store.get_dnc_number(customer, "+15550101") is None
    assert await all_numbers(store, customer) == ["+15550102"]
    assert await store.dnc_listed(customer, ["+15550101", "+15550102"]) == {"+15550102"}


async def test_adding_a_listed_number_again_keeps_its_entry(store: Store) -> None:
    customer = new_id()
    first = entry(customer, "+15550101", 1, "first")
    await store.add_dnc_numbers([first])
    again = await store.add_dnc_numbers(
        [entry(customer, "+15550101", 5, "second"), entry(customer, "+15550102", 5)]
    )
    assert again[0] == first
    assert await all_numbers(store, customer) == ["+15550102", "+15550101"]


async def test_each_customer_sees_only_its_own_numbers(store: Store) -> None:
    a, b = new_id(), new_id()
    await store.add_dnc_numbers([entry(a, "+15550101")])
    await store.add_dnc_numbers([entry(b, "+15550102")])
    assert await store.get_dnc_number(b, "+15550101") is None
    assert await store.remove_dnc_number(b, "+15550101") is None
    assert await store.dnc_listed(b, ["+15550101", "+15550102"]) == {"+15550102"}
    assert await all_numbers(store, a) == ["+15550101"]
    assert await store.dnc_listed(a, ["+15550101"]) == {"+15550101"}


async def test_paging_numbers_that_share_a_tm_create_skips_and_repeats_none(
    store: Store,
) -> None:
    customer = new_id()
    numbers = [f"+1555010{n:02d}" for n in range(25)]
    await store.add_dnc_numbers(
        [entry(customer, number, n // 10) for n, number in enumerate(numbers)]
    )
    listed = await all_numbers(store, customer, page_size=7)
    assert sorted(listed) == sorted(numbers)
    assert len(listed) == len(set(listed))
    page = await store.list_dnc_numbers(customer, 7)
    assert "|" in page.next_page_token


async def test_an_import_lists_every_number_once_first_entry_winning(store: Store) -> None:
    customer = new_id()
    await store.add_dnc_numbers([entry(customer, "+15550100", 0, "already")])
    first = [entry(customer, f"+1555020{n:02d}", 1) for n in range(30)]
    second = [entry(customer, "+155502000", 2, "repeated"), entry(customer, "+15550100", 2)]
    assert await store.import_dnc_numbers(batches_of(first, second)) == 32
    listed = await all_numbers(store, customer)
    assert len(listed) == 31
    assert (await store.get_dnc_number(customer, "+155502000")) == first[0]
    assert (await store.get_dnc_number(customer, "+15550100") or first[0]).detail == "already"


async def test_a_failed_import_lists_nothing(store: Store) -> None:
    customer = new_id()
    rows = [entry(customer, f"+1555030{n:02d}", 1) for n in range(40)]
    with pytest.raises(ValueError, match="bad row"):
        await store.import_dnc_numbers(failing_after(rows[:20], rows[20:]))
    assert await all_numbers(store, customer) == []
    assert await store.dnc_listed(customer, [row.number for row in rows]) == set()


async def test_an_import_in_progress_is_not_listed(store: Store) -> None:
    customer = new_id()
    seen: list[set[str]] = []

    async def watched() -> AsyncIterator[Sequence[DncNumber]]:
        yield [entry(customer, "+15550401")]
        seen.append(await store.dnc_listed(customer, ["+15550401"]))
        seen.append({item.number for item in (await store.list_dnc_numbers(customer)).result})
        yield [entry(customer, "+15550402")]

    assert await store.import_dnc_numbers(watched()) == 2
    assert seen == [set(), set()]
    assert await store.dnc_listed(customer, ["+15550401", "+15550402"]) == {
        "+15550401",
        "+15550402",
    }


async def test_numbers_outlive_a_reopened_store(new_store: StoreMaker) -> None:
    customer = new_id()
    first = new_store()
    await first.open()
    await first.import_dnc_numbers(batches_of([entry(customer, "+15550501")]))
    await first.close()
    second = new_store()
    await second.open()
    try:
        assert await second.dnc_listed(customer, ["+15550501"]) == {"+15550501"}
    finally:
        await second.close()
