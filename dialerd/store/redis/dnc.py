"""The Redis backend's do-not-call list."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence

import anyio

from dialerd.model import (
    DncNumber,
    Page,
    new_id,
)
from dialerd.store.base import (
    MAX_PAGE_SIZE,
    StoreError,
)
from dialerd.store.documents import (
    encode,
    page_limit,
)
from dialerd.store.redis.connection import RedisConnection
from dialerd.store.redis.fields import (
    DISCARD_SECONDS,
    STAGING_TTL_SECONDS,
    decode_dnc,
    max_bound,
)


class RedisDoNotCall(RedisConnection):
    """The ``DoNotCall`` port on the Redis server."""

    # -- do-not-call numbers --------------------------------------------------------------
    async def add_dnc_numbers(self, entries: Sequence[DncNumber]) -> list[DncNumber]:
        """List the numbers in one script; a listed number keeps its stored entry."""
        if not entries:
            return []
        stored: dict[int, bytes] = {}
        # Each customer's entries in one script on its slot (in the order given).
        for customer in dict.fromkeys(entry.customer_id for entry in entries):
            await self._register(customer)
            indexes = [n for n, entry in enumerate(entries) if entry.customer_id == customer]
            bodies = await self._run(
                "dnc", "add", *(encode(entries[n]) for n in indexes), customer=customer
            )
            stored.update(zip(indexes, bodies, strict=True))
        return [decode_dnc(stored[n]) for n in range(len(entries))]

    async def remove_dnc_number(self, customer_id: str, number: str) -> DncNumber | None:
        body = await self._run("dnc", "remove", customer_id, number, customer=customer_id)
        return None if body is None else decode_dnc(body)

    async def get_dnc_number(self, customer_id: str, number: str) -> DncNumber | None:
        body = await self._guard(
            self._connected().hget(self._ckey(customer_id, "dnc_entries", customer_id), number)
        )
        return None if body is None else decode_dnc(body)

    async def list_dnc_numbers(
        self, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[DncNumber]:
        flat = await self._run(
            "page",
            "dnc",
            f"dnc_listing:{customer_id}",
            max_bound(page_token),
            page_limit(page_size),
            f"dnc_entries:{customer_id}",
            customer=customer_id,
        )
        return Page(
            result=[decode_dnc(body) for body in flat[1:]], next_page_token=flat[0].decode()
        )

    async def import_dnc_numbers(self, batches: AsyncIterable[Sequence[DncNumber]]) -> int:
        """Stage each batch in a list, publish it, then move it a chunk per script."""
        batch = new_id()
        customer = ""
        staged = ""
        count = 0
        try:
            async for entries in batches:
                for start in range(0, len(entries), self.import_chunk):
                    chunk = entries[start : start + self.import_chunk]
                    if not customer:
                        customer = chunk[0].customer_id
                        await self._register(customer)
                        staged = self._ckey(customer, "dnc_staged", batch)
                    if any(entry.customer_id != customer for entry in chunk):
                        raise StoreError("an import of do-not-call numbers is one customer's")
                    async with self._connected().pipeline(transaction=True) as pipe:
                        pipe.rpush(staged, *(encode(entry) for entry in chunk))
                        pipe.expire(staged, STAGING_TTL_SECONDS)
                        await self._guard(pipe.execute())
                    count += len(chunk)
            if count:
                await self._run("dnc", "publish", batch, customer=customer)
        except BaseException:
            if count:
                with anyio.move_on_after(DISCARD_SECONDS, shield=True):
                    await self._guard(self._connected().unlink(staged))
            raise
        if count:
            with anyio.CancelScope(shield=True):
                await self._move_dnc_batch(batch, customer)
        return count

    async def _move_dnc_batch(self, batch: str, customer: str) -> None:
        while int(await self._run("dnc", "move", batch, self.import_chunk, customer=customer)) > 0:
            pass

    async def _finish_dnc_imports(self) -> None:
        """List the numbers of imports that were published but not moved (their
        importer died), customer by customer."""
        for customer in await self._slots():
            batches = await self._guard(
                self._connected().smembers(self._ckey(customer, "dnc_publishing"))
            )
            for batch in batches:
                name = batch.decode() if isinstance(batch, bytes) else batch
                await self._move_dnc_batch(name, customer)

    async def dnc_listed(self, customer_id: str, numbers: Sequence[str]) -> set[str]:
        unique = list(dict.fromkeys(numbers))
        if not unique:
            return set()
        flags = await self._guard(
            self._connected().smismember(self._ckey(customer_id, "dnc", customer_id), unique)
        )
        return {number for number, flag in zip(unique, flags, strict=True) if flag}

    async def _recover(self) -> None:
        await self._finish_dnc_imports()
