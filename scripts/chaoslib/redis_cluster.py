"""A Redis Cluster on loopback: six ``redis-server --cluster-enabled yes`` processes on
free 127.0.0.1 ports (three primaries, one replica each, made by ``redis-cli --cluster
create``), started and stopped by PID. What the cluster tests, the chaos scenario and
``scripts/bench-processes --cluster`` run on. Every wait is a bounded poll."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

PRIMARIES = 3
# A node not answering this long is failed by the others (and its replica promoted).
NODE_TIMEOUT_MS = 1000
START_WAIT = 30.0
PROMOTE_WAIT = 30.0


def _cluster_port() -> int:
    """A free loopback port whose cluster bus port (10000 higher) is free too: Redis
    wants both, so the port is at most 55535."""
    for _ in range(1000):
        port = random.randint(20000, 55000)
        try:
            for each in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", each))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of loopback ports for a cluster node")


def _client(port: int) -> redis.Redis:
    # No retries: a paused node costs one timeout, not redis-py's default four with
    # back-off (seconds, during which a fault meant to last half a second goes on).
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: run scripts/test, which installs it")
    return found


def _command(port: int, *args: Any) -> Any:
    """A command's reply from the node on ``port``; None when it does not answer."""
    client = _client(port)
    try:
        return client.execute_command(*args)
    except redis.RedisError:
        return None
    finally:
        client.close()


class RedisClusterRig:
    """Three primaries and three replicas of one Redis Cluster, all on 127.0.0.1."""

    def __init__(self, workdir: Path, *, primaries: int = PRIMARIES) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.servers: dict[int, subprocess.Popen[bytes]] = {}
        # Nodes SIGSTOPped now: never asked what the cluster looks like (they cannot
        # answer, and each question would wait for its timeout).
        self.paused: set[int] = set()
        # A primary killed or stopped -> its replica then (the one to be promoted).
        self._failing: dict[int, int | None] = {}
        ports: list[int] = []
        while len(ports) < primaries * 2:
            port = _cluster_port()
            if port not in ports:
                ports.append(port)
        try:
            for port in ports:
                self._start_server(port)
            for port in ports:
                self._wait(lambda port=port: _command(port, "PING") is not None, f"node {port}")
            subprocess.run(
                [_binary("redis-cli"), "--cluster", "create",
                 *(f"127.0.0.1:{port}" for port in ports),
                 "--cluster-replicas", "1", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
            )  # fmt: skip
            self._wait(self._ready, "cluster_state:ok on every node, each primary with a replica")
        except BaseException:
            self.stop()
            raise

    @property
    def ports(self) -> list[int]:
        return sorted(self.servers)

    @property
    def url(self) -> str:
        """A seed node's URL, what ``[store.redis] url`` takes with ``cluster = true``."""
        return f"redis://127.0.0.1:{self.primaries()[0]}/0"

    def _start_server(self, port: int) -> None:
        command = [
            _binary("redis-server"),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.workdir / f"nodes-{port}.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--dbfilename", f"dump-{port}.rdb",
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
            "--logfile", str(self.workdir / f"redis-{port}.log"),
        ]  # fmt: skip
        self.servers[port] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    # -- what the cluster looks like -----------------------------------------------------
    def nodes(self, via: int | None = None) -> list[dict[str, Any]]:
        """``CLUSTER NODES`` as one node sees it: port, id, role, primary id, flags."""
        asked = [via] if via is not None else [p for p in self.ports if p not in self.paused]
        for port in asked:
            text = _command(port, "CLUSTER", "NODES")
            if text is None:
                continue
            if isinstance(text, bytes):
                text = text.decode()
            found = []
            for line in str(text).splitlines():
                fields = line.split()
                flags = fields[2].split(",")
                found.append(
                    {
                        "id": fields[0],
                        "port": int(fields[1].split("@")[0].rsplit(":", 1)[1]),
                        "primary": "master" in flags,
                        "failed": "fail" in flags or "fail?" in flags,
                        "primary_id": fields[3],
                        "slots": fields[8:],
                    }
                )
            return found
        return []

    def primaries(self) -> list[int]:
        """The ports of the primaries that serve slots, as the first answering node says."""
        return sorted(n["port"] for n in self.nodes() if n["primary"] and n["slots"])

    def replica_of(self, port: int) -> int | None:
        nodes = self.nodes()
        ids = {n["port"]: n["id"] for n in nodes}
        for node in nodes:
            if not node["primary"] and node["primary_id"] == ids.get(port):
                return int(node["port"])
        return None

    def primary_of_slot(self, slot: int) -> int | None:
        for node in self.nodes():
            for span in node["slots"]:
                if span.startswith("["):
                    continue
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    return int(node["port"])
        return None

    def _state_ok(self, port: int) -> bool:
        info = _command(port, "CLUSTER", "INFO")
        if isinstance(info, bytes):
            info = info.decode()
        return info is not None and "cluster_state:ok" in str(info)

    def _ready(self) -> bool:
        running = [
            port for port, p in self.servers.items() if p.poll() is None and port not in self.paused
        ]
        if not all(self._state_ok(port) for port in running):
            return False
        primaries = self.primaries()
        replicas = [self.replica_of(port) for port in primaries]
        return (
            len(primaries) >= 1
            and all(replicas)
            # Each replica in sync with its primary: only such a replica can be promoted.
            and all(self._in_sync(port) for port in replicas if port is not None)
            # ... and each primary counting it (what WAIT counts).
            and all(self._replicated(port) for port in primaries)
        )

    def _replicated(self, port: int) -> bool:
        info = _command(port, "INFO", "replication")
        replica = info.get("slave0") if isinstance(info, dict) else None
        return isinstance(replica, dict) and replica.get("state") == "online"

    def _in_sync(self, port: int) -> bool:
        info = _command(port, "INFO", "replication")
        return isinstance(info, dict) and info.get("master_link_status") == "up"

    # -- faults ----------------------------------------------------------------------------
    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (by its PID)."""
        self._failing[port] = self.replica_of(port)
        self.paused.discard(port)
        process = self.servers.pop(port)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def pause(self, port: int) -> None:
        """SIGSTOP a node: to its peers, a partition."""
        self._failing[port] = self.replica_of(port)
        os.kill(self.servers[port].pid, signal.SIGSTOP)
        self.paused.add(port)

    def resume(self, port: int) -> None:
        os.kill(self.servers[port].pid, signal.SIGCONT)
        self.paused.discard(port)

    def cut_replicas_of(self, port: int) -> None:
        """Close a primary's links to its replicas (paused first, they do not come
        back at once): what it takes from now on reaches no replica."""
        _command(port, "CLIENT", "KILL", "TYPE", "replica")

    def wait_promoted(self, old: int) -> int:
        """Wait until the replica of the failed primary on ``old`` serves its slots (as
        it says itself); the new primary's port."""
        replica = self._failing.get(old)

        def promoted() -> bool:
            if replica is None:
                return False
            # The moment it serves the slots: it says so itself (the other nodes' view
            # and their cluster_state follow within a moment).
            seen = {n["port"]: n for n in self.nodes(via=replica)}
            node = seen.get(replica)
            return node is not None and node["primary"] and bool(node["slots"])

        self._wait(promoted, f"the replica of {old} promoted", PROMOTE_WAIT)
        assert replica is not None
        return int(replica)

    def restart(self, port: int) -> None:
        """Start a killed node again on its port (it rejoins, as a replica of the node
        that took its slots)."""
        self._start_server(port)
        self._wait(lambda: _command(port, "PING") is not None, f"node {port} back")

    def heal(self, port: int) -> None:
        """Bring a killed (or stopped) node back and wait until it serves again as a
        replica and every primary has one."""
        process = self.servers.get(port)
        if process is None:
            self.restart(port)
        else:
            self.resume(port)
        self._wait(self._ready, f"node {port} back as a replica", PROMOTE_WAIT)

    def flush(self) -> None:
        """Empty every primary (between tests)."""
        for port in self.primaries():
            _command(port, "FLUSHALL")

    def stop(self) -> None:
        """Stop every process by its PID (a paused one is resumed first)."""
        for process in self.servers.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.terminate()
        for process in self.servers.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    @staticmethod
    def _wait(condition: Callable[[], bool], what: str, limit: float = START_WAIT) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")


def slot_of(key: str) -> int:
    """The hash slot of a key (its hash tag's, when it has one)."""
    from redis.crc import key_slot

    return int(key_slot(key.encode()))
