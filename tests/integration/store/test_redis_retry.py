"""A pool's Redis connections (one server, the primary Sentinel names) never send a
command again by themselves: a script whose reply did not come in time may have run
(or may still be running), and sent again it would run twice (a claim, an end). The
timeout is the store's outage; the caller retries with its own checks. (A cluster
client keeps redis-py's retries: ``dialerd.redis_pool.no_retry``.)"""

from __future__ import annotations

import pytest
import redis.asyncio
from redis.exceptions import TimeoutError as RedisTimeoutError

from dialerd.redis_pool import connection_pool

# Counts its runs, then keeps the server busy for longer than the client waits.
COUNT_THEN_BUSY = """
local runs = redis.call('INCR', KEYS[1])
local started = redis.call('TIME')
local function elapsed()
  local now = redis.call('TIME')
  return (now[1] - started[1]) * 1000000 + (now[2] - started[2])
end
while elapsed() < tonumber(ARGV[1]) do end
return runs
"""
KEY = "dtest:{c:retry}:runs"
# The client waits this long for a reply; the script runs three times as long.
TIMEOUT = 0.2
BUSY_MICROS = 600_000


async def _runs_after_a_timed_out_script(
    client: redis.asyncio.Redis, reader: redis.asyncio.Redis
) -> int:
    """Run the script on ``client`` (its reply times out), then read how many times it
    ran with ``reader`` (which waits long enough: its read queues behind the script)."""
    script = client.register_script(COUNT_THEN_BUSY)
    with pytest.raises(RedisTimeoutError):
        await script(keys=[KEY], args=[BUSY_MICROS])
    return int(await reader.get(KEY))


async def test_a_script_whose_reply_times_out_runs_once_on_one_server(redis_url: str) -> None:
    client = redis.asyncio.Redis(
        connection_pool=connection_pool(redis_url, pool_size=2, timeout=TIMEOUT)
    )
    reader = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await _runs_after_a_timed_out_script(client, reader) == 1
    finally:
        await client.aclose(close_connection_pool=True)
        await reader.aclose()
