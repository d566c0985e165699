"""A large import on the real daemon runs in an import worker process: it leaves no
process behind, whether the import ends, the daemon stops or the daemon is killed, and
an import cut by a kill leaves no target visible."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

from dialerd.api.server import GRACEFUL_SECONDS
from tests.system.daemon_process import TOKEN, DaemonProcess, wait_until

# Rows past the size the daemon reads itself (dialerd.api.targets_import.WORKER_BYTES).
ROWS = 100_000


def _chunks(rows: int, hold: threading.Event | None = None) -> Iterator[bytes]:
    """The CSV; with ``hold``, the rest waits for it after two thirds (1.6 MB) are sent."""
    yield b"name,destination_0\n"
    for first in range(0, rows, 5000):
        if hold is not None and first > rows * 2 // 3:
            hold.wait(60)
            return
        yield "".join(f"lead {n},+1555{n:07d}\n" for n in range(first, first + 5000)).encode()


def _answer(connection: socket.socket, seconds: float) -> bytes:
    """What the daemon answered on ``connection`` until it closed it (or ``seconds``
    passed without a byte)."""
    connection.settimeout(seconds)
    answer = b""
    try:
        while piece := connection.recv(65536):
            answer += piece
    except TimeoutError:
        pass
    return answer


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of the processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append((int(stat.parent.name), fields[0]))
    return found


def _workers() -> list[int]:
    """The import workers running on this machine now, of this test's daemon or not."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"dialerd.store.sqlite.import_worker" in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def _workers_of(state: Path) -> list[int]:
    """The import worker processes (workers and their parsing processes, when a core
    was free: a fork keeps the command line) still running on the store under
    ``state``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dialerd.store.sqlite.import_worker" in words and any(
            word.startswith(str(state).encode()) for word in words
        ):
            pid = int(cmdline.parent.name)
            if not _gone(pid):
                found.append(pid)
    return found


def _start_import(
    daemon: DaemonProcess, outdial: str, hold: threading.Event
) -> tuple[threading.Thread, int]:
    """A held import in a thread; the pid of its worker once it runs."""
    before = set(_workers())

    def send() -> None:
        try:
            with httpx.Client(base_url=daemon.base, timeout=60) as client:
                client.post(
                    f"/v1.0/outdials/{outdial}/targets",
                    content=_chunks(ROWS, hold),
                    headers={"Content-Type": "text/csv", **daemon.http.headers},
                )
        except httpx.HTTPError:
            pass  # the daemon went away under it

    sender = threading.Thread(target=send)
    sender.start()
    assert daemon.pid is not None
    pid = daemon.pid
    wait_until(
        lambda: any(child in set(_workers()) - before for child, _ in _children(pid)),
        "the import worker starts",
    )
    (worker,) = [child for child, _ in _children(pid) if child in set(_workers()) - before]
    return sender, worker


def _gone(pid: int) -> bool:
    """Not running: reaped, or dead and waiting for its (new) parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def test_an_import_leaves_no_process_behind(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    try:
        daemon.wait_ready()
        outdial = daemon.http.post("/v1.0/outdials", json={"name": "big"}).json()["id"]
        with httpx.Client(base_url=daemon.base, timeout=60) as client:
            response = client.post(
                f"/v1.0/outdials/{outdial}/targets",
                content=_chunks(ROWS),
                headers={"Content-Type": "text/csv", **daemon.http.headers},
            )
        assert response.json() == {"count": ROWS}, response.text
        assert daemon.pid is not None
        assert _children(daemon.pid) == []  # the worker was waited for: no zombie
        assert _workers_of(tmp_path) == []  # and its parsing process ended with it
    finally:
        daemon.close()


def test_sigterm_during_an_import_ends_its_worker_and_the_daemon(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    hold = threading.Event()
    try:
        daemon.wait_ready()
        outdial = daemon.http.post("/v1.0/outdials", json={"name": "big"}).json()["id"]
        sender, worker = _start_import(daemon, outdial, hold)
        assert daemon.stop() == 0
        hold.set()
        sender.join(60)
        wait_until(lambda: _gone(worker), "the import worker is gone")
        wait_until(lambda: _workers_of(tmp_path) == [], "its parsing process is gone")
        restarted = DaemonProcess(tmp_path)
        try:
            restarted.wait_ready()
            targets = restarted.http.get(f"/v1.0/outdials/{outdial}/targets").json()
            assert targets["result"] == []
        finally:
            restarted.close()
    finally:
        hold.set()
        daemon.close()


def test_kill_9_during_an_import_ends_its_worker_and_imports_nothing(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    hold = threading.Event()
    try:
        daemon.wait_ready()
        outdial = daemon.http.post("/v1.0/outdials", json={"name": "big"}).json()["id"]
        sender, worker = _start_import(daemon, outdial, hold)
        daemon.signal(signal.SIGKILL)
        wait_until(lambda: _gone(worker), "the import worker is gone")
        wait_until(lambda: _workers_of(tmp_path) == [], "its parsing process is gone")
        hold.set()
        sender.join(60)
        restarted = DaemonProcess(tmp_path)
        try:
            restarted.wait_ready()
            targets = restarted.http.get(f"/v1.0/outdials/{outdial}/targets").json()
            assert targets["result"] == []
        finally:
            restarted.close()
    finally:
        hold.set()
        daemon.close()


def test_sigterm_during_an_import_of_a_whole_body_refuses_it_and_stops_at_once(
    tmp_path: Path,
) -> None:
    daemon = DaemonProcess(tmp_path)
    try:
        daemon.wait_ready()
        outdial = daemon.http.post("/v1.0/outdials", json={"name": "big"}).json()["id"]
        body = b"".join(_chunks(4 * ROWS))  # about 9 MB: seconds of work for the worker
        head = (
            f"POST /v1.0/outdials/{outdial}/targets HTTP/1.1\r\nHost: dialerd\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: text/csv\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        assert daemon.pid is not None
        before = set(_workers())
        with socket.create_connection(("127.0.0.1", daemon.port)) as connection:
            connection.sendall(head + body)
            # The body is sent whole (what the daemon has not read yet waits in the
            # kernel's buffers), and its worker is still at it.
            (worker,) = [c for c, _ in _children(daemon.pid) if c in set(_workers()) - before]
            daemon.signal(signal.SIGTERM)
            answer = _answer(connection, 2 * GRACEFUL_SECONDS)
            # Well before Hypercorn's graceful timeout would cut the request off.
            assert daemon.process is not None
            assert daemon.process.wait(timeout=GRACEFUL_SECONDS) == 0
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert b'"SHUTTING_DOWN"' in answer
        assert _gone(worker)
        wait_until(lambda: _workers_of(tmp_path) == [], "its parsing process is gone")
        assert [line for line in daemon.log_lines() if line["level"] == "error"] == []
        assert daemon.stderr_path.read_text() == ""
        restarted = DaemonProcess(tmp_path)
        try:
            restarted.wait_ready()
            targets = restarted.http.get(f"/v1.0/outdials/{outdial}/targets").json()
            assert targets["result"] == []
        finally:
            restarted.close()
    finally:
        daemon.close()
