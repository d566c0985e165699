"""The API served by Hypercorn inside a task group that keeps ownership of signals."""

from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path

import anyio
import httpx
import pytest

from dialerd.api.app import create_app
from dialerd.api.server import bind_socket, serve_api
from dialerd.campaigns import CampaignService
from dialerd.service.clock import SystemClock
from dialerd.store.sqlite import SqliteStore
from tests.conftest import free_port
from tests.integration.api.api_conftest import TOKEN_A, api_config


async def test_serve_api_answers_once_started_and_stops_on_the_trigger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(tmp_path / "api.sqlite3")
    await store.open()
    clock = SystemClock()
    app = create_app(
        store=store, campaigns=CampaignService(store, clock), clock=clock, config=api_config()
    )
    listen = f"127.0.0.1:{free_port()}"
    stop = anyio.Event()
    sigterm_before = signal.getsignal(signal.SIGTERM)
    caplog.set_level(logging.DEBUG)
    try:
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tasks:
                await tasks.start(lambda task_status: serve_api(
                    app, listen, shutdown_trigger=stop.wait, task_status=task_status
                ))  # fmt: skip
                # No retry loop: once started() was called, the socket accepts.
                headers = {"authorization": f"Bearer {TOKEN_A}"}
                async with httpx.AsyncClient(base_url=f"http://{listen}") as client:
                    response = await client.get("/v1.0/campaigns", headers=headers)
                assert response.status_code == 200
                assert signal.getsignal(signal.SIGTERM) == sigterm_before
                stop.set()
    finally:
        await store.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(listen.rsplit(":", 1)[1])), timeout=1)
    assert TOKEN_A not in caplog.text
    assert "GET /v1.0/campaigns" not in caplog.text  # no access log lines


def test_a_busy_address_is_a_clear_error() -> None:
    taken = bind_socket("127.0.0.1:0")
    try:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_socket(f"127.0.0.1:{port}")
    finally:
        taken.close()
