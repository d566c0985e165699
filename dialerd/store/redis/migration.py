"""Key layout 2 -> 3, at ``open``: every key of a customer's data moves under the
customer's tag, ``P:{c:<customer>}:...`` (what Redis Cluster needs: one customer's keys on
one slot, so each script runs on one node), and the indexes that spanned customers are
split per customer.

Run on the single Redis the data is on (a cluster refuses a store of an older layout:
migrate it on one server, then move it with ``redis-cli --cluster import``). Every step
is idempotent (a key already moved is skipped, a split set is merged into the tagged
one), so instances opening at once, or one interrupted and opened again, finish it; the
caller writes ``P:layout`` last.

What layout 2 names by customer moves to that customer; what it names by a campaign,
outdial, outplan or attempt moves to that resource's customer (the ``c`` field of its
hash), a target to its outdial's customer; ``P:where:<id>`` is written for each of those
resources and ``P:customers`` lists every customer. The cross-customer sets (``status``,
``active``, ``event_customers``, ``events_delivered``, ``events_delivered_count``,
``dnc_publishing``) are split; ``acknowledged`` is dropped (a marker).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dialerd.store.redis.fields import glob_escape

if TYPE_CHECKING:
    from dialerd.store.redis.connection import RedisConnection

# Keys renamed per pipelined round trip.
CHUNK = 500
RESOURCES = ("campaign", "outplan", "outdial", "campaigncall")
BY_CUSTOMER = (
    "campaigns",
    "outplans",
    "outdials",
    "campaigncalls",
    "locks",
    "attempts",
    "dnc",
    "dnc_entries",
    "dnc_listing",
    "events",
    "events_failed",
)
BY_OUTDIAL = (
    "targets",
    "ready",
    "waiting",
    "waiting_held",
    "held",
    "done_held",
    "progressing",
    "seq",
    "fresh",
    "retry",
)
BY_CAMPAIGN = (
    "active",
    "dialing",
    "abandonment",
    "pacing_prior",
    "lease",
    "lease_token",
    "lease_holder",
)
GLOBAL = ("layout", "customers", "where", "webhooks")
SPLIT_SETS = ("active", "dnc_publishing", "event_customers")
SPLIT_HASHES = ("events_delivered", "events_delivered_count")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Migration:
    """One run of the 2 -> 3 migration over a connection (untagged names read, tagged
    names written)."""

    def __init__(self, connection: RedisConnection) -> None:
        self.connection = connection
        self.client = connection._connected()
        self.prefix = connection.prefix
        self.owners: dict[str, str] = {}
        self.batches: dict[str, str] = {}
        self.customers: set[str] = set()

    def tagged(self, customer: str, rest: str) -> str:
        return f"{self.prefix}:{{c:{customer}}}:{rest}"

    async def names(self, pattern: str) -> list[str]:
        found = []
        match = f"{glob_escape(self.prefix)}:{pattern}"
        async for name in self.client.scan_iter(match=match, count=1000):
            found.append(_text(name))
        return found

    async def run(self) -> None:
        guard = self.connection._guard
        # 1. Each resource's customer, and where lookups by id find it.
        for kind in RESOURCES:
            names = await self.names(f"{kind}:*")
            for start in range(0, len(names), CHUNK):
                chunk = names[start : start + CHUNK]
                pipe = self.client.pipeline(transaction=False)
                for name in chunk:
                    pipe.hget(name, "c")
                owners = await guard(pipe.execute())
                pipe = self.client.pipeline(transaction=False)
                moves = []
                for name, owner in zip(chunk, owners, strict=True):
                    if owner is None:
                        continue
                    resource_id, customer = name.rsplit(":", 1)[1], _text(owner)
                    self.owners[resource_id] = customer
                    pipe.set(f"{self.prefix}:where:{resource_id}", customer)
                    moves.append((name, customer))
                await guard(pipe.execute())
                await self.rename(moves)
        # The tagged names already written (a second run) tell theirs too.
        wheres = await self.names("where:*")
        for start in range(0, len(wheres), CHUNK):
            chunk = wheres[start : start + CHUNK]
            values = await guard(self.client.mget(chunk))
            for name, value in zip(chunk, values, strict=True):
                if value is not None:
                    self.owners.setdefault(name.rsplit(":", 1)[1], _text(value))
        # 2. Targets: to their outdial's customer (and the batch they came with).
        targets = await self.names("target:*")
        for start in range(0, len(targets), CHUNK):
            chunk = targets[start : start + CHUNK]
            pipe = self.client.pipeline(transaction=False)
            for name in chunk:
                pipe.hmget(name, "o", "p")
            fields = await guard(pipe.execute())
            moves = []
            for name, (outdial, batch) in zip(chunk, fields, strict=True):
                customer = self.owners.get(_text(outdial), "") if outdial is not None else ""
                if batch is not None:
                    self.batches[_text(batch)] = customer
                moves.append((name, customer))
            await self.rename(moves)
        # 3. Everything else, by what its name says.
        moves = []
        splits = []
        for name in await self.names("*"):
            rest = name[len(self.prefix) + 1 :]
            if rest.startswith("{"):
                continue
            parts = rest.split(":")
            kind = parts[0]
            if kind in GLOBAL or kind in RESOURCES or kind == "target":
                continue
            if kind == "status" or (len(parts) == 1 and kind in SPLIT_SETS):
                splits.append((name, kind))
            elif len(parts) == 1 and kind in SPLIT_HASHES:
                await self.split_hash(name, kind)
            elif kind == "acknowledged":
                await guard(self.client.delete(name))
            elif kind in BY_CUSTOMER and len(parts) > 1:
                moves.append((name, parts[1]))
            elif kind in BY_OUTDIAL and len(parts) > 1:
                moves.append((name, self.owners.get(parts[1], "")))
            elif kind in BY_CAMPAIGN and len(parts) > 1:
                # A lease of the event sender is named events:<customer>.
                owner = parts[2] if parts[1] == "events" and len(parts) > 2 else None
                moves.append((name, owner or self.owners.get(parts[1], "")))
            elif kind in ("import", "imported") and len(parts) > 1 and parts[1] in self.batches:
                moves.append((name, self.batches[parts[1]]))
            elif kind == "dnc_staged" and len(parts) > 1:
                first = await guard(self.client.lindex(name, 0))
                customer = json.loads(first).get("customer_id", "") if first else ""
                self.batches[parts[1]] = customer
                moves.append((name, customer))
        await self.rename(moves)
        for name, kind in splits:
            await self.split_set(name, kind)
        for customer in [c for c in self.owners.values() if c] + sorted(self.customers):
            self.customers.add(customer)
        if self.customers:
            await guard(self.client.sadd(f"{self.prefix}:customers", *sorted(self.customers)))

    async def rename(self, moves: list[tuple[str, str]]) -> None:
        """RENAME each key to its customer's tagged name (one gone already is skipped)."""
        for start in range(0, len(moves), CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for name, customer in moves[start : start + CHUNK]:
                if customer:
                    self.customers.add(customer)
                pipe.rename(name, self.tagged(customer, name[len(self.prefix) + 1 :]))
            await self.connection._guard(pipe.execute(raise_on_error=False))

    async def split_set(self, name: str, kind: str) -> None:
        """A set of ids of several customers, into each customer's set of that name."""
        members = [_text(m) for m in await self.connection._guard(self.client.smembers(name))]
        pipe = self.client.pipeline(transaction=False)
        for member in members:
            if kind == "event_customers":
                self.customers.add(member)
                continue
            owner = self.batches.get(member, "") if kind == "dnc_publishing" else None
            customer = owner if owner is not None else self.owners.get(member, "")
            pipe.sadd(self.tagged(customer, name[len(self.prefix) + 1 :]), member)
        pipe.delete(name)
        await self.connection._guard(pipe.execute())

    async def split_hash(self, name: str, kind: str) -> None:
        """A hash customer -> value, into each customer's hash (same field)."""
        fields = await self.connection._guard(self.client.hgetall(name))
        pipe = self.client.pipeline(transaction=False)
        for field, value in fields.items():
            customer = _text(field)
            self.customers.add(customer)
            pipe.hset(self.tagged(customer, kind), customer, value)
        pipe.delete(name)
        await self.connection._guard(pipe.execute())
