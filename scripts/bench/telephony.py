"""Telephony benchmark: sustained originations per second through the real Asterisk of
the rig (scripts/rig) to its SIPp callee, dialerd side by side with a minimal ARI loop.

In one run, on the same rig and with the same number of calls in flight:

- ``minimal``: a plain httpx + httpx-ws loop keeping N calls in flight: originate
  ``answer-0`` into its own Stasis app, hang up (DELETE) on ``StasisStart``, count the
  call when its ``ChannelDestroyed`` comes. The floor of what any ARI client costs.
- ``minimal-callee-bye``: the same loop dialling ``hangup-0`` (the callee answers and sends
  BYE at once) without hanging up itself: the exact call dialerd's run makes.
- ``minimal-callee-bye-lean``: that loop on dialerd's own ARI client (kept HTTP/1.1
  connections and its websocket, ``dialerd.adapters.asterisk.ari_http``): the cheapest
  client at hand, so what it reaches is the closest measure of Asterisk's own limit.
- ``dialerd``: the daemon as a real process (``dialerd run``: engine, SQLite store, ARI
  telephony, API) with one agentless campaign of as many targets, all ``hangup-0``, at
  most N attempts at once (``max_concurrent_attempts``), ticking every 50 ms. Answered
  calls go to the agentless context (``dialerd-agentless``), where the callee's BYE ends
  them: the rig has no context that hangs up at once, and the callee's BYE is as quick.
  Counted from ``run`` to the campaign's ``stop``, calls ended ``normal``. Also prints
  where a call's time went, from the daemon's own histograms (``BREAKDOWN``).

Each phase is bounded in calls and in time; each concurrency (``--concurrency 10,30``)
runs all the phases in turn. Prints the rates, the caller's CPU seconds per 1,000 calls
and the ratios of dialerd to each minimal loop (the target: at least 90 %), and with
``--baseline DIR`` the same of another checkout's daemon. Run: scripts/bench-telephony --help
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
from httpx_ws import aconnect_ws

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dialerd.adapters.asterisk.ari_http import AriHttp, connect_events
from scripts.lib.daemon import Daemon, DaemonSettings

REPO = Path(__file__).resolve().parents[2]
ARI_URL = "http://127.0.0.1:8088"
AUTH = ("dialerd", "dialerd-rig-secret")
AMI = ("127.0.0.1", 5038, "dialerd", "dialerd-rig-secret")
ENDPOINT = "PJSIP/{number}@callee"
TOKEN = "bench-telephony-token"
TICK = float(os.environ.get("BENCH_TICK", "0.05"))
CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
QUEUE_ID = "99bf739a-932f-433c-b1bf-103d33d7e9bb"


class Phase(msgspec.Struct, kw_only=True):
    name: str
    calls: int
    completed: int
    failed: int
    seconds: float
    cpu: dict[str, float] = msgspec.field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


class _Event(msgspec.Struct, kw_only=True):
    type: str
    channel: dict[str, Any] | None = None


# -- the minimal loop -------------------------------------------------------------------


class _Lean:
    """The minimal loop's requests and events on dialerd's own ARI client (ari_http)."""

    def __init__(self, concurrency: int) -> None:
        self.http = AriHttp(
            f"{ARI_URL}/ari", *AUTH, size=concurrency, connect_timeout=10, request_timeout=10
        )

    async def post(self, path: str, params: dict[str, str]) -> Any:
        return await self.http.request("POST", path, params=params)

    async def delete(self, path: str) -> Any:
        return await self.http.request("DELETE", path)


@asynccontextmanager
async def _clients(lean: bool, app: str, concurrency: int) -> AsyncIterator[tuple[Any, Any]]:
    """(requests, events) of the minimal loop: httpx + httpx-ws, or dialerd's client."""
    params = {"app": app, "subscribeAll": "false"}
    if lean:
        client = _Lean(concurrency)
        events = await connect_events(
            client.http, "/events", params, ping_interval=10, ping_timeout=10
        )
        try:
            yield client, events
        finally:
            await events.aclose()
            await client.http.aclose()
        return
    async with httpx.AsyncClient(
        base_url=f"{ARI_URL}/ari", auth=AUTH, timeout=10,
        limits=httpx.Limits(max_connections=concurrency * 2),
    ) as http, aconnect_ws(f"{ARI_URL}/ari/events", http, params=params) as ws:  # fmt: skip
        yield http, ws


async def minimal(
    number: str, hang_up: bool, calls: int, concurrency: int, limit: float, lean: bool = False
) -> Phase:
    app = f"bench-min-{os.getpid()}-{number}"
    waiting: dict[str, tuple[anyio.Event, anyio.Event]] = {}
    completed = failed = started = 0
    decoder = msgspec.json.Decoder(_Event)
    async with _clients(lean, app, concurrency) as (http, ws):

        async def read() -> None:
            while True:
                event = decoder.decode(await ws.receive_text())
                if event.channel is None:
                    continue
                pair = waiting.get(str(event.channel.get("id")))
                if pair is None:
                    continue
                if event.type == "StasisStart":
                    pair[0].set()
                elif event.type == "ChannelDestroyed":
                    pair[0].set()
                    pair[1].set()

        async def worker() -> None:
            nonlocal completed, failed, started
            while started < calls:
                started += 1
                channel_id = str(uuid.uuid4())
                answered, destroyed = anyio.Event(), anyio.Event()
                waiting[channel_id] = (answered, destroyed)  # events may beat the reply
                ok = False
                with anyio.move_on_after(15):
                    response = await http.post(
                        "/channels",
                        params={"endpoint": ENDPOINT.format(number=number), "app": app,
                                "channelId": channel_id, "timeout": "10"},
                    )  # fmt: skip
                    if response.is_success:
                        await answered.wait()
                        if hang_up and not destroyed.is_set():
                            await http.delete(f"/channels/{channel_id}")
                        await destroyed.wait()
                        ok = True
                waiting.pop(channel_id, None)
                if ok:
                    completed += 1
                else:
                    failed += 1

        async with anyio.create_task_group() as readers:
            readers.start_soon(read)
            begin = time.monotonic()
            with anyio.move_on_after(limit):
                async with anyio.create_task_group() as workers:
                    for _ in range(concurrency):
                        workers.start_soon(worker)
            seconds = time.monotonic() - begin
            readers.cancel_scope.cancel()
    name = ("minimal" if hang_up else "minimal-callee-bye") + ("-lean" if lean else "")
    return Phase(name=name, calls=started, completed=completed, failed=failed, seconds=seconds)


# -- dialerd ------------------------------------------------------------------------------


def dialerd_settings(concurrency: int, tick: float) -> DaemonSettings:
    """The daemon of the ``dialerd`` phase: ARI telephony and AMI queue on the rig."""
    return DaemonSettings(
        token=TOKEN,
        customer_id=CUSTOMER,
        queue_id=QUEUE_ID,
        queue_name="sales",
        tick_interval=tick,
        engine=f"max_concurrent_attempts = {concurrency}\nmax_attempts_per_second = 1000.0",
        log_level="warning",
        extra_config=f"""
[telephony]
backend = "asterisk"
[telephony.asterisk]
ari_url = "{ARI_URL}"
username = "{AUTH[0]}"
password = "{AUTH[1]}"
app = "bench-dialerd-{os.getpid()}"
endpoint = "{ENDPOINT}"
[queue]
backend = "asterisk"
[queue.asterisk]
host = "{AMI[0]}"
port = {AMI[1]}
username = "{AMI[2]}"
secret = "{AMI[3]}"
""",
    )


def dialerd(
    calls: int, concurrency: int, limit: float, profile: str | None, tree: Path, name: str
) -> Phase:
    with tempfile.TemporaryDirectory(prefix="bench-telephony-") as tmp:
        daemon = Daemon(Path(tmp), dialerd_settings(concurrency, TICK), tree=tree)
        daemon.start()
        http = httpx.Client(
            base_url=f"http://127.0.0.1:{daemon.port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        try:
            daemon.wait_healthy()
            deadline = time.monotonic() + 30
            ready = f"http://127.0.0.1:{daemon.ops_port}/readyz"
            while httpx.get(ready, timeout=5).status_code != 200:  # ARI and AMI connected
                if time.monotonic() > deadline or not daemon.alive:
                    raise SystemExit("dialerd did not get ready:\n" + daemon.stderr_tail())
                time.sleep(0.05)
            outplan = http.post(
                "/v1.0/outplans",
                json={"source": {"type": "tel", "target": "+15550100000"},
                      "max_try_count_0": 1, "try_interval": 0, "dial_timeout": 10_000},
            ).json()  # fmt: skip
            outdial = http.post("/v1.0/outdials", json={"name": "bench"}).json()
            row = json.dumps({"destination_0": {"type": "sip", "target": "hangup-0"}})
            imported = http.post(
                f"/v1.0/outdials/{outdial['id']}/targets",
                content=(row + "\n") * calls,
                headers={"Content-Type": "application/x-ndjson"},
            )
            imported.raise_for_status()
            campaign = http.post(
                "/v1.0/campaigns",
                json={"outplan_id": outplan["id"], "outdial_id": outdial["id"],
                      "end_handle": "stop"},
            ).json()  # fmt: skip
            path = f"/v1.0/campaigns/{campaign['id']}"
            spy = None
            if profile:  # py-spy (pip install py-spy) on the daemon while it dials
                spy = subprocess.Popen(
                    ["py-spy", "record", "--pid", str(daemon.pid), "-o", profile,
                     "-f", "raw", "-r", "250", "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(1)  # py-spy attaches
            assert daemon.pid is not None
            cpu_before = _cpu_seconds(daemon.pid)
            begin = time.monotonic()
            http.put(f"{path}/status", json={"status": "run"}).raise_for_status()
            while time.monotonic() - begin < limit:
                if http.get(path).json()["status"] == "stop":
                    break
                time.sleep(0.02)
            seconds = time.monotonic() - begin
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=30)
            cpu = _cpu_seconds(daemon.pid) - cpu_before
            print(f"  {name}: {_breakdown(daemon.ops_port)}")
            reasons: dict[str, int] = {}
            token = ""
            while True:
                page = http.get(
                    f"{path}/campaigncalls", params={"page_size": 100, "page_token": token}
                ).json()
                for call in page["result"]:
                    reason = call["reason"] or call["status"]
                    reasons[reason] = reasons.get(reason, 0) + 1
                token = page.get("next_page_token") or ""
                if not token or not page["result"]:
                    break
            completed = reasons.pop("normal", 0)
            if reasons:
                print(f"  {name}: calls not ended normal: {reasons}")
            return Phase(
                name=name,
                calls=completed + sum(reasons.values()),
                completed=completed,
                failed=sum(reasons.values()),
                seconds=seconds,
                cpu={"dialerd": cpu},
            )
        finally:
            http.close()
            if daemon.alive:
                try:
                    daemon.terminate()
                except subprocess.TimeoutExpired:
                    daemon.kill()


# The daemon's own histograms of one call's way (dialerd_<name>_seconds), in its order.
BREAKDOWN = (
    ("store_operation", {"operation": "start_attempt"}, "claim"),
    ("telephony_originate", {}, "originate"),
    ("ring", {}, "ring"),
    ("store_operation", {"operation": "mark_answered"}, "answer write"),
    ("talk", {}, "talk"),
    ("store_operation", {"operation": "finish_attempts"}, "end write"),
)


def _breakdown(ops_port: int) -> str:
    """Mean milliseconds and count of each step of a call (``BREAKDOWN``), from the
    daemon's /metrics: where a call's time goes, to set against the minimal loop's."""
    text = httpx.get(f"http://127.0.0.1:{ops_port}/metrics", timeout=10).text
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("dialerd_") and ("_seconds_sum" in line or "_seconds_count" in line):
            series, _, value = line.rpartition(" ")
            sums[series] = sums.get(series, 0.0) + float(value)
    parts = []
    for metric, labels, label in BREAKDOWN:
        total = count = 0.0
        for series, value in sums.items():
            if not series.startswith(f"dialerd_{metric}_seconds_"):
                continue
            if not all(f'{k}="{v}"' in series for k, v in labels.items()):
                continue
            if "_seconds_sum" in series:
                total += value
            else:
                count += value
        if count:
            parts.append(f"{label} {total / count * 1000:.1f} ms x{count:.0f}")
    return "per call (means): " + ", ".join(parts)


RIG_DIR = Path(os.environ.get("DIALERD_RIG_DIR") or "/var/tmp/dialerd-rig")


def _rig_cpu() -> dict[str, float]:
    """CPU seconds so far of this process (the minimal loop), Asterisk and SIPp."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    found = {"client": usage.ru_utime + usage.ru_stime}
    for name in ("asterisk", "sipp"):
        try:
            found[name] = _cpu_seconds(int((RIG_DIR / f"{name}.pid").read_text()))
        except (OSError, ValueError):
            found[name] = 0.0
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per phase")
    parser.add_argument(
        "--concurrency", default="10,30", help="calls in flight (a list: each in turn)"
    )
    parser.add_argument("--seconds", type=float, default=90.0, help="time limit per phase")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the phases N times")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (with its .venv) whose dialerd runs too, right after this one's",
    )
    parser.add_argument(
        "--minimal-only", action="store_true", help="no dialerd phase (the rig's floor alone)"
    )
    parser.add_argument(
        "--profile",
        help="py-spy record the daemon to FILE.<in flight> (collapsed stacks; py-spy on PATH)",
    )
    args = parser.parse_args()
    levels = [int(level) for level in str(args.concurrency).split(",") if level.strip()]
    if subprocess.run([str(REPO / "scripts" / "rig"), "status"], capture_output=True).returncode:
        print("the rig is not running: scripts/rig setup && scripts/rig start", file=sys.stderr)
        return 2
    print(
        f"telephony benchmark: {args.calls} calls per phase, {levels} in flight, "
        f"Asterisk 22 + SIPp on loopback, {os.cpu_count()} CPUs"
    )
    baseline = args.baseline.resolve() if args.baseline else None
    results: dict[tuple[int, str], list[Phase]] = {}
    for _ in range(args.rounds):
        for level in levels:
            phases: list[Callable[[], Phase]] = [
                partial(anyio.run, minimal, "answer-0", True, args.calls, level, args.seconds),
                partial(anyio.run, minimal, "hangup-0", False, args.calls, level, args.seconds),
                partial(
                    anyio.run, minimal, "hangup-0", False, args.calls, level, args.seconds, True
                ),
            ]
            if not args.minimal_only:
                phases.append(
                    partial(
                        dialerd,
                        args.calls,
                        level,
                        args.seconds,
                        f"{args.profile}.{level}" if args.profile else None,
                        REPO,
                        "dialerd",
                    )
                )
            if baseline is not None and not args.minimal_only:
                phases.append(
                    partial(
                        dialerd, args.calls, level, args.seconds, None, baseline, "dialerd-baseline"
                    )
                )
            for run in phases:
                before = _rig_cpu()
                phase = run()
                phase.cpu.update({k: v - before[k] for k, v in _rig_cpu().items()})
                results.setdefault((level, phase.name), []).append(phase)
                client = phase.cpu.pop("client")
                if phase.name.startswith("dialerd"):
                    client = phase.cpu.pop("dialerd", 0.0)
                phase.cpu["caller"] = client
                used = ", ".join(f"{k} {v:.1f}" for k, v in phase.cpu.items() if k != "caller")
                per_call = client / phase.completed * 1000 if phase.completed else 0.0
                print(
                    f"  [{level:>3}] {phase.name:<24} {phase.completed:>5} calls in "
                    f"{phase.seconds:6.2f} s = {phase.rate:7.1f} calls/s (failed {phase.failed})"
                    f"  CPU s: caller {client:.1f} ({per_call:.1f} per 1,000 calls), {used}"
                )
    print("best of the rounds (calls/s; caller CPU s per 1,000 calls, least of the rounds):")
    for level in levels:
        rate = {name: max(p.rate for p in ps) for (lv, name), ps in results.items() if lv == level}
        cost = {
            name: min(p.cpu["caller"] / p.completed * 1000 for p in ps if p.completed)
            for (lv, name), ps in results.items()
            if lv == level and any(p.completed for p in ps)
        }
        for name, value in rate.items():
            print(f"  [{level:>3}] {name:<24} {value:7.1f} calls/s  {cost.get(name, 0):5.2f} CPU s")
        for subject in ("dialerd", "dialerd-baseline"):
            for base in ("minimal", "minimal-callee-bye", "minimal-callee-bye-lean"):
                if rate.get(base) and subject in rate:
                    print(
                        f"  [{level:>3}] ratio {subject} / {base}: {rate[subject] / rate[base]:.1%}"
                    )
        if rate.get("dialerd-baseline") and "dialerd" in rate:
            print(
                f"  [{level:>3}] ratio dialerd / dialerd-baseline: "
                f"{rate['dialerd'] / rate['dialerd-baseline']:.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
