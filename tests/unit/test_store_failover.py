"""What the Redis store makes of the primaries its connections reach (``Failover``):
a primary replaced in a failover is never written to again."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from dialerd.redis_pool import Primary
from dialerd.store.redis.failover import Failover

OLD = Primary(role="master", replid="a" * 40, address="127.0.0.1:7001")
NEW = Primary(role="master", replid="b" * 40, address="127.0.0.1:7002")


def test_a_connection_to_a_primary_replaced_is_refused_and_the_pool_wants_the_new_one() -> None:
    failover = Failover("redis store test", sentinels=True)
    failover.reached(OLD)
    assert failover.current() == OLD.replid
    failover.reached(NEW)
    assert failover.pending
    # Seen, not yet written back: a pooled connection to the old primary is reopened.
    assert failover.current() == NEW.replid
    # The old primary continued (it was paused) and still answers as a master.
    with pytest.raises(RedisConnectionError, match="replaced"):
        failover.reached(OLD)
    assert failover.written_back(failover.generation, 0.0)
    assert failover.current() == NEW.replid
    with pytest.raises(RedisConnectionError, match="replaced"):
        failover.reached(OLD)
    failover.reached(NEW)
    assert not failover.pending
    assert failover.count == 1


def test_a_cluster_leaves_the_check_to_each_node() -> None:
    failover = Failover("redis cluster store test", per_node=True)
    failover.reached(OLD)
    assert failover.current() is None


def test_one_server_whose_old_id_comes_back_is_a_failover_again() -> None:
    # One server (no sentinels) restarted from an older file: not refused (that would
    # be an outage until a restart), but written back to again.
    failover = Failover("redis store test")
    failover.reached(OLD)
    failover.reached(NEW)
    assert failover.written_back(failover.generation, 0.0)
    failover.reached(OLD)
    assert failover.pending
    assert failover.current() == OLD.replid


def test_on_a_cluster_a_promoted_replica_replaces_the_primary_it_followed() -> None:
    failover = Failover("redis cluster store test", per_node=True)
    follower = Primary(role="slave", replid=OLD.replid, address=NEW.address)
    failover.reached(OLD)
    failover.reached(follower)
    failover.opened = True
    assert failover.usable("master", OLD.replid)
    # A connection opened to a replica is opened again before each use: the replica
    # may have been promoted since, and the store must see that before it writes.
    assert not failover.usable("slave", OLD.replid)
    failover.reached(
        Primary(role="master", replid=NEW.replid, address=NEW.address, replid2=OLD.replid)
    )
    assert failover.pending
    # Connections opened to the old primary before the failover are not used again...
    assert not failover.usable("master", OLD.replid)
    assert failover.usable("master", NEW.replid)
    # ... and the old primary, continued and still a master until it hears of the
    # promotion, is refused (what it took would be lost when it is demoted).
    with pytest.raises(RedisConnectionError, match="replaced"):
        failover.reached(OLD)
    # Demoted, it follows the new primary: a replica, reached without complaint.
    failover.reached(Primary(role="slave", replid=NEW.replid, address=OLD.address))
    assert failover.count == 1


def test_another_instance_s_lease_is_not_taken_for_a_ttl_after_the_write_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The owner of a lease that expired on the new primary (its renewals were lost)
    # may see the failover later than this instance: it writes back within a ttl.
    clock = [1000.0]
    monkeypatch.setattr("dialerd.store.redis.failover.time.monotonic", lambda: clock[0])
    failover = Failover("redis store test", sentinels=True)
    assert not failover.takeover_held(15.0)  # no failover seen: leases as usual
    failover.reached(OLD)
    failover.reached(NEW)
    assert failover.written_back(failover.generation, 2.0)
    assert failover.takeover_held(15.0)
    clock[0] += 2.5  # claims resume after the settle, takeovers not yet
    assert failover.settling() == 0
    assert failover.takeover_held(15.0)
    clock[0] += 12.6
    assert not failover.takeover_held(15.0)


def test_the_sentinels_naming_another_primary_reopen_the_connections_to_this_one() -> None:
    failover = Failover("redis store test", sentinels=True)
    failover.reached(OLD)
    failover.confirm(OLD.address)
    assert failover.usable("master", OLD.replid)
    # They name another: a failover this instance missed (the old primary still answers).
    failover.confirm(NEW.address)
    assert not failover.usable("master", OLD.replid)
    assert not failover.pending
    # Reopened through them, the connection reaches the new primary: written back to.
    failover.reached(NEW)
    assert failover.pending
    with pytest.raises(RedisConnectionError, match="replaced"):
        failover.reached(OLD)
    assert failover.written_back(failover.generation, 0.0)
    failover.confirm(NEW.address)
    assert failover.usable("master", NEW.replid)


def test_the_sentinels_naming_the_same_primary_again_settle_the_doubt() -> None:
    # A sentinel that answered late named another; reopened, the connection reaches the
    # same primary: it is used on, and nothing is written back.
    failover = Failover("redis store test", sentinels=True)
    failover.reached(OLD)
    failover.confirm(NEW.address)
    assert not failover.usable("master", OLD.replid)
    failover.reached(OLD)
    assert failover.usable("master", OLD.replid)
    assert not failover.pending
    assert failover.count == 0
