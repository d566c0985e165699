"""Import benchmark: one large CSV import into a running dialerd, with concurrent GETs.

Starts ``dialerd run`` (config/sim.toml, SQLite in a temporary directory, a free
port), streams a generated CSV of ``--rows`` rows to ``POST /outdials/{id}/targets``
(never held whole by this client either), and meanwhile GETs ``/v1.0/campaigns``
every ``--interval`` seconds. Prints rows/s, the daemon's peak RSS (VmHWM) before and
after the import, and the worst and median GET latency during it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "dev-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def csv_chunks(rows: int) -> Iterator[bytes]:
    yield b"name,data,destination_0,destination_1\n"
    step = 5000
    for first in range(0, rows, step):
        yield "".join(
            f"lead {n},crm-{n},+1555{n % 10_000_000:07d},+1666{n % 10_000_000:07d}\n"
            for n in range(first, min(first + step, rows))
        ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between GETs")
    args = parser.parse_args()

    port = free_port()
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        daemon = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/dialerd"), "run", "--config", str(ROOT / "config/sim.toml"),
                "--state-dir", state, "--listen", f"127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}/v1.0"
            headers = {"authorization": f"Bearer {TOKEN}"}
            with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
                for _ in range(100):
                    try:
                        client.get("/campaigns").raise_for_status()
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                outdial = client.post("/outdials", json={"name": "bench"}).json()["id"]
                rss_before = peak_rss_mib(daemon.pid)
                latencies: list[float] = []
                done = threading.Event()

                def probe() -> None:
                    with httpx.Client(base_url=base, headers=headers, timeout=600) as prober:
                        while not done.is_set():
                            started = time.perf_counter()
                            prober.get("/campaigns", params={"page_size": 10}).raise_for_status()
                            latencies.append(time.perf_counter() - started)
                            time.sleep(args.interval)

                prober = threading.Thread(target=probe)
                started = time.perf_counter()
                prober.start()
                response = client.post(
                    f"/outdials/{outdial}/targets",
                    content=csv_chunks(args.rows),
                    headers={"content-type": "text/csv"},
                )
                elapsed = time.perf_counter() - started
                done.set()
                prober.join()
                response.raise_for_status()
                assert response.json() == {"count": args.rows}, response.text[:300]
                rss_after = peak_rss_mib(daemon.pid)
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    print(f"rows:                 {args.rows}")
    print(f"import time:          {elapsed:.1f} s")
    print(f"rows/s:               {args.rows / elapsed:,.0f}")
    print(f"peak RSS before:      {rss_before:.0f} MiB")
    print(f"peak RSS after:       {rss_after:.0f} MiB")
    print(f"GETs during import:   {len(latencies)}")
    print(f"worst GET latency:    {max(latencies) * 1000:.0f} ms")
    print(f"median GET latency:   {statistics.median(latencies) * 1000:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
