"""A stop while a request has body chunks it has not read: the daemon still exits.

Hypercorn queues at most 10 body chunks per request and, when the request's task ends,
puts ``http.disconnect`` behind them. A request cancelled at the graceful timeout while
its handler was not reading (here: waiting for a store that does not answer) used to
wait forever for room in that queue, and the stop with it."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.conftest import RedisServer
from tests.system.daemon_process import TOKEN, WAIT_SECONDS, DaemonProcess

# Body pieces sent one by one (each its own read on the daemon's side): more than
# Hypercorn's queue of 10 holds.
PIECES = 40


def test_a_stop_ends_while_a_request_waits_for_the_store_with_its_body_unread(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    redis = RedisServer(workdir)
    assert redis.process is not None
    # A store call that does not answer lasts longer than the API's graceful timeout.
    extra = f'[store]\nbackend = "redis"\n[store.redis]\nurl = "{redis.url}"\ntimeout = 20\n'
    daemon = DaemonProcess(tmp_path, extra_config=extra)
    try:
        daemon.wait_ready()
        outdial = daemon.http.post("/v1.0/outdials", json={"name": "leads"}).json()["id"]
        redis.process.send_signal(signal.SIGSTOP)
        with socket.create_connection(("127.0.0.1", daemon.port)) as client:
            client.sendall(
                f"POST /v1.0/outdials/{outdial}/targets HTTP/1.1\r\nHost: dialerd\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Type: text/csv\r\n"
                "Content-Length: 10000000\r\n\r\nname,destination_0\n".encode()
            )
            # The handler waits for the store before it reads the body: the pieces
            # pile up unread. Then the client stalls.
            for number in range(PIECES):
                client.sendall(b"lead%d,+1555010%04d\n" % (number, number) * 20)
                time.sleep(0.02)
            time.sleep(0.5)
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.process.wait(timeout=WAIT_SECONDS) == 0
        lines = daemon.log_lines()
        assert [line["event"] for line in lines if line["event"] == "dialerd stopped"]
    finally:
        redis.process.send_signal(signal.SIGCONT)
        daemon.close()
        redis.stop()
