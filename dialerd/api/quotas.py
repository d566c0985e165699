"""The API's side of the per-customer quotas (behaviour.md §10, Quotas): a change that
would take the customer over a quota is refused with a 409 naming the quota and its
value, before anything is written.

A customer's changes of one kind (campaigns, outdials, targets, do-not-call numbers,
runs) are checked and made one at a time in this process, so two requests cannot both
pass the last free place. An import is counted as it is read and fails, importing
nothing, at the first row past the quota.

Counting is a scan of an index on SQLite (about 60 ms per 200,000 targets), so with
that store, which one process owns, the counts are kept here between scans: each change
made through the gate is added to them, and they are counted again after
``RECOUNT_SECONDS`` and before any refusal (deletions only lower the true count, so a
kept count is never too low). Redis counts in well under a millisecond: it is asked
every time, since other instances change it too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio
import msgspec

from dialerd import metrics
from dialerd.api.errors import ApiError
from dialerd.config import QuotasConfig
from dialerd.core.quotas import COUNTED, Quota, QuotaExceeded, Quotas, Usage, first_over, over
from dialerd.model import DncNumber

if TYPE_CHECKING:
    from dialerd.store import ApiStore
    from dialerd.store import Quotas as QuotaCounts

T = TypeVar("T")

# Seconds a count kept between scans is trusted (SQLite only; see above).
RECOUNT_SECONDS = 30.0
# The ``Usage`` fields a change of each kind adds to.
_ADDS: dict[str, tuple[str, ...]] = {
    "campaign": ("campaigns",),
    "outdial": ("outdials",),
    "target": ("targets", "outdial_targets"),
    "dnc_number": ("dnc_numbers",),
    "run": ("running_campaigns",),
}


@dataclass
class Room:
    """What ``QuotaGate.room`` yields: the usage counted, and how many the block adds
    (``adding`` unless the block says otherwise, as an import does once it knows)."""

    usage: Usage
    added: int


@dataclass
class _Kept:
    usage: Usage
    at: float


class QuotaGate:
    """The configured quotas (swapped on reload), the per-customer turns and the counts
    kept between scans."""

    def __init__(self, config: QuotasConfig | None = None) -> None:
        self.config = config or QuotasConfig()
        self._turns: dict[tuple[str, str], anyio.Lock] = {}
        # Per customer (outdial_targets 0), and targets per outdial.
        self._kept: dict[str, _Kept] = {}
        self._kept_outdials: dict[str, _Kept] = {}

    def of(self, customer_id: str) -> Quotas:
        return self.config.quotas_for(customer_id)

    @asynccontextmanager
    async def room(
        self,
        store: QuotaCounts,
        customer_id: str,
        kind: str,
        adding: int = 1,
        *,
        outdial_id: str | None = None,
        recount: bool = False,
    ) -> AsyncIterator[Room]:
        """Hold the customer's turn for ``kind`` while the block makes the change; a 409
        first if ``adding`` more would exceed a quota (``recount``: count in the store
        whatever is kept, as an import does)."""
        turn = self._turns.setdefault((customer_id, kind), anyio.Lock())
        async with turn:
            quotas = self.of(customer_id)
            if not any(quotas.limit(quota) for quota in COUNTED[kind]):
                yield Room(Usage(), adding)  # nothing to count: the seed's behaviour
                return
            usage, kept = await self._usage(store, customer_id, outdial_id, recount=recount)
            refusal = first_over(quotas, kind, usage, adding)
            if refusal is not None and kept:
                usage, _ = await self._usage(store, customer_id, outdial_id, recount=True)
                refusal = first_over(quotas, kind, usage, adding)
            publish_usage(customer_id, quotas, usage)
            if refusal is not None:
                raise refused(customer_id, refusal)
            room = Room(usage, adding)
            yield room
            self._add(customer_id, kind, outdial_id, room.added)

    async def _usage(
        self, store: QuotaCounts, customer_id: str, outdial_id: str | None, *, recount: bool
    ) -> tuple[Usage, bool]:
        """The customer's usage, and whether it is a kept count rather than a scan."""
        keeps = store.backend == "sqlite"
        now = time.monotonic()
        if keeps and not recount:
            kept = self._kept.get(customer_id)
            per = None if outdial_id is None else self._kept_outdials.get(outdial_id)
            fresh = [k for k in (kept, per) if k is not None and now - k.at < RECOUNT_SECONDS]
            if kept in fresh and (outdial_id is None or per in fresh):
                assert kept is not None
                targets = 0 if per is None else per.usage.outdial_targets
                return msgspec.structs.replace(kept.usage, outdial_targets=targets), True
        usage = await store.quota_usage(customer_id, outdial_id)
        if keeps:
            self._kept[customer_id] = _Kept(msgspec.structs.replace(usage, outdial_targets=0), now)
            if outdial_id is not None:
                self._kept_outdials[outdial_id] = _Kept(usage, now)
        return usage, False

    def _add(self, customer_id: str, kind: str, outdial_id: str | None, added: int) -> None:
        """Add a change made through the gate to the kept counts."""
        for kept in (self._kept.get(customer_id), self._kept_outdials.get(outdial_id or "")):
            if kept is not None and added:
                kept.usage = msgspec.structs.replace(
                    kept.usage,
                    **{name: getattr(kept.usage, name) + added for name in _ADDS[kind]},
                )


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
    check = target_counter(customer_id, quotas, usage)
    adding = 0
    async for batch in batches:
        adding += len(batch)
        check(adding)
        yield batch


def target_counter(customer_id: str, quotas: Quotas, usage: Usage) -> Callable[[int], None]:
    """``check(adding)``: an ``ApiError`` (refused) if adding that many targets takes the
    customer over a target quota."""

    def check(adding: int) -> None:
        refusal = first_over(quotas, "target", usage, adding)
        if refusal is not None:
            raise refused(customer_id, refusal)

    return check


async def counted_dnc(
    store: ApiStore,
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


async def new_numbers(store: ApiStore, customer_id: str, entries: Sequence[DncNumber]) -> int:
    """How many distinct numbers of ``entries`` the customer's list does not hold yet."""
    numbers = {entry.number for entry in entries}
    if not numbers:
        return 0
    return len(numbers) - len(await store.dnc_listed(customer_id, sorted(numbers)))
