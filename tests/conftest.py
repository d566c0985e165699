"""Session fixtures shared by every test layer: a real redis-server on a free port, and a
real Redis Cluster (started lazily, by the tests that use it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.chaoslib.redis_cluster import RedisClusterRig
from scripts.lib.daemon import free_port


class RedisServer:
    """A redis-server process owned by the test session, on loopback only."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run scripts/test, which installs it")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._cmd = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            "--protected-mode", "yes",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            self._cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def clients(self) -> int:
        """How many connections the server has open, less the one that asks."""
        import redis

        with redis.Redis.from_url(self.url) as admin:
            return int(admin.info("clients")["connected_clients"]) - 1

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database of the session's redis-server."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterRig]:
    """A Redis Cluster (3 primaries, 1 replica each) for the session, started only when a
    test asks for it; stopped by PID at the end."""
    rig = RedisClusterRig(tmp_path_factory.mktemp("redis-cluster"))
    yield rig
    rig.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterRig) -> str:
    """The session's cluster, emptied (every primary flushed); a seed node's URL."""
    redis_cluster.flush()
    return redis_cluster.url
