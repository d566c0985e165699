"""The API's side of the per-customer quotas (behaviour.md §10, Quotas): a change that
would take the customer over a quota is refused with a 409 naming the quota and its
value, before anything is written.

A customer's changes of one kind (campaigns, outdials, targets, do-not-call numbers,
runs) are checked and made one at a time in this process, so two requests cannot both
pass the last free place. An import is counted as it is read and fails, importing
nothing, at the first row past the quota.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import anyio

from dialerd import metrics
from dialerd.api.errors import ApiError
from dialerd.config import QuotasConfig
from dialerd.core.quotas import COUNTED, Quota, QuotaExceeded, Quotas, Usage, first_over, over
from dialerd.model import DncNumber

if TYPE_CHECKING:
    from dialerd.store import Store

T = TypeVar("T")


class QuotaGate:
    """The configured quotas (swapped on reload) and the per-customer turns."""

    def __init__(self, config: QuotasConfig | None = None) -> None:
        self.config = config or QuotasConfig()
        self._turns: dict[tuple[str, str], anyio.Lock] = {}

    def of(self, customer_id: str) -> Quotas:
        return self.config.quotas_for(customer_id)

    @asynccontextmanager
    async def room(
        self,
        store: Store,
        customer_id: str,
        kind: str,
        adding: int = 1,
        *,
        outdial_id: str | None = None,
    ) -> AsyncIterator[Usage]:
        """Hold the customer's turn for ``kind`` while the block makes the change; a 409
        first if ``adding`` more would exceed a quota. Yields the usage counted."""
        turn = self._turns.setdefault((customer_id, kind), anyio.Lock())
        async with turn:
            quotas = self.of(customer_id)
            if not any(quotas.limit(quota) for quota in COUNTED[kind]):
                yield Usage()  # nothing to count: the seed's behaviour
                return
            usage = await store.quota_usage(customer_id, outdial_id)
            publish_usage(customer_id, quotas, usage)
            refusal = first_over(quotas, kind, usage, adding)
            if refusal is not None:
                raise refused(customer_id, refusal)
            yield usage


def refused(customer_id: str, refusal: QuotaExceeded) -> ApiError:
    """The 409 of a refusal, counted by quota."""
    metrics.quota_refused(customer_id, refusal.quota.value)
    return ApiError(
        409,
        "QUOTA_EXCEEDED",
        str(refusal),
        details=[
            {
                "quota": refusal.quota.value,
                "limit": refusal.limit,
                "in_use": refusal.used,
                "adding": refusal.adding,
            }
        ],
    )


def publish_usage(customer_id: str, quotas: Quotas, usage: Usage) -> None:
    """The customer's counted use and limits, as gauges (quotas with a limit only)."""
    for quota in Quota:
        if quota in (Quota.CONCURRENT_CALLS, Quota.CALLS_PER_SECOND, Quota.TARGETS_PER_OUTDIAL):
            continue  # the scheduler's, and per outdial
        limit = quotas.limit(quota)
        if limit:
            metrics.quota_use(customer_id, quota.value, usage.of(quota), limit)


async def counted_targets(
    customer_id: str,
    quotas: Quotas,
    usage: Usage,
    batches: AsyncIterable[Sequence[T]],
) -> AsyncIterator[Sequence[T]]:
    """The batches of a target import, refused (``ApiError``, so the store discards what
    it staged) at the first batch that would take the customer over a target quota."""
    adding = 0
    async for batch in batches:
        adding += len(batch)
        refusal = first_over(quotas, "target", usage, adding)
        if refusal is not None:
            raise refused(customer_id, refusal)
        yield batch


async def counted_dnc(
    store: Store,
    customer_id: str,
    quotas: Quotas,
    usage: Usage,
    batches: AsyncIterable[Sequence[DncNumber]],
) -> AsyncIterator[Sequence[DncNumber]]:
    """As ``counted_targets`` for a do-not-call import: numbers already listed add
    nothing (a number repeated in later batches of the file counts each time)."""
    adding = 0
    async for batch in batches:
        adding += await new_numbers(store, customer_id, batch)
        refusal = over(quotas, Quota.DNC_NUMBERS, usage.dnc_numbers, adding)
        if refusal is not None:
            raise refused(customer_id, refusal)
        yield batch


async def new_numbers(store: Store, customer_id: str, entries: Sequence[DncNumber]) -> int:
    """How many distinct numbers of ``entries`` the customer's list does not hold yet."""
    numbers = {entry.number for entry in entries}
    if not numbers:
        return 0
    return len(numbers) - len(await store.dnc_listed(customer_id, sorted(numbers)))
