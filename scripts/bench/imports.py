"""Import benchmark: one large CSV import into a running dialerd, with concurrent GETs.

Starts ``dialerd run`` (scripts/lib/daemon.py: SQLite in a temporary directory, or with
``--store redis`` a fresh redis-server per import; free ports), streams a generated CSV
of ``--rows`` rows to ``POST /outdials/{id}/targets`` (never held whole by this client
either), and meanwhile GETs ``/v1.0/campaigns`` every ``--interval`` seconds. Prints
rows/s, the daemon's peak RSS (VmHWM) before and after the import, the peak RSS of its
child processes (the import worker), the CPU seconds the daemon and its workers spent
on the import (on a busy machine a steadier comparison than rows/s), and the worst and
median GET latency during it; per round also how many import worker processes ran at
once (2: a parsing process beside the writing one) and Linux's CPU pressure as the
import started (how quiet the machine was).

The anchor, measured in the same run: SQLite's own insert rate of the same target
rows (built beforehand) into a store of the same schema, in transactions of 500 rows,
on this machine now; the ratio dialerd / SQLite says how much of the import's time is
dialerd's. With ``--baseline DIR`` the daemon of another checkout (with its .venv) is
measured too, alternately with this one (``--rounds``; each round in the other order).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripts.bench.redis_server import redis_server
from scripts.lib.daemon import REPO, Daemon, DaemonSettings

TOKEN = "bench-import-token"
CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
QUEUE_ID = "99bf739a-932f-433c-b1bf-103d33d7e9bb"


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its children it has waited for (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(tick) for tick in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def children_peak_rss_mib(pid: int) -> tuple[float, int]:
    """The largest peak RSS of the processes that descend from ``pid`` (0 if none):
    the import worker and its parsing process; and how many there are."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    peak = 0.0
    count = 0
    for child, parent in parents.items():
        for _ in range(16):  # up the tree (bounded: pids are reused)
            if parent in (pid, 0, 1) or parent not in parents:
                break
            parent = parents[parent]
        if parent == pid:
            try:
                peak = max(peak, peak_rss_mib(child))
            except OSError:
                continue
            count += 1
    return peak, count


def cpu_pressure() -> str:
    """Linux's CPU pressure now (``some avg10``, % of the last 10 s some task waited
    for a CPU), or "?" without it: how quiet the machine was as an import started."""
    try:
        return Path("/proc/pressure/cpu").read_text().split()[1].removeprefix("avg10=") + " %"
    except (OSError, IndexError):
        return "?"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def csv_lines(first: int, last: int) -> str:
    return "".join(
        f"lead {n},crm-{n},+1555{n % 10_000_000:07d},+1666{n % 10_000_000:07d}\n"
        for n in range(first, last)
    )


def csv_chunks(rows: int) -> Iterator[bytes]:
    yield b"name,data,destination_0,destination_1\n"
    step = 5000
    for first in range(0, rows, step):
        yield csv_lines(first, min(first + step, rows)).encode()


def sqlite_anchor(rows: int) -> float:
    """Rows/s SQLite itself inserts the same targets (made by the import's own reader
    and turned into rows before the clock starts), in transactions of 500 rows."""
    import anyio

    from dialerd.api.targets_import import TargetReader
    from dialerd.store.sqlite.rows import in_transaction, target_row
    from dialerd.store.sqlite.store import SqliteStore

    reader = TargetReader(
        "0b6e7b2c-0000-4000-8000-000000000000", "2026-01-01 00:00:00.000000", csv_file=True
    )
    prepared = [target_row(target) for chunk in csv_chunks(rows) for target in reader.feed(chunk)]
    with tempfile.TemporaryDirectory(prefix="bench-import-sqlite-") as tmp:

        async def insert() -> float:
            store = SqliteStore(Path(tmp) / "store.db")
            await store.open()
            connection = store._connection
            assert connection is not None
            started = time.perf_counter()
            for first in range(0, len(prepared), 500):
                chunk = prepared[first : first + 500]
                in_transaction(partial(_insert, chunk), connection)
            elapsed = time.perf_counter() - started
            await store.close()
            return elapsed

        return len(prepared) / anyio.run(insert)


def _insert(rows: list[tuple[object, ...]], connection: sqlite3.Connection) -> None:
    from dialerd.store.sqlite.rows import INSERT_TARGET

    connection.executemany(INSERT_TARGET, rows)


def _py_spy() -> str:
    """py-spy on PATH, or the one installed in this interpreter's venv."""
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


class Result:
    def __init__(self, name: str) -> None:
        self.name = name
        self.elapsed = 0.0
        self.rss_before = self.rss_after = self.children_rss = 0.0
        self.cpu = 0.0  # the daemon's CPU seconds (and its import workers') for the import
        self.latencies: list[float] = []
        self.worst_at = 0.0  # seconds into the import the worst GET started
        self.processes = 0  # the most import worker processes seen at once
        self.pressure = ""  # /proc/pressure/cpu "some avg10" as the import started


def import_once(
    rows: int,
    interval: float,
    tree: Path,
    name: str,
    profile: str | None = None,
    store: str = "sqlite",
) -> Result:
    with redis_server(enabled=store == "redis") as redis_url:
        return _import_once(rows, interval, tree, name, profile, redis_url)


def _import_once(
    rows: int, interval: float, tree: Path, name: str, profile: str | None, redis_url: str
) -> Result:
    """One import into a fresh daemon (on a fresh redis-server at ``redis_url``, if given)."""
    result = Result(name)
    store = f'[store]\nbackend = "redis"\n[store.redis]\nurl = "{redis_url}"\n'
    settings = DaemonSettings(
        token=TOKEN,
        customer_id=CUSTOMER,
        queue_id=QUEUE_ID,
        queue_name="bench",
        tick_interval=1.0,
        log_level="warning",
        extra_config=store if redis_url else "",
    )
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        daemon = Daemon(Path(tmp), settings, tree=tree)
        daemon.start()
        try:
            daemon.wait_healthy()
            assert daemon.pid is not None
            base = f"http://127.0.0.1:{daemon.port}/v1.0"
            headers = {"authorization": f"Bearer {TOKEN}"}
            with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
                outdial = client.post("/outdials", json={"name": "bench"}).json()["id"]
                result.rss_before = peak_rss_mib(daemon.pid)
                done = threading.Event()
                pid = daemon.pid

                def probe() -> None:
                    with httpx.Client(base_url=base, headers=headers, timeout=600) as prober:
                        while not done.is_set():
                            sent = time.perf_counter()
                            prober.get("/campaigns", params={"page_size": 10}).raise_for_status()
                            latency = time.perf_counter() - sent
                            if not result.latencies or latency > max(result.latencies):
                                result.worst_at = sent - started
                            result.latencies.append(latency)
                            rss, processes = children_peak_rss_mib(pid)
                            result.children_rss = max(result.children_rss, rss)
                            result.processes = max(result.processes, processes)
                            time.sleep(interval)

                prober = threading.Thread(target=probe)
                cpu_before = cpu_seconds(pid)
                started = time.perf_counter()
                spy = None
                if profile:  # py-spy (pip install py-spy) on the daemon while it imports
                    spy = subprocess.Popen(
                        [_py_spy(), "record", "--pid", str(daemon.pid), "-o", profile,
                         "--subprocesses", "-f", "raw", "-r", "250", "--nonblocking",
                         "--threads", "--gil"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    time.sleep(1)  # py-spy attaches
                result.pressure = cpu_pressure()
                started = time.perf_counter()
                prober.start()
                response = client.post(
                    f"/outdials/{outdial}/targets",
                    content=csv_chunks(rows),
                    headers={"content-type": "text/csv"},
                )
                result.elapsed = time.perf_counter() - started
                done.set()
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=30)
                prober.join()
                if response.is_error:
                    failed = f"{response.status_code} {response.text[:500]}"
                    sys.exit(f"{name}: the import failed: {failed}")
                assert response.json() == {"count": rows}, response.text[:300]
                result.rss_after = peak_rss_mib(daemon.pid)
                result.cpu = cpu_seconds(pid) - cpu_before
        finally:
            daemon.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between GETs")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the imports N times")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout (with its .venv) to measure too"
    )
    parser.add_argument("--profile", help="py-spy record this checkout's daemon to this file")
    parser.add_argument(
        "--store",
        choices=("sqlite", "redis"),
        default="sqlite",
        help="the daemons' store (redis: a fresh redis-server per import)",
    )
    args = parser.parse_args()

    trees = [(REPO, "dialerd")]
    if args.baseline is not None:
        trees.append((args.baseline.resolve(), "baseline"))
    results: list[Result] = []
    anchors: list[float] = []
    for round_ in range(args.rounds):
        anchors.append(sqlite_anchor(min(args.rows, 200_000)))
        print(f"  SQLite's own inserts: {anchors[-1]:,.0f} rows/s")
        # Each round in the other order: the import right after the anchor was measured
        # up to a third slower on a busy machine, whichever tree ran it.
        for tree, name in trees if round_ % 2 == 0 else trees[::-1]:
            profile = args.profile if tree == REPO else None
            result = import_once(args.rows, args.interval, tree, name, profile, args.store)
            results.append(result)
            rate = args.rows / result.elapsed
            print(
                f"  {name:<9} {rate:9,.0f} rows/s ({result.elapsed:.1f} s), worst GET "
                f"{max(result.latencies) * 1000:.0f} ms (at {result.worst_at:.1f} s), median "
                f"{statistics.median(result.latencies) * 1000:.1f} ms, "
                f"{len(result.latencies)} GETs, peak RSS {result.rss_before:.0f} -> "
                f"{result.rss_after:.0f} MiB, children {result.children_rss:.0f} MiB, "
                f"{result.processes} worker process(es), CPU pressure at start "
                f"{result.pressure}"
            )
    anchor = max(anchors)
    print(f"rows:                 {args.rows} (store: {args.store})")
    print(f"SQLite's own inserts: {anchor:,.0f} rows/s (best of {len(anchors)})")
    for _, name in trees:
        mine = [r for r in results if r.name == name]
        best = min(mine, key=lambda r: r.elapsed)
        rate = args.rows / best.elapsed
        worst = max(max(r.latencies) for r in mine)
        print(f"{name}:")
        print(f"  import time:          {best.elapsed:.1f} s (best of {len(mine)})")
        print(f"  rows/s:               {rate:,.0f}")
        print(f"  ratio to SQLite:      {rate / anchor:.1%}")
        cpu = statistics.median(r.cpu for r in mine) / args.rows * 1e5
        print(f"  CPU s per 100k rows:  {cpu:.2f} (median; the daemon and its workers)")
        print(f"  peak RSS before:      {best.rss_before:.0f} MiB")
        print(f"  peak RSS after:       {max(r.rss_after for r in mine):.0f} MiB")
        print(f"  children's peak RSS:  {max(r.children_rss for r in mine):.0f} MiB")
        print(f"  GETs during import:   {sum(len(r.latencies) for r in mine)}")
        print(f"  worst GET latency:    {worst * 1000:.0f} ms")
        median = statistics.median([x for r in mine for x in r.latencies])
        print(f"  median GET latency:   {median * 1000:.1f} ms")
    if len(trees) == 2:
        rates = {
            name: args.rows / min(r.elapsed for r in results if r.name == name) for _, name in trees
        }
        print(f"ratio dialerd / baseline: {rates['dialerd'] / rates['baseline']:.2f}x")
        cpus = {
            name: statistics.median(r.cpu for r in results if r.name == name) for _, name in trees
        }
        print(f"CPU ratio dialerd / baseline: {cpus['dialerd'] / cpus['baseline']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
