"""A Redis primary, two replicas and three sentinels on free loopback ports, started
and stopped by PID (Debian's redis-server and redis-sentinel, or ``redis-server
--sentinel``): what the failover tests and chaos scenarios kill, pause and watch
promote. Every wait is a bounded poll."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from scripts.lib.daemon import free_port

SERVICE = "dialerd-test"
QUORUM = 2
# Sentinels call a primary down after this long without an answer.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
# Waiting for processes to come up or for Sentinel to promote (bounded polls).
START_WAIT = 15.0
PROMOTE_WAIT = 30.0
RESYNC_WAIT = 60.0


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5, socket_connect_timeout=0.5)


def _info(port: int, section: str) -> dict[str, Any]:
    """The server's INFO section; {} when it does not answer."""
    client = _client(port)
    try:
        return dict(client.info(section))
    except redis.RedisError:
        return {}
    finally:
        client.close()


def _pings(port: int) -> bool:
    client = _client(port)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: run scripts/test, which installs it")
    return found


class SentinelTopology:
    """A primary, two replicas and three sentinels (quorum 2), all on 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.servers: dict[int, subprocess.Popen[bytes]] = {}
        self.sentinels: dict[int, subprocess.Popen[bytes]] = {}
        # The failovers the sentinels made on their own, as ``follow_sentinels`` found
        # them: (the port taken for the primary, the one they named instead).
        self.spurious: list[tuple[int, int]] = []
        try:
            self._start()
        except BaseException:
            # One that does not come up in time (a loaded machine) leaves no process
            # behind: a test's fixture never gets it to stop, and the processes left
            # running fail a later test on the same worker (ResourceWarning).
            self.stop()
            raise

    def _start(self) -> None:
        workdir = self.workdir
        self.primary_port = free_port()
        self._start_server(self.primary_port)
        for _ in range(2):
            self._start_server(free_port(), replica_of=self.primary_port)
        self._wait(lambda: self.connected_replicas(self.primary_port) == 2, "replicas in sync")
        sentinel_binary = shutil.which("redis-sentinel")
        for n in range(3):
            port = free_port()
            config = workdir / f"sentinel-{n}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                f"logfile {workdir / f'sentinel-{n}.log'}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 2\n"
            )
            command = (
                [sentinel_binary, str(config)]
                if sentinel_binary
                else [_binary("redis-server"), str(config), "--sentinel"]
            )
            self.sentinels[port] = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        self._wait(self._sentinels_agree, "sentinels watching the primary and each other")

    @property
    def addresses(self) -> list[str]:
        """The sentinels as ``[store.redis] sentinels`` lists them."""
        return [f"127.0.0.1:{port}" for port in self.sentinels]

    def url(self, db: int = 0) -> str:
        """The URL of the store config (sentinels name the host; this gives the db)."""
        return f"redis://127.0.0.1:{self.primary_port}/{db}"

    # -- the servers ---------------------------------------------------------------------
    def _start_server(self, port: int, *, replica_of: int | None = None) -> None:
        command = [
            _binary("redis-server"),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--dbfilename", f"dump-{port}.rdb",
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if replica_of is not None:
            command += ["--replicaof", "127.0.0.1", str(replica_of)]
        command += ["--logfile", str(self.workdir / f"redis-{port}.log")]
        self.servers[port] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait(lambda: _pings(port), f"redis-server on {port}")

    def connected_replicas(self, port: int) -> int:
        return int(_info(port, "replication").get("connected_slaves", "0") or 0)

    def _sentinels_agree(self) -> bool:
        for port in self.sentinels:
            master = _info(port, "sentinel").get("master0")
            if not isinstance(master, dict):
                return False
            if master.get("address") != f"127.0.0.1:{self.primary_port}":
                return False
            if master.get("slaves") != 2 or master.get("sentinels") != 3:
                return False
        return True

    def sentinel_primary(self) -> int | None:
        """The primary's port as the first sentinel that answers names it."""
        for port in self.sentinels:
            named = self._named_by(port)
            if named is not None:
                return named
        return None

    def _named_by(self, sentinel: int) -> int | None:
        """The primary's port as one sentinel names it (None: no answer)."""
        client = _client(sentinel)
        try:
            reply = client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
        except redis.RedisError:
            return None
        finally:
            client.close()
        return int(reply[1]) if reply else None

    def agreed_primary(self) -> int | None:
        """The primary's port as every sentinel that answers (a quorum at least) names
        it, once it answers as a master; None while they disagree (a failover under way:
        the others learn it from its leader within seconds) or it does not."""
        answers = [port for port in map(self._named_by, self.sentinels) if port is not None]
        if len(answers) < QUORUM or len(set(answers)) != 1:
            return None
        agreed = answers[0]
        if _info(agreed, "replication").get("role") != "master":
            return None
        return agreed

    def follow_sentinels(self) -> int | None:
        """Ask the sentinels which server is the primary now, and act on that one from
        here on. With ``down-after`` at 1 s, the sentinels of a loaded host sometimes
        fail over by themselves, from a primary nobody touched (a spurious failover):
        then the server this topology took for the primary is a replica now. The port
        it took for the primary when that happened (counted in ``spurious``), else
        None."""
        self._wait(lambda: self.agreed_primary() is not None, "the sentinels to agree on a primary")
        named = self.agreed_primary()
        if named is None or named == self.primary_port:
            return None
        old, self.primary_port = self.primary_port, named
        self.spurious.append((old, named))
        return old

    def switches(self) -> int:
        """Failovers the sentinels made (``+switch-master`` in their logs; the most any
        one of them logged, as one may learn two quick ones at once)."""
        counts = [
            path.read_text(errors="replace").count("+switch-master")
            for path in self.workdir.glob("sentinel-*.log")
        ]
        return max(counts, default=0)

    def kill_primary(self) -> int:
        """SIGKILL the primary (its PID); its port."""
        port = self.primary_port
        process = self.servers.pop(port)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        return port

    def pause(self, port: int) -> None:
        """SIGSTOP a server: to its peers, a partition."""
        os.kill(self.servers[port].pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self.servers[port].pid, signal.SIGCONT)

    def cut_replicas(self) -> list[int]:
        """Pause the replicas and close the primary's links to them: what the primary
        takes from now on reaches no replica (the replicas' ports)."""
        replicas = self.replica_ports()
        for port in replicas:
            self.pause(port)
        client = _client(self.primary_port)
        try:
            client.execute_command("CLIENT", "KILL", "TYPE", "replica")
        finally:
            client.close()
        return replicas

    def replica_ports(self) -> list[int]:
        return [port for port in self.servers if port != self.primary_port]

    def restart_as_replica(self, port: int) -> None:
        """Start a killed server again on its port, as a replica of the primary the
        sentinels name now (they may have failed over again meanwhile, on their own;
        they take it back as one)."""
        self._wait(lambda: self.agreed_primary() is not None, "the sentinels to agree")
        self._start_server(port, replica_of=self.agreed_primary() or self.primary_port)

    def wait_replicas(self, count: int = 1) -> None:
        """Wait until the primary the sentinels name has ``count`` replicas again (one is
        a candidate for the next promotion; Sentinel brings the other back in its own
        time)."""

        def replicated() -> bool:
            named = self.agreed_primary()
            return named is not None and self.connected_replicas(named) >= count

        self._wait(replicated, f"{count} replica(s) of the new primary", RESYNC_WAIT)

    def wait_promoted(self, old: int) -> int:
        """Wait until the sentinels name another primary and it takes writes; its port."""

        def promoted() -> bool:
            port = self.sentinel_primary()
            if port is None or port == old:
                return False
            return _info(port, "replication").get("role") == "master"

        self._wait(promoted, "a replica promoted", PROMOTE_WAIT)
        port = self.sentinel_primary()
        assert port is not None
        self.primary_port = port
        return port

    def __enter__(self) -> SentinelTopology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every process by its PID (a paused one is resumed first)."""
        for process in [*self.sentinels.values(), *self.servers.values()]:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.terminate()
        for process in [*self.sentinels.values(), *self.servers.values()]:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    @staticmethod
    def _wait(condition: object, what: str, limit: float = START_WAIT) -> None:
        assert callable(condition)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")
