"""Measure events out: events delivered per second to one receiver, the delivery delay
on a quiet receiver (p50, p99), and the outbox while the receiver is down.

The events are real: attempts claimed and finished on the store (3 events each:
campaigncall created, campaigncall ended, target updated). The receiver is an HTTP
server in a child process on 127.0.0.1 (allowed by the sender's ``[webhooks]``
allow list), answering 200 (or 503 while "down") and noting when each event arrived."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dialerd.config import EventsConfig, WebhooksConfig
from dialerd.events.model import CustomerWebhook, WebhookMethod
from dialerd.events.sender import EventSender
from dialerd.model import format_time, new_id, parse_time
from dialerd.service.clock import SystemClock
from dialerd.store import Store
from scripts.bench.redis_server import redis_server
from scripts.bench.store import pairs_per_second, resources, targets

EVENTS_PER_ATTEMPT = 3


def _receive(port: Any, status: Any, arrivals: Any, delay: float = 0.0) -> None:
    """The receiver (child process): 200 or ``status`` (after ``delay`` seconds);
    (arrival, id, time) per 200."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = int(status.value)
            time.sleep(delay)
            if answer == 200:
                event = json.loads(body)
                arrivals.put((time.time(), event["id"], event["time"]))
            self.send_response(answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port.value = server.server_address[1]
    server.serve_forever(0.05)


class Receiver:
    def __init__(self, delay: float = 0.0) -> None:
        context = multiprocessing.get_context("spawn")
        self.port = context.Value("i", 0)
        self.status = context.Value("i", 200)
        self.arrivals: Any = context.Queue()
        self.process = context.Process(
            target=_receive, args=(self.port, self.status, self.arrivals, delay), daemon=True
        )
        self.process.start()
        while not self.port.value:
            time.sleep(0.01)
        self.got: list[tuple[float, str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.value}/events"

    def collect(self) -> int:
        while True:
            try:
                self.got.append(self.arrivals.get_nowait())
            except queue.Empty:
                return len(self.got)

    def close(self) -> None:
        self.process.kill()
        self.process.join()


async def attempts_at(
    store: Store, campaign: Any, outplan: Any, rate: float, seconds: float
) -> int:
    """Claim and finish attempts at ``rate`` per second for ``seconds``."""
    done = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        await pairs_per_second(store, campaign, outplan, 1, 1)
        done += 1
        await anyio.sleep(max(0.0, started + done / rate - time.monotonic()))
    return done


async def wait_for(receiver: Receiver, count: int, limit: float) -> float:
    started = time.monotonic()
    while receiver.collect() < count:
        if time.monotonic() - started > limit:
            raise SystemExit(f"only {len(receiver.got)} of {count} events arrived in {limit:g} s")
        await anyio.sleep(0.01)
    return time.monotonic() - started


async def bench(store: Store, args: argparse.Namespace) -> dict[str, float]:
    now = format_time(datetime.now(UTC))
    campaign, outplan, outdial = resources(now)
    await store.create_outplan(outplan)
    dialing = []
    for _ in range(args.campaigns):
        # The same customer's campaigns, each on an outdial of its own.
        own_outdial = msgspec.structs.replace(outdial, id=new_id())
        own = msgspec.structs.replace(campaign, id=new_id(), outdial_id=own_outdial.id)
        await store.create_outdial(own_outdial)
        await store.create_campaign(own)
        await store.create_targets(targets(own_outdial.id, args.attempts * 3, now))
        dialing.append(own)
    campaign = dialing[0]
    receiver = Receiver()
    await store.put_webhook(
        CustomerWebhook(
            customer_id=campaign.customer_id,
            webhook_method=WebhookMethod.POST,
            webhook_uri=receiver.url,
            webhook_secret="bench-secret-bench-secret",
        )
    )
    config = EventsConfig(
        poll_interval=args.poll,
        first_backoff=0.2,
        max_backoff=1.0,
        lease_ttl=30,
        timeout=10,
        concurrency=args.concurrency,
    )
    sender = EventSender(
        store,
        SystemClock(),
        owner="bench",
        config=config,
        webhooks=lambda: WebhooksConfig(allow_hosts=["127.0.0.1"]),
    )
    figures: dict[str, float] = {}
    try:
        # 1. A backlog of --attempts attempts, delivered as fast as the sender goes.
        for index, each in enumerate(dialing):
            share = args.attempts // args.campaigns + (index < args.attempts % args.campaigns)
            await pairs_per_second(store, each, outplan, share, 8)
        backlog = args.campaigns + args.attempts * EVENTS_PER_ATTEMPT
        async with anyio.create_task_group() as group:
            await group.start(sender.run)
            seconds = await wait_for(receiver, backlog, 600)
            figures["delivered_per_second"] = backlog / seconds
            # 2. A quiet receiver: attempts at --rate per second; delay per event.
            before = len(receiver.got)
            made = await attempts_at(store, campaign, outplan, args.rate, args.seconds)
            await wait_for(receiver, before + made * EVENTS_PER_ATTEMPT, 60)
            delays = sorted(
                arrival - parse_time(stamp).timestamp()
                for arrival, _, stamp in receiver.got[before:]
            )
            figures["delay_p50_ms"] = 1000 * statistics.median(delays)
            figures["delay_p99_ms"] = 1000 * delays[int(0.99 * (len(delays) - 1))]
            # 3. The receiver down for --down seconds while attempts go on at --rate.
            receiver.status.value = 503
            before = len(receiver.got)
            peak = 0
            started = time.monotonic()
            made = 0
            while time.monotonic() - started < args.down:
                made += await attempts_at(store, campaign, outplan, args.rate, 1.0)
                peak = max(peak, await store.outbox_backlog(campaign.customer_id))
            figures["outbox_peak_events"] = peak
            figures["outbox_growth_per_second"] = peak / (time.monotonic() - started)
            receiver.status.value = 200
            figures["drain_seconds"] = await wait_for(
                receiver, before + made * EVENTS_PER_ATTEMPT, 600
            )
            group.cancel_scope.cancel()
    finally:
        receiver.close()
    return figures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench-events", description=__doc__)
    parser.add_argument("--attempts", type=int, default=2000, help="attempts of the backlog")
    parser.add_argument("--rate", type=float, default=20.0, help="attempts/s while measuring delay")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of the delay run")
    parser.add_argument("--down", type=float, default=5.0, help="seconds the receiver is down")
    parser.add_argument("--poll", type=float, default=0.1, help="[events] poll_interval")
    parser.add_argument(
        "--campaigns", type=int, default=1, help="campaigns the backlog is spread over"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="[events] concurrency")
    parser.add_argument("--backends", default="sqlite,redis", help="sqlite, redis or both")
    args = parser.parse_args()
    if not 1 <= args.attempts <= 100_000:
        parser.error("--attempts must be between 1 and 100000")
    if not 1 <= args.campaigns <= 100:
        parser.error("--campaigns must be between 1 and 100")
    args.backends = [name for name in args.backends.split(",") if name]
    if set(args.backends) - {"sqlite", "redis"}:
        parser.error("--backends: sqlite, redis or both")
    return args


async def run(args: argparse.Namespace, workdir: Path, redis_url: str) -> None:
    print(
        f"{'backend':8} {'events/s':>9} {'delay p50 ms':>13} {'delay p99 ms':>13} "
        f"{'outbox peak':>12} {'growth/s':>9} {'drain s':>8}"
    )
    for backend in args.backends:
        store: Store
        if backend == "sqlite":
            from dialerd.store.sqlite import SqliteStore

            store = SqliteStore(workdir / "events.sqlite3")
        else:
            from dialerd.store.redis import RedisStore

            store = RedisStore(url=redis_url, prefix="benchevents", pool_size=16, timeout=30.0)
        await store.open()
        try:
            f = await bench(store, args)
        finally:
            await store.close()
        print(
            f"{backend:8} {f['delivered_per_second']:9.0f} {f['delay_p50_ms']:13.1f} "
            f"{f['delay_p99_ms']:13.1f} {f['outbox_peak_events']:12.0f} "
            f"{f['outbox_growth_per_second']:9.1f} {f['drain_seconds']:8.2f}",
            flush=True,
        )


def main() -> int:
    args = parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server(enabled="redis" in args.backends) as url,
    ):
        anyio.run(run, args, Path(tmp), url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
