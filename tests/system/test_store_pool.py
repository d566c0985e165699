"""Many API requests at once on a Redis store whose connection pool is small: each
waits a bounded time for a connection, then is answered (a 503 saying the store is busy
when none came in time, counted in ``dialerd_store_pool_exhausted_total``), never a 500
or a traceback; the daemon stays ready."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import RedisServer
from tests.system.daemon_process import TOKEN, DaemonProcess, create_campaign

REQUESTS = 300


def test_requests_beyond_the_store_pool_wait_then_get_a_clear_503(tmp_path: Path) -> None:
    redis = RedisServer(_workdir(tmp_path))
    config = (
        f'[store]\nbackend = "redis"\n[store.redis]\nurl = "{redis.url}"\n'
        "pool_size = 1\ntimeout = 0.1\n"
    )
    daemon = DaemonProcess(
        tmp_path / "daemon", extra_config=config, api="max_requests_per_customer = 1000"
    )
    try:
        daemon.wait_ready()
        daemon.wait_healthy(answers=(200,))
        for _ in range(3):
            create_campaign(daemon.http, targets=5)

        def get(client: httpx.Client) -> httpx.Response:
            return client.get("/v1.0/campaigns")

        limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=0)
        with (
            httpx.Client(
                base_url=daemon.base,
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
                limits=limits,
            ) as client,
            ThreadPoolExecutor(max_workers=64) as pool,
        ):
            answers = list(pool.map(lambda _: get(client), range(REQUESTS)))
        statuses = {answer.status_code for answer in answers}
        assert statuses <= {200, 503}, statuses
        refused = [answer for answer in answers if answer.status_code == 503]
        # One connection for 64 requests at a time: most wait past the timeout.
        assert refused
        for answer in refused:
            error = answer.json()
            assert error["error"]["reason"] == "STORE_UNAVAILABLE", error
            # The server is up: it is this process's pool that is busy.
            assert error["error"]["message"] == "the store is busy; try again", error
        assert _exhausted(daemon) >= len(refused)
        assert "Traceback" not in daemon.stderr_path.read_text()
        assert not [line for line in daemon.log_lines() if line.get("event") == "request failed"]
        assert daemon.http.get("/v1.0/campaigns").status_code == 200
        assert daemon.stop() == 0
    finally:
        daemon.close()
        redis.stop()


def _workdir(tmp_path: Path) -> Path:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    return workdir


def _exhausted(daemon: DaemonProcess) -> float:
    """``dialerd_store_pool_exhausted_total`` as the daemon's /metrics shows it."""
    for line in daemon.ops.get("/metrics").text.splitlines():
        if line.startswith("dialerd_store_pool_exhausted_total "):
            return float(line.split()[1])
    raise AssertionError("dialerd_store_pool_exhausted_total not exported")
