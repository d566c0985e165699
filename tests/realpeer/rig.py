"""The real-telephony rig (scripts/rig) as the tests drive it.

Asterisk 22 in a Debian sid chroot in front of a SIPp callee, all on loopback: ARI on
127.0.0.1:8088, AMI on 127.0.0.1:5038, SIP 127.0.0.1:5070 -> 127.0.0.1:5080. The callee's
behaviour is picked by the dialled number (answer-<ms>, hangup-<ms>, busy-<ms>,
noanswer-<ms>, unavail-<ms>, decline-<ms>, human-<ms>, machine-<ms>; see
scripts/rig.d/callee.xml) and it writes a ledger line per INVITE and per outcome.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parents[2]
RIG_SCRIPT = REPO / "scripts" / "rig"
DEFAULT_DIR = Path("/var/tmp/dialerd-rig")
ASTERISK_CONF = "/etc/asterisk-dialerd/asterisk.conf"
AGENTS_CONTEXT = "dialerd-rig-agents"
AGENT_STATES = frozenset({"NOT_INUSE", "INUSE", "BUSY", "UNAVAILABLE", "RINGING", "ONHOLD"})


class RigError(RuntimeError):
    """The rig could not be set up, started or driven."""


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger line of the SIPp callee: `<unix time> <call-id> <event> <number> [<id>]`."""

    time: float
    call_id: str
    event: str
    number: str
    dialerd_id: str | None


def parse_ledger(text: str) -> list[LedgerEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) not in (4, 5):
            continue  # a partly written last line
        try:
            when = float(fields[0])
        except ValueError:
            continue
        dialerd_id = fields[4] if len(fields) == 5 else None
        entries.append(LedgerEntry(when, fields[1], fields[2], fields[3], dialerd_id))
    return entries


@dataclass(frozen=True)
class LedgerMark:
    """A position in the ledger; entries_since(mark) returns what came after it."""

    offset: int


class Rig:
    """Handle on one rig directory: start/stop it, read its ledger, poke Asterisk."""

    ari_url = "http://127.0.0.1:8088"
    ari_user = "dialerd"
    ari_password = "dialerd-rig-secret"
    ari_app = "dialerd"
    ami_host = "127.0.0.1"
    ami_port = 5038
    ami_user = "dialerd"
    ami_secret = "dialerd-rig-secret"
    endpoint_template = "PJSIP/{number}@callee"
    queues: ClassVar[dict[str, tuple[str, ...]]] = {
        "sales": ("agent1", "agent2"),
        "support": ("agent3",),
    }

    def __init__(self, directory: Path | None = None) -> None:
        if directory is None:
            directory = Path(os.environ.get("DIALERD_RIG_DIR") or DEFAULT_DIR)
        self.directory = directory
        self.root = directory / "root"
        self.ledger_path = directory / "ledger.log"
        self.queue_log_path = self.root / "var/log/asterisk-dialerd/queue_log"

    # --- scripts/rig ---------------------------------------------------------------------

    def _script(self, command: str, timeout: float) -> str:
        try:
            done = subprocess.run(
                [str(RIG_SCRIPT), command, "--dir", str(self.directory)],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RigError(f"scripts/rig {command} did not finish in {timeout} s") from exc
        if done.returncode != 0:
            raise RigError(
                f"scripts/rig {command} failed (exit {done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def setup(self) -> str:
        return self._script("setup", timeout=900)

    def start(self) -> str:
        return self._script("start", timeout=120)

    def stop(self) -> str:
        return self._script("stop", timeout=60)

    def restart_asterisk(self) -> str:
        """Restart Asterisk alone; the callee (and its ledger) keeps running."""
        return self._script("restart-asterisk", timeout=120)

    def is_running(self) -> bool:
        done = subprocess.run(
            [str(RIG_SCRIPT), "status", "--dir", str(self.directory)],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    # --- addresses -----------------------------------------------------------------------

    def endpoint(self, number: str) -> str:
        """The ARI/AMI endpoint that dials the callee with this number, e.g. answer-0."""
        return self.endpoint_template.format(number=number)

    @property
    def ari_auth(self) -> tuple[str, str]:
        return (self.ari_user, self.ari_password)

    @property
    def ari_events_url(self) -> str:
        """The ARI websocket for the rig's Stasis app (credentials in the query)."""
        return (
            f"{self.ari_url.replace('http', 'ws', 1)}/ari/events"
            f"?app={self.ari_app}&api_key={self.ari_user}:{self.ari_password}"
        )

    # --- the callee's ledger -------------------------------------------------------------

    def ledger(self) -> list[LedgerEntry]:
        try:
            return parse_ledger(self.ledger_path.read_text())
        except FileNotFoundError:
            return []

    def ledger_mark(self) -> LedgerMark:
        try:
            return LedgerMark(self.ledger_path.stat().st_size)
        except FileNotFoundError:
            return LedgerMark(0)

    def ledger_since(self, mark: LedgerMark) -> list[LedgerEntry]:
        try:
            with self.ledger_path.open("rb") as f:
                f.seek(mark.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        # Only whole lines: the callee may be writing the last one right now.
        text = data.decode(errors="replace")
        return parse_ledger(text[: text.rfind("\n") + 1])

    def wait_ledger(
        self,
        mark: LedgerMark,
        predicate: Callable[[list[LedgerEntry]], bool],
        timeout: float = 10.0,
    ) -> list[LedgerEntry]:
        """Poll the ledger since mark until predicate(entries) holds; return the entries."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.ledger_since(mark)
            if predicate(entries):
                return entries
            if time.monotonic() > deadline:
                raise AssertionError(f"ledger condition not met within {timeout} s: {entries}")
            time.sleep(0.05)

    def queue_log(self) -> list[str]:
        """Asterisk's queue_log lines (time|callid|queue|agent|event|data...)."""
        try:
            return self.queue_log_path.read_text().splitlines()
        except FileNotFoundError:
            return []

    # --- Asterisk ------------------------------------------------------------------------

    def asterisk_cli(self, command: str, timeout: float = 10.0) -> str:
        """Run one Asterisk CLI command (asterisk -rx) in the chroot; return its output."""
        done = subprocess.run(
            ["chroot", str(self.root), "asterisk", "-C", ASTERISK_CONF, "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RigError(f"asterisk -rx {command!r} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def wait_connections_ended(self, app: str, timeout: float = 10.0) -> None:
        """Wait until Asterisk lists no ARI websocket session for ``app``.

        A session Asterisk ends unregisters its applications by name: ended after a new
        connection for the same name registered, it takes that connection's registration
        with it (no event reaches it any more, "Application not found"). The adapter
        notices (its registration check) and reconnects, but only after a check round;
        a real restart (a process exit, then a start) leaves Asterisk time to end the old
        session first, and a test that stops and starts an adapter within milliseconds
        waits for it here rather than go through that. With Asterisk down there is no
        session to wait for.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                listed = self.asterisk_cli("ari show websocket sessions")
            except RigError:
                return
            if not any(app in line.split() for line in listed.splitlines()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"Asterisk kept a websocket session for {app}: {listed}")
            time.sleep(0.02)

    def set_agent_state(self, agent: str, state: str) -> None:
        """Set the device state Custom:<agent> (NOT_INUSE, INUSE, UNAVAILABLE, ...)."""
        if state not in AGENT_STATES:
            raise ValueError(f"unknown device state {state!r}")
        self.asterisk_cli(f"devstate change Custom:{agent} {state}")

    @staticmethod
    def member_interface(member: str) -> str:
        """agent1 -> Local/agent1@dialerd-rig-agents (a full interface is kept as is)."""
        return member if "/" in member else f"Local/{member}@{AGENTS_CONTEXT}"

    def pause(self, queue: str, member: str, paused: bool = True) -> None:
        verb = "pause" if paused else "unpause"
        out = self.asterisk_cli(
            f"queue {verb} member {self.member_interface(member)} queue {queue}"
        )
        if "ERROR" in out.upper() or "not found" in out.lower():
            raise RigError(f"queue {verb} {member} in {queue}: {out}")

    def set_wrapuptime(self, queue: str, seconds: int) -> None:
        """Change a queue's wrapuptime in the running Asterisk (start puts back 0)."""
        path = self.root / "etc/asterisk-dialerd/queues.conf"
        header = f"[{queue}](rig-queue)"
        lines = path.read_text().splitlines()
        if header not in lines:
            raise RigError(f"no queue {queue!r} in {path}")
        at = lines.index(header) + 1
        end = at
        while end < len(lines) and not lines[end].startswith("["):
            end += 1
        section = [line for line in lines[at:end] if not line.startswith("wrapuptime")]
        lines[at:end] = [f"wrapuptime = {int(seconds)}", *section]
        path.write_text("\n".join(lines) + "\n")
        self.asterisk_cli(f"queue reload parameters {queue}")

    def reset_agents(self) -> None:
        """Every agent NOT_INUSE and unpaused, as after start."""
        for queue, members in self.queues.items():
            for member in members:
                self.set_agent_state(member, "NOT_INUSE")
                self.pause(queue, member, paused=False)

    def hangup_all(self) -> None:
        self.asterisk_cli("channel request hangup all")

    def ami_login(self, timeout: float = 5.0) -> socket.socket:
        """A raw AMI connection, logged in (caller closes it)."""
        sock = socket.create_connection((self.ami_host, self.ami_port), timeout=timeout)
        try:
            sock.sendall(
                f"Action: Login\r\nUsername: {self.ami_user}\r\n"
                f"Secret: {self.ami_secret}\r\n\r\n".encode()
            )
            buf = b""
            while b"Authentication accepted" not in buf:
                if b"Authentication failed" in buf:
                    raise RigError("AMI refused the rig's credentials")
                chunk = sock.recv(4096)
                if not chunk:
                    raise RigError(f"AMI closed the connection: {buf!r}")
                buf += chunk
        except BaseException:
            sock.close()
            raise
        return sock
