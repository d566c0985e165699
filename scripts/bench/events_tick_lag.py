"""Tick lag of a dialing daemon (the real process, the simulated centre) while its
customer's webhook receiver answers each event only after 10 s, against the same run
without a webhook, alternately: the event sender must not slow the ticks.

    .venv/bin/python scripts/bench/events_tick_lag.py [--rounds 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench.events import Receiver
from scripts.lib.daemon import Daemon, DaemonSettings

TOKEN = "bench-token"
CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
QUEUE = "99bf739a-932f-433c-b1bf-103d33d7e9bb"
CONFIG = '[webhooks]\nallow_hosts = ["127.0.0.1"]\n[events]\ntimeout = 12.0\nlease_ttl = 30.0\n'


def tick_lag(slow: bool, seconds: float) -> tuple[float, float, int]:
    """(mean tick lag, the p99 histogram bucket, attempts started) of one run."""
    receiver = Receiver(delay=10.0)
    settings = DaemonSettings(
        token=TOKEN, customer_id=CUSTOMER, queue_id=QUEUE, queue_name="sales",
        extra_config=CONFIG,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp), settings)
        daemon.start()
        try:
            daemon.wait_healthy()
            api = httpx.Client(
                base_url=f"http://127.0.0.1:{daemon.port}/v1.0",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=10,
            )
            if slow:
                api.put("/customer", json={"webhook_uri": receiver.url})
            outplan = api.post(
                "/outplans",
                json={"source": {"type": "tel", "target": "+15550000000"}, "max_try_count_0": 1},
            ).json()
            outdial = api.post("/outdials", json={"name": "bench"}).json()
            rows = "destination_0\n" + "".join(f"+1555300{n:04d}\n" for n in range(2000))
            api.post(
                f"/outdials/{outdial['id']}/targets",
                content=rows,
                headers={"Content-Type": "text/csv"},
            )
            campaign = api.post(
                "/campaigns", json={"outplan_id": outplan["id"], "outdial_id": outdial["id"]}
            ).json()
            api.put(f"/campaigns/{campaign['id']}", json={"status": "run"})
            time.sleep(seconds)
            text = httpx.get(f"http://127.0.0.1:{daemon.ops_port}/metrics", timeout=10).text
        finally:
            daemon.close()
            receiver.close()

    def value(name: str) -> float:
        found = re.search(rf"^{name} (\S+)", text, re.M)
        return float(found.group(1)) if found else 0.0

    count = value("dialerd_tick_lag_seconds_count")
    buckets = re.findall(r'^dialerd_tick_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text, re.M)
    p99 = next(float(le) for le, n in buckets if float(n) >= 0.99 * count)
    started = int(value("dialerd_pacing_attempts_started_total"))
    return value("dialerd_tick_lag_seconds_sum") / max(count, 1), p99, started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(f"{'receiver':14} {'lag mean ms':>11} {'lag p99 <= ms':>13} {'attempts':>9}")
    for _ in range(args.rounds):
        for slow in (False, True):
            mean, p99, started = tick_lag(slow, args.seconds)
            label = "10 s answers" if slow else "none"
            print(f"{label:14} {mean * 1000:11.2f} {p99 * 1000:13.0f} {started:9d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
