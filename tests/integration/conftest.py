"""Fixtures of the store tests: one ``store`` per backend, and small resource factories."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from dialerd.model import (
    NIL_UUID,
    NOT_DELETED,
    Action,
    Address,
    AddressType,
    Campaign,
    CampaignStatus,
    CampaignType,
    EndHandle,
    Outdial,
    OutdialTarget,
    Outplan,
    format_time,
    new_id,
)
from dialerd.queues import QueueRef, QueueRegistry
from dialerd.store import AttemptPlan, Store
from dialerd.store.sqlite import SqliteStore

BACKENDS = ["sqlite", "redis"]
# Every test runs on its own timeline starting here; nothing reads the wall clock.
EPOCH = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
# A lease short enough to watch expire: Redis expires leases by its own clock.
SHORT_LEASE = 0.2


def at(seconds: float) -> datetime:
    """A moment ``seconds`` after the test's epoch."""
    return EPOCH + timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    """``at(seconds)`` as a reference timestamp string."""
    return format_time(at(seconds))


TEST_QUEUES = ("sales", "support")


def queue_of(customer_id: str, name: str = "sales") -> str:
    """The id of the customer's test queue whose backend name is ``name``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dialerd-test-queue:{customer_id}:{name}"))


def queues_of(*customers: str) -> QueueRegistry:
    """A registry with each customer's test queues (``TEST_QUEUES``, ids by ``queue_of``)."""
    return QueueRegistry(
        QueueRef(id=queue_of(customer, name), customer_id=customer, name=name)
        for customer in customers
        for name in TEST_QUEUES
    )


def tel(number: str) -> Address:
    """A telephone destination."""
    return Address(type=AddressType.TEL, target=number)


async def outlive_lease(store: Store, campaign_id: str, ttl: float, now: datetime) -> datetime:
    """Let the campaign's lease, last renewed at ``now`` for ``ttl`` seconds, run out.

    SQLite follows the ``now`` its callers pass: the returned moment is past the expiry.
    Redis keeps the time itself: this polls (bounded) until the lease is gone.
    """
    later = now + timedelta(seconds=ttl + 0.001)
    if store.backend == "redis":
        deadline = time.monotonic() + ttl + 5
        while await store.lease_owner(campaign_id) is not None:
            assert time.monotonic() < deadline, f"the lease of {campaign_id} never expired"
            await anyio.sleep(ttl / 10)
    return later


StoreMaker = Callable[[], Store]


def store_maker(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreMaker:
    """Makes unopened store instances of ``backend`` that all share the same data:
    ``sqlite``, ``redis`` (the session's redis-server) or ``cluster`` (the session's
    Redis Cluster, started by the first test that asks for it)."""
    if backend == "sqlite":
        path = tmp_path / "dialerd.sqlite3"
        return lambda: SqliteStore(path)
    # Imported here so the sqlite half of the suite runs without the redis backend.
    from dialerd.store.redis import RedisStore

    if backend == "cluster":
        cluster_url: str = request.getfixturevalue("redis_cluster_url")
        return lambda: RedisStore(
            url=cluster_url, prefix="dtest", pool_size=40, timeout=2.0, cluster=True
        )
    redis_url: str = request.getfixturevalue("redis_url")
    return lambda: RedisStore(url=redis_url, prefix="dtest", pool_size=40, timeout=2.0)


@pytest.fixture(params=BACKENDS)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreMaker:
    """Makes unopened store instances of one backend that all share the same data."""
    return store_maker(request.param, request, tmp_path)


@pytest.fixture
async def store(new_store: StoreMaker) -> AsyncIterator[Store]:
    """An open store of each backend, on empty data."""
    opened = new_store()
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def twin_store(new_store: StoreMaker, store: Store) -> AsyncIterator[Store]:
    """A second, separately opened instance on the same data as ``store``."""
    opened = new_store()
    await opened.open()
    yield opened
    await opened.close()


@dataclass(frozen=True)
class Dialing:
    """A customer's campaign with its outplan and outdial, stored and ready to dial."""

    campaign: Campaign
    outplan: Outplan
    outdial: Outdial

    def plan(self, now: datetime, campaigncall_id: str | None = None) -> AttemptPlan:
        """What the engine passes to ``start_attempt`` at ``now``."""
        return AttemptPlan(
            campaign=self.campaign,
            outplan=self.outplan,
            campaigncall_id=campaigncall_id or new_id(),
            reference_id=new_id(),
            activeflow_id=new_id(),
            now=now,
        )


class Factory:
    """Builds valid resources with uuid4 ids and controlled timestamps."""

    at = staticmethod(at)
    stamp = staticmethod(stamp)
    tel = staticmethod(tel)

    def campaign(
        self,
        customer_id: str,
        *,
        outplan_id: str = NIL_UUID,
        outdial_id: str = NIL_UUID,
        type: CampaignType = CampaignType.CALL,
        status: CampaignStatus = CampaignStatus.STOP,
        tm_create: str | None = None,
        name: str = "spring sale",
    ) -> Campaign:
        return Campaign(
            id=new_id(),
            customer_id=customer_id,
            type=type,
            name=name,
            detail="call every lead once a day",
            status=status,
            service_level=100,
            end_handle=EndHandle.STOP,
            # A flow campaign has no call to talk on (a 409 at run).
            actions=[Action(type="talk", option={"text": "hello", "language": "en-US"})]
            if type is CampaignType.CALL
            else [Action(type="variable_set", option={"key": "greeting", "value": "hello"})],
            outplan_id=outplan_id,
            outdial_id=outdial_id,
            queue_id=queue_of(customer_id),
            next_campaign_id=NIL_UUID,
            tm_create=tm_create or stamp(0),
            tm_update=None,
            tm_delete=NOT_DELETED,
        )

    def outplan(
        self,
        customer_id: str,
        *,
        max_try_counts: Sequence[int] = (3, 0, 0, 0, 0),
        try_interval: int = 0,
        tm_create: str | None = None,
    ) -> Outplan:
        counts = list(max_try_counts) + [0] * (5 - len(max_try_counts))
        return Outplan(
            id=new_id(),
            customer_id=customer_id,
            name="three tries",
            detail="",
            source=tel("+15550100"),
            dial_timeout=30000,
            try_interval=try_interval,
            max_try_count_0=counts[0],
            max_try_count_1=counts[1],
            max_try_count_2=counts[2],
            max_try_count_3=counts[3],
            max_try_count_4=counts[4],
            tm_create=tm_create or stamp(0),
            tm_update=None,
            tm_delete=NOT_DELETED,
        )

    def outdial(
        self, customer_id: str, *, campaign_id: str = NIL_UUID, tm_create: str | None = None
    ) -> Outdial:
        return Outdial(
            id=new_id(),
            customer_id=customer_id,
            campaign_id=campaign_id,
            name="leads",
            detail="",
            data="",
            tm_create=tm_create or stamp(0),
            tm_update=None,
            tm_delete=NOT_DELETED,
        )

    def target(
        self,
        outdial_id: str,
        *destinations: Address | None,
        tm_create: str | None = None,
        name: str = "",
    ) -> OutdialTarget:
        return OutdialTarget.fresh(
            outdial_id,
            destinations or (tel("+15550199"),),
            tm_create or stamp(0),
            name=name,
        )

    async def dialing(
        self,
        store: Store,
        *,
        max_try_counts: Sequence[int] = (3, 0, 0, 0, 0),
        try_interval: int = 0,
        type: CampaignType = CampaignType.CALL,
        customer_id: str | None = None,
    ) -> Dialing:
        """Store an outplan, an outdial and a running campaign dialing them."""
        customer = customer_id or new_id()
        outplan = await store.create_outplan(
            self.outplan(customer, max_try_counts=max_try_counts, try_interval=try_interval)
        )
        outdial = await store.create_outdial(self.outdial(customer))
        campaign = await store.create_campaign(
            self.campaign(
                customer,
                outplan_id=outplan.id,
                outdial_id=outdial.id,
                type=type,
                status=CampaignStatus.RUN,
            )
        )
        return Dialing(campaign=campaign, outplan=outplan, outdial=outdial)


@pytest.fixture
def make() -> Factory:
    """The resource factory."""
    return Factory()
