"""Telephony benchmark: sustained originations per second through the real Asterisk of
the rig (scripts/rig) to its SIPp callee, dialerd side by side with a minimal ARI loop.

In one run, on the same rig and with the same number of calls in flight:

- ``minimal``: a plain httpx + httpx-ws loop keeping N calls in flight: originate
  ``answer-0`` into its own Stasis app, hang up (DELETE) on ``StasisStart``, count the
  call when its ``ChannelDestroyed`` comes. The floor of what any ARI client costs.
- ``minimal-callee-bye``: the same loop dialling ``hangup-0`` (the callee answers and sends
  BYE at once) without hanging up itself: the exact call dialerd's run makes.
- ``dialerd``: the daemon as a real process (``dialerd run``: engine, SQLite store, ARI
  telephony, API) with one agentless campaign of as many targets, all ``hangup-0``, at
  most N attempts at once (``max_concurrent_attempts``), ticking every 50 ms. Answered
  calls go to the agentless context (``dialerd-agentless``), where the callee's BYE ends
  them: the rig has no context that hangs up at once, and the callee's BYE is as quick.
  Counted from ``run`` to the campaign's ``stop``, calls ended ``normal``.

Each phase is bounded in calls and in time. Prints the rates and the ratio
dialerd / minimal-callee-bye (the target: at least 90 %). Run: scripts/bench-telephony --help
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
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
from httpx_ws import aconnect_ws

REPO = Path(__file__).resolve().parents[2]
ARI_URL = "http://127.0.0.1:8088"
AUTH = ("dialerd", "dialerd-rig-secret")
AMI = ("127.0.0.1", 5038, "dialerd", "dialerd-rig-secret")
ENDPOINT = "PJSIP/{number}@callee"
TOKEN = "bench-telephony-token"
TICK = float(os.environ.get("BENCH_TICK", "0.05"))
CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"


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


async def minimal(number: str, hang_up: bool, calls: int, concurrency: int, limit: float) -> Phase:
    app = f"bench-min-{os.getpid()}-{number}"
    waiting: dict[str, tuple[anyio.Event, anyio.Event]] = {}
    completed = failed = started = 0
    decoder = msgspec.json.Decoder(_Event)
    async with httpx.AsyncClient(
        base_url=f"{ARI_URL}/ari", auth=AUTH, timeout=10,
        limits=httpx.Limits(max_connections=concurrency * 2),
    ) as http, aconnect_ws(
        f"{ARI_URL}/ari/events", http, params={"app": app, "subscribeAll": "false"}
    ) as ws:  # fmt: skip

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
    name = "minimal" if hang_up else "minimal-callee-bye"
    return Phase(name=name, calls=started, completed=completed, failed=failed, seconds=seconds)


# -- dialerd ------------------------------------------------------------------------------


def dialerd_config(state: Path, port: int, ops_port: int, concurrency: int, tick: float) -> str:
    return f"""
state_dir = "{state}"
[engine]
tick_interval = {tick}
max_concurrent_attempts = {concurrency}
max_attempts_per_second = 1000.0
[api]
listen = "127.0.0.1:{port}"
[[api.tokens]]
token = "{TOKEN}"
customer_id = "{CUSTOMER}"
[ops]
listen = "127.0.0.1:{ops_port}"
[log]
level = "warning"
format = "json"
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
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def dialerd(calls: int, concurrency: int, limit: float, profile: str | None) -> Phase:
    with tempfile.TemporaryDirectory(prefix="bench-telephony-") as tmp:
        port, ops_port = free_port(), free_port()
        config = Path(tmp) / "dialerd.toml"
        config.write_text(dialerd_config(Path(tmp) / "state", port, ops_port, concurrency, TICK))
        command = [sys.executable, "-m", "dialerd.cli", "run", "--config", str(config)]
        log = (Path(tmp) / "daemon.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=REPO)
        http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    ready = f"http://127.0.0.1:{ops_port}/readyz"
                    if httpx.get(ready, timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("dialerd did not get ready:\n" + _tail(Path(tmp)))
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
                    ["py-spy", "record", "--pid", str(process.pid), "-o", profile,
                     "-f", "raw", "-r", "250", "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(1)  # py-spy attaches
            cpu_before = _cpu_seconds(process.pid)
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
            cpu = _cpu_seconds(process.pid) - cpu_before
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
                print(f"  dialerd: calls not ended normal: {reasons}")
            return Phase(
                name="dialerd",
                calls=completed + sum(reasons.values()),
                completed=completed,
                failed=sum(reasons.values()),
                seconds=seconds,
                cpu={"dialerd": cpu},
            )
        finally:
            http.close()
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


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


def _tail(directory: Path) -> str:
    return (directory / "daemon.log").read_text()[-3000:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per phase")
    parser.add_argument("--concurrency", type=int, default=10, help="calls in flight")
    parser.add_argument("--seconds", type=float, default=90.0, help="time limit per phase")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the phases N times")
    parser.add_argument(
        "--profile", help="py-spy record the daemon to this file (collapsed stacks)"
    )
    args = parser.parse_args()
    if subprocess.run([str(REPO / "scripts" / "rig"), "status"], capture_output=True).returncode:
        print("the rig is not running: scripts/rig setup && scripts/rig start", file=sys.stderr)
        return 2
    print(
        f"telephony benchmark: {args.calls} calls per phase, {args.concurrency} in flight, "
        f"Asterisk 22 + SIPp on loopback, {os.cpu_count()} CPUs"
    )
    results: dict[str, list[Phase]] = {}
    phases = (
        lambda: anyio.run(minimal, "answer-0", True, args.calls, args.concurrency, args.seconds),
        lambda: anyio.run(minimal, "hangup-0", False, args.calls, args.concurrency, args.seconds),
        lambda: dialerd(args.calls, args.concurrency, args.seconds, args.profile),
    )
    for _ in range(args.rounds):
        for run in phases:
            before = _rig_cpu()
            phase = run()
            phase.cpu.update({k: v - before[k] for k, v in _rig_cpu().items()})
            results.setdefault(phase.name, []).append(phase)
            client = phase.cpu.pop("client")
            if phase.name == "dialerd":
                client = phase.cpu.pop("dialerd", 0.0)
            used = ", ".join(f"{k} {v:.1f}" for k, v in phase.cpu.items())
            print(
                f"  {phase.name:<20} {phase.completed:>5} calls in {phase.seconds:6.2f} s"
                f"  = {phase.rate:7.1f} calls/s  (failed {phase.failed})"
                f"  CPU s: caller {client:.1f}, {used}"
            )
    rate = {name: max(p.rate for p in phases) for name, phases in results.items()}
    print("best of the rounds:")
    for name, value in rate.items():
        print(f"  {name:<20} {value:7.1f} calls/s")
    for base in ("minimal-callee-bye", "minimal"):
        if rate.get(base):
            print(f"ratio dialerd / {base}: {rate['dialerd'] / rate[base]:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
