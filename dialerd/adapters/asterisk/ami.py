"""A small anyio client of the Asterisk Manager Interface (AMI).

One TCP connection, logged in with ``Events:`` limited to the classes asked for. Each
action gets an ``ActionID``; its reply is the response plus, for list actions
(``EventList: start``), the events carrying that id up to the one marked
``EventList: Complete``. Other events go to the ``on_event`` callback. The client
reconnects with back-off; while it is not logged in, actions raise ``AmiUnavailable``
at once rather than wait. The secret is sent once at login and never logged or shown.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import anyio
import msgspec
import structlog
from anyio.abc import SocketStream, TaskStatus

from dialerd.adapters.asterisk.ami_protocol import (
    AmiMessage,
    AmiParser,
    AmiProtocolError,
    encode_action,
)

log = structlog.get_logger("dialerd.ami")

BACKOFF_INITIAL: Final = 0.5
BACKOFF_MAX: Final = 10.0
READ_SIZE: Final = 65536


class AmiUnavailable(Exception):
    """AMI cannot be asked now (not connected, connection lost, no reply in time)."""


class AmiError(Exception):
    """Asterisk answered an action with ``Response: Error``; the text has its message."""


class AmiReply(msgspec.Struct, frozen=True):
    """An action's response and, for a list action, the events of the list."""

    response: AmiMessage
    events: tuple[AmiMessage, ...] = ()


@dataclass(eq=False)
class _Pending:
    action: str
    response: AmiMessage | None = None
    events: list[AmiMessage] = field(default_factory=list)
    failure: str | None = None
    done: anyio.Event = field(default_factory=anyio.Event)


class AmiClient:
    """Connects, logs in, correlates actions and their replies, and reconnects."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        events: str = "off",
        connect_timeout: float = 5.0,
        request_timeout: float = 5.0,
        on_event: Callable[[AmiMessage], None] | None = None,
        on_login: Callable[[], Awaitable[None]] | None = None,
        on_connection: Callable[[bool], None] | None = None,
    ) -> None:
        self.host, self.port, self.username = host, port, username
        self._secret = secret
        self.events = events
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.on_event = on_event
        self.on_login = on_login
        # Told True once logged in, False when the session ends (metrics).
        self.on_connection = on_connection
        self._stream: SocketStream | None = None
        self._logged_in = False
        self._reason: str | None = "AMI not connected yet"
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._write_lock = anyio.Lock()
        self.logged_in_event = anyio.Event()

    def __repr__(self) -> str:
        return f"AmiClient({self.username}@{self.host}:{self.port})"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def unavailable_reason(self) -> str | None:
        """None while logged in; else why actions cannot be sent."""
        return None if self._logged_in else self._reason

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Stay connected until cancelled; ``started()`` after the first attempt, whatever
        its result, so that a daemon starts (not ready) while Asterisk is away."""
        delay = BACKOFF_INITIAL
        started = False

        def ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        while True:
            try:
                await self._session(ready=ready)
            except Exception as exc:
                cause = leaf_exception(exc)
                expected = isinstance(cause, OSError | AmiUnavailable | AmiProtocolError | AmiError)
                if self._logged_in:
                    delay = BACKOFF_INITIAL  # it worked: the first retry comes soon
                self._reason = f"AMI at {self.address}: {cause or type(cause).__name__}"
                log.warning("AMI unavailable; retrying", address=self.address,
                            error=str(cause) or type(cause).__name__, retry_in=delay,
                            exc_info=not expected)  # fmt: skip
            finally:
                if self._logged_in and self.on_connection is not None:
                    self.on_connection(False)
                self._logged_in = False
                self.logged_in_event = anyio.Event()
                self._fail_pending(self._reason or "AMI connection closed")
            ready()
            await anyio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def action(self, name: str, fields: Mapping[str, str] | None = None) -> AmiReply:
        """Send one action and wait for its whole reply.

        Raises ``AmiUnavailable`` (not logged in, connection lost, no reply within
        ``request_timeout``) or ``AmiError`` (Asterisk refused it).
        """
        if not self._logged_in:
            raise AmiUnavailable(self._reason or "AMI not connected")
        return await self._request(name, fields or {})

    async def _request(self, name: str, fields: Mapping[str, str]) -> AmiReply:
        stream = self._stream
        if stream is None:
            raise AmiUnavailable("AMI not connected")
        action_id = f"dialerd-{next(self._ids)}"
        pending = self._pending[action_id] = _Pending(name)
        try:
            with anyio.fail_after(self.request_timeout):
                async with self._write_lock:
                    await stream.send(encode_action(name, action_id, fields))
                await pending.done.wait()
        except TimeoutError:
            raise AmiUnavailable(
                f"AMI at {self.address} did not answer {name} within {self.request_timeout} s"
            ) from None
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise AmiUnavailable(f"AMI at {self.address}: {exc or type(exc).__name__}") from None
        finally:
            self._pending.pop(action_id, None)
        if pending.failure is not None or pending.response is None:
            raise AmiUnavailable(pending.failure or "AMI connection closed")
        if pending.response.response.lower() == "error":
            message = pending.response.get("Message") or "no message"
            raise AmiError(f"AMI {name} refused: {message}")
        return AmiReply(pending.response, tuple(pending.events))

    async def _session(self, *, ready: Callable[[], None]) -> None:
        with anyio.fail_after(self.connect_timeout):
            stream = await anyio.connect_tcp(self.host, self.port)
        async with stream, anyio.create_task_group() as task_group:
            self._stream = stream
            try:
                parser = AmiParser()
                task_group.start_soon(self._read, stream, parser)
                await self._login()
                self._logged_in, self._reason = True, None
                self.logged_in_event.set()
                if self.on_connection is not None:
                    self.on_connection(True)
                log.info("AMI logged in", address=self.address, username=self.username,
                         banner=parser.banner)  # fmt: skip
                if self.on_login is not None:
                    await self.on_login()
                ready()
                await anyio.sleep_forever()
            finally:
                self._stream = None
                task_group.cancel_scope.cancel()

    async def _login(self) -> None:
        fields = {"Username": self.username, "Secret": self._secret, "Events": self.events}
        try:
            await self._request("Login", fields)
        except AmiError as exc:
            # The reply's message ("Authentication failed"), never what was sent.
            raise AmiError(f"login as {self.username!r} refused: {exc}") from None

    async def _read(self, stream: SocketStream, parser: AmiParser) -> None:
        try:
            while True:
                data = await stream.receive(READ_SIZE)
                messages, problems = parser.feed(data)
                for problem in problems:
                    log.warning("AMI line skipped", line=problem.line, why=problem.why)
                for message in messages:
                    self._dispatch(message)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
            raise AmiUnavailable(f"connection closed ({type(exc).__name__})") from None

    def _dispatch(self, message: AmiMessage) -> None:
        pending = self._pending.get(message.action_id) if message.action_id else None
        if pending is None:
            if message.event and self.on_event is not None:
                try:
                    self.on_event(message)
                except Exception:
                    log.exception("AMI event handler failed", ami_event=message.event)
            return
        if message.response:
            pending.response = message
            if message.get("EventList").lower() != "start":
                pending.done.set()
        elif message.get("EventList").lower() == "complete":
            pending.done.set()
        else:
            pending.events.append(message)

    def _fail_pending(self, why: str) -> None:
        for pending in self._pending.values():
            pending.failure = why
            pending.done.set()


def leaf_exception(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: the one worth reporting."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
