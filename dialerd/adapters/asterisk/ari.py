"""Telephony backend ``asterisk``: places and follows calls through Asterisk's ARI.

Each call is a channel whose id is the campaigncall id, placed with one ``POST
/ari/channels``; the events of the websocket ``/ari/events`` tell how it goes
(``call_state`` maps them). A campaign without actions dials straight into the
dialplan (``direct``): the queue context when the campaign has a queue, else the
agentless one, with the ``DIALERD_*`` channel variables set at origination telling it
what to do; its events come through the application's subscription to the endpoint the
calls go out on (``PJSIP/<trunk>``, subscribed on each connect), and its answer is its
channel going ``Up``. A campaign with actions dials into our Stasis application: the
answered channel enters it (``StasisStart``: ``Answered``) and its actions run while it
stays there (``ari_flow``). When the endpoint cannot be subscribed to (a dial string
that names no PJSIP endpoint), campaigns without actions go through the application
too, and are handed to the dialplan on answer (``continue``: two requests a call).

Idempotency: a second origination of an id this process placed is ignored; Asterisk
refuses a channel id that is live (409), so a restarted process cannot place a second
call while the first lives. ARI keeps no backlog of events: after a reconnect the
adapter lists the channels, reports the calls it followed that are gone as ``lost``
(never placed again) and follows the live ones it did not know (placed before a
restart) from their current state: only channels of our application that carry the
``DIALERD_ID`` it set (a channel someone else named with a UUID is left alone). A call
whose actions were running when the process died cannot resume them: it is hung up.

Registration: Asterisk gives an application's events to the websocket session that
registered its name last, and when a session ends it unregisters its applications by
name. An older session of the same name (one half-open before a reconnect, or a
previous process's) that ends after this one registered takes the registration with it:
the websocket stays up and silent. So at each connect, and every
``registration_check_seconds`` while connected (``[telephony.asterisk]
registration_check_interval``), the adapter sends its application a user event (``POST
/events/user/...``); if it does not come back on the websocket within
``registration_check_timeout``, the registration is lost: it reconnects (a warning line,
``dialerd_telephony_registration_lost_total``). ``GET /applications/{app}`` cannot tell:
an application Asterisk deactivated is still listed while it has subscriptions.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections import OrderedDict, deque
from typing import Any, Final

import anyio
import msgspec
import structlog
from anyio.abc import ObjectSendStream, TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from dialerd import metrics
from dialerd.adapters.asterisk import call_state
from dialerd.adapters.asterisk.ami import leaf_exception
from dialerd.adapters.asterisk.ari_events import (
    EVENT_TYPES,
    AriEvent,
    AriEventError,
    Channel,
    ChannelUserevent,
    ChannelVarset,
    Dial,
    PlaybackFinished,
    RecordingFailed,
    RecordingFinished,
    decode_channels,
    decode_event,
)
from dialerd.adapters.asterisk.ari_flow import CallFlow, CallPlan, FlowResult
from dialerd.adapters.asterisk.ari_http import (
    AriHttp,
    AriHttpError,
    AriResponse,
    AriWebSocket,
    Params,
    connect_events,
)
from dialerd.adapters.asterisk.call_state import CallState, Phase, Step
from dialerd.adapters.asterisk.media import MediaServer
from dialerd.adapters.tts import Tts
from dialerd.core.actions import ActionsInvalid, compile_actions
from dialerd.model import Address
from dialerd.ports import (
    ActionServices,
    AgentConnected,
    Answered,
    Ended,
    Origination,
    OriginationError,
    TelephonyEvent,
    TelephonyUnavailable,
)

log = structlog.get_logger("dialerd.ari")

BACKOFF_INITIAL: Final = 0.5
BACKOFF_MAX: Final = 10.0
# Ids of calls this process placed, kept to ignore a repeated origination after the
# call ended (Asterisk would place a second call then); bounded, oldest forgotten first.
PLACED_MEMORY: Final = 100_000
# Connections to ARI at most (each carries one request at a time): enough for this many
# calls waiting on a request at once; more wait their turn.
DEFAULT_CONNECTIONS: Final = 32
# The event stream is pinged after this many quiet seconds, and given up this many after.
PING_INTERVAL: Final = 10.0
PING_TIMEOUT: Final = 10.0
# While connected, seconds between two checks that the application's events still reach
# the websocket, and how long the check's user event may take to come back (the defaults
# of [telephony.asterisk] registration_check_interval and registration_check_timeout).
REGISTRATION_CHECK_SECONDS: Final = 15.0
REGISTRATION_CHECK_TIMEOUT: Final = 10.0
# Longest the DELETE of a flow's leg or bridge may take when the adapter stops under it.
CLEANUP_SECONDS: Final = 5.0
# A dialled number goes into a dial string: nothing that could add a second one.
_NUMBER: Final = re.compile(r"^[A-Za-z0-9+*#._-]{1,64}$")
_CAMPAIGNCALL_ID: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
_QUEUE_VARIABLE: Final = "DIALERD_QUEUE"
# Set at origination: the app that placed the call and its id (adoption checks both),
# and "1" when the campaign's actions run on the call in Stasis.
_APP_VARIABLE: Final = "DIALERD_APP"
_ID_VARIABLE: Final = "DIALERD_ID"
_FLOW_VARIABLE: Final = "DIALERD_FLOW"
# "1" when the call was placed straight into the dialplan (a restarted process follows
# its answer from the channel's state, not from StasisStart).
_DIRECT_VARIABLE: Final = "DIALERD_DIRECT"
# A channel the application follows both ways (subscribed by an origination into Stasis
# or an adoption, and on the trunk's endpoint) has each event reported twice, the same
# text to Asterisk's microsecond timestamp: the second is dropped. The copies come close
# together; this many messages are remembered.
RECENT_MESSAGES: Final = 512
# The PJSIP endpoint of a dial string: PJSIP/<number>@<endpoint> or PJSIP/<endpoint>/<uri>.
_PJSIP_ENDPOINT: Final = re.compile(r"PJSIP/(?:[^@/]*@(?P<at>[^@/{}]+)|(?P<name>[^@/{}]+)/.*)")


class AriUnavailable(TelephonyUnavailable, OriginationError):
    """Asterisk could not be asked (ARI unreachable, or no event stream); an
    origination then fails like any other (``OriginationError``)."""


class AriRegistrationLost(AriUnavailable):
    """Asterisk no longer gives the application's events to this websocket: the
    registration was taken by the end of another session of the same name (or by
    another one registering it)."""


class AriTelephony:
    """Places calls through ARI and reports their ``Answered``, ``AgentConnected`` and
    ``Ended`` events."""

    name = "asterisk"
    # Queue calls report when an agent took them: the engine measures abandonment.
    reports_agent_connect = True

    def __init__(
        self,
        *,
        url: str,
        username: str,
        password: str,
        app: str = "dialerd",
        endpoint: str = "PJSIP/{number}@trunk",
        queue_context: str = "dialerd-queue",
        agentless_context: str = "dialerd-agentless",
        amd: bool = False,
        queue_timeout: int = 20,
        connect_timeout: float = 5.0,
        request_timeout: float = 5.0,
        tts: Tts | None = None,
        services: ActionServices | None = None,
        media_url: str = "http://127.0.0.1:8090",
        media_listen: tuple[str, int] | None = None,
        amd_context: str = "dialerd-amd-action",
        recording_dir: str = "dialerd",
        connections: int = DEFAULT_CONNECTIONS,
        registration_check_seconds: float = REGISTRATION_CHECK_SECONDS,
        registration_check_timeout: float = REGISTRATION_CHECK_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self._password = password
        self.app = app
        self.endpoint = endpoint
        self.queue_context = queue_context
        self.agentless_context = agentless_context
        self.amd = amd
        self.queue_timeout = queue_timeout
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.tts = tts
        self.services = services
        self.media_url = media_url.rstrip("/")
        self.media_listen = media_listen
        self.amd_context = amd_context
        self.recording_dir = recording_dir.strip("/")
        self.connections = max(1, connections)
        self.registration_check_seconds = registration_check_seconds
        self.registration_check_timeout = registration_check_timeout
        # The user event the registration check awaits now (its name), and its arrival.
        self._check: tuple[str, anyio.Event] | None = None
        self._checks = itertools.count(1)
        # The reader waits for the next message: it has handled every one it read.
        self._awaiting_message = False
        # What each placed call runs once answered; the flows running now.
        self._plans: dict[str, CallPlan] = {}
        self._flows: dict[str, CallFlow] = {}
        self._recordings: dict[str, str] = {}
        # Calls whose flow ended but could not be hung up (ARI away): hung up on reconnect.
        self._to_hang_up: set[str] = set()
        # Connect legs and bridges to delete once ARI answers again (paths under /ari).
        self._to_delete: set[str] = set()
        self._calls: dict[str, CallState] = {}
        self._answered_at: dict[str, float] = {}
        self._placed: OrderedDict[str, None] = OrderedDict()
        self._adopting: set[str] = set()
        # Where the calls go out (PJSIP/<trunk>), if the dial string names it; while the
        # application is subscribed to it, campaigns without actions dial directly.
        self._trunk = trunk_endpoint(endpoint)
        self._direct = False
        self._recent: deque[str] = deque()
        self._recent_set: set[str] = set()
        self._http: AriHttp | None = None
        self._events: ObjectSendStream[TelephonyEvent] | None = None
        self._task_group: TaskGroup | None = None
        self._connected = False
        self._reason: str | None = "ARI not connected yet"

    def __repr__(self) -> str:
        return f"AriTelephony({self.username}@{self.url}, app={self.app!r})"

    # -- the port ------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        """None while the event stream is up; else why no call can be placed."""
        return None if self._connected else self._reason

    async def run(
        self,
        events: ObjectSendStream[TelephonyEvent],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Stay connected to ARI until cancelled; ``started()`` after the first attempt
        to connect, whether or not it succeeded (``unavailable_reason`` says)."""
        http = AriHttp(
            f"{self.url}/ari",
            self.username,
            self._password,
            size=self.connections,
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
        )
        metrics.telephony_registration_lost(self.name, 0)
        try:
            async with events, anyio.create_task_group() as task_group:
                self._http, self._events, self._task_group = http, events, task_group
                if self.media_listen is not None and self.tts is not None:
                    host, port = self.media_listen
                    server = MediaServer(self.tts.cache_dir, host, port)
                    await task_group.start(server.serve, name="ari media")
                try:
                    await self._stay_connected(task_status)
                finally:
                    self._set_connected(False, "dialerd is stopping")
                    # The flows stop; their clean-up (a connect leg, a bridge: delete_soon)
                    # still has the client until the task group is done.
                    task_group.cancel_scope.cancel()
        finally:
            self._http = self._events = self._task_group = None
            with anyio.CancelScope(shield=True):
                await self._unsubscribe(http)
                await http.aclose()

    async def originate(self, origination: Origination) -> None:
        """Dial the destination; a repeated id is ignored. Raise ``OriginationError``."""
        campaigncall_id = origination.campaigncall_id
        if not self._connected or self._http is None:
            raise AriUnavailable(f"cannot place calls: {self._reason}")
        if campaigncall_id in self._calls or campaigncall_id in self._placed:
            log.warning("duplicate origination ignored", campaigncall_id=campaigncall_id)
            return
        number = origination.destination.target
        if not _NUMBER.fullmatch(number):
            raise OriginationError(f"destination {number!r} cannot be dialled through Asterisk")
        # The campaign's queue as Asterisk names it (the registry's name); "" agentless.
        queue = origination.queue_name
        try:
            program = compile_actions(origination.actions)
        except ActionsInvalid as exc:
            raise OriginationError(f"the campaign's actions cannot run: {exc}") from None
        if not program.empty:
            self._plans[campaigncall_id] = CallPlan(
                campaign_id=origination.campaign_id,
                customer_id=origination.customer_id,
                number=number,
                queue=queue,
                program=program,
                variables=dict(origination.variables),
            )
        direct = self._direct and program.empty
        # Registered first: the call's first events may come before the reply.
        self._calls[campaigncall_id] = call_state.placed(
            campaigncall_id, to_queue=bool(queue), direct=direct
        )
        started = time.perf_counter()
        try:
            response = await self._http.request(
                "POST",
                "/channels",
                params=self._originate_params(origination, queue, direct=direct),
                json={
                    "variables": self._variables(
                        origination, queue, flow=not program.empty, direct=direct
                    )
                },
            )
        except AriHttpError as exc:
            await self._after_uncertain_originate(campaigncall_id)
            self._plans.pop(campaigncall_id, None)
            raise AriUnavailable(f"ARI at {self.url}: {_describe(exc)}") from None
        finally:
            metrics.originate_latency(self.name, time.perf_counter() - started)
        if response.status_code == 409:
            # Live already (placed before a restart): follow it, never dial again.
            log.info("origination of a live call ignored", campaigncall_id=campaigncall_id)
            self._remember(campaigncall_id)
            return
        if response.is_error:
            self._calls.pop(campaigncall_id, None)
            self._plans.pop(campaigncall_id, None)
            raise OriginationError(f"ARI refused the call: {_http_error(response)}")
        self._remember(campaigncall_id)

    async def cancel(self, campaigncall_id: str) -> None:
        """Drop an unanswered call (the callee's phone stops ringing); it ends ``cancelled``.

        Raises ``TelephonyUnavailable`` if Asterisk cannot be reached (the engine retries).
        """
        await self._drop(campaigncall_id)

    async def hangup(self, campaigncall_id: str) -> None:
        """Hang up an answered call; it ends ``normal``."""
        await self._drop(campaigncall_id)

    async def live_calls(self) -> set[str]:
        """Ids of the live calls in Asterisk; raise ``AriUnavailable`` if it cannot tell.

        Live calls this process did not place are followed from now on.
        """
        if not self._connected:
            raise AriUnavailable(f"cannot list calls: {self._reason}")
        try:
            channels = await self._list_channels()
            for channel in channels:
                if _CAMPAIGNCALL_ID.fullmatch(channel.id) and channel.id not in self._calls:
                    await self._adopt(channel)
        except OriginationError as exc:  # Asterisk answered, but not with the list
            raise AriUnavailable(f"cannot list calls: {exc}") from None
        # Ours: followed, or being adopted by a reconnect right now.
        ours = self._calls.keys() | self._adopting
        return {channel.id for channel in channels if channel.id in ours}

    # -- connection ------------------------------------------------------------------
    async def _stay_connected(self, task_status: TaskStatus[None]) -> None:
        http = self._http
        assert http is not None
        delay = BACKOFF_INITIAL
        started = False
        while True:
            try:
                session = await connect_events(
                    http,
                    "/events",
                    {"app": self.app, "subscribeAll": "false"},
                    ping_interval=PING_INTERVAL,
                    ping_timeout=PING_TIMEOUT,
                )
                try:
                    await self._subscribe()
                    await self._reconcile()
                    async with anyio.create_task_group() as reading:
                        reading.start_soon(self._read_events, session)
                        await self._check_registration(session)
                        self._set_connected(True)
                        delay = BACKOFF_INITIAL
                        if not started:
                            started = True
                            task_status.started()
                        while True:
                            await anyio.sleep(self.registration_check_seconds)
                            await self._check_registration(session)
                finally:
                    await session.aclose()
            except Exception as exc:
                cause = leaf_exception(exc)
                self._set_connected(False, f"ARI at {self.url}: {_describe(cause)}")
                # Events missed meanwhile never come: the running flows end, their calls
                # are hung up (now, or on reconnect if ARI cannot be asked now).
                for running in self._flows.values():
                    running.lose_events()
                if isinstance(cause, AriRegistrationLost):
                    metrics.telephony_registration_lost(self.name)
                    log.warning("ARI application no longer registered; reconnecting",
                                url=self.url, app=self.app, error=str(cause),
                                retry_in=delay)  # fmt: skip
                else:
                    log.warning("ARI unavailable; retrying", url=self.url,
                                error=_describe(cause), retry_in=delay,
                                exc_info=not _expected(cause))  # fmt: skip
            if not started:
                started = True
                task_status.started()
            await anyio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _read_events(self, session: AriWebSocket) -> None:
        while True:
            self._awaiting_message = True
            try:
                message = await session.receive_text()
            finally:
                self._awaiting_message = False
            await self._handle(message)

    async def _check_registration(self, session: AriWebSocket) -> None:
        """Send the application a user event; raise ``AriRegistrationLost`` unless it comes
        back on the websocket within ``registration_check_timeout`` (and longer while the
        reader is behind: the engine's buffer full, say, holds it). An answer that is not
        Asterisk's (ARI unreachable, an error other than 404) tells nothing: no check."""
        name = f"dialerd-check-{next(self._checks)}"
        arrived = anyio.Event()
        self._check = (name, arrived)
        try:
            try:
                response = await self._raw(
                    "POST", f"/events/user/{name}", params={"application": self.app}
                )
            except AriUnavailable as exc:
                log.info("ARI registration not checked", app=self.app, error=str(exc))
                return
            if response.is_error and response.status_code != 404:
                log.info("ARI registration not checked", app=self.app,
                         error=_http_error(response))  # fmt: skip
                return
            # A 404 (no such application) waits as well: the reader hands on what it
            # read first, and is stopped only while it waits for the next message.
            if await self._came_back(session, arrived):
                return
        finally:
            self._check = None
        if response.status_code == 404:
            raise AriRegistrationLost(
                f"application {self.app!r} is not registered in Asterisk ({_http_error(response)})"
            )
        raise AriRegistrationLost(
            f"application {self.app!r}: its events no longer reach this websocket "
            f"(a user event sent to it did not come back in "
            f"{self.registration_check_timeout:g} s)"
        )

    async def _came_back(self, session: AriWebSocket, arrived: anyio.Event) -> bool:
        """Whether the check's user event came: waited for ``registration_check_timeout``,
        and on while the reader has not read all it received (the event is only late)."""
        while True:
            with anyio.move_on_after(self.registration_check_timeout):
                await arrived.wait()
                return True
            if self._awaiting_message and session.caught_up():
                return False

    def _set_connected(self, connected: bool, reason: str | None = None) -> None:
        if connected and not self._connected:
            log.info("ARI connected", url=self.url, app=self.app, following=len(self._calls))
        self._connected = connected
        self._reason = None if connected else reason
        metrics.telephony_connected(self.name, up=connected)

    async def _subscribe(self) -> None:
        """On each connect: the application's events narrowed to the types dialerd reads,
        and its subscription to the trunk's endpoint (the events of the calls placed
        straight into the dialplan). Either refused: the calls go through Stasis."""
        self._direct = False
        # Asterisk 13.26 and later; an older one sends every type (read and ignored).
        filtered = await self._raw(
            "PUT",
            f"/applications/{self.app}/eventFilter",
            json={"allowed": [{"type": name} for name in EVENT_TYPES]},
        )
        if filtered.is_error:
            log.info("ARI event filter not set", error=_http_error(filtered))
        if self._trunk is None:
            return
        # Once only: Asterisk counts subscriptions, and one DELETE at the stop must end it.
        application = await self._raw("GET", f"/applications/{self.app}")
        if application.is_success and self._trunk in _endpoint_ids(application):
            self._direct = True
            return
        response = await self._raw(
            "POST",
            f"/applications/{self.app}/subscription",
            params={"eventSource": f"endpoint:{self._trunk}"},
        )
        if response.is_error:
            log.warning("ARI endpoint not subscribed; calls go through the application",
                        endpoint=self._trunk, error=_http_error(response))  # fmt: skip
            return
        self._direct = True

    async def _unsubscribe(self, http: AriHttp) -> None:
        """At the stop: the application's endpoint subscription ends. Left in place, it
        would have Asterisk build every event of the trunk for an application no one
        listens to (and log that it missed it) until dialerd comes back."""
        if self._trunk is None:
            return
        try:
            with anyio.fail_after(CLEANUP_SECONDS):
                await http.request(
                    "DELETE",
                    f"/applications/{self.app}/subscription",
                    params={"eventSource": f"endpoint:{self._trunk}"},
                )
        except (AriHttpError, TimeoutError) as exc:
            log.info("ARI endpoint subscription left", endpoint=self._trunk, error=str(exc))

    async def _reconcile(self) -> None:
        """After (re)connecting: calls gone while no one listened are ``lost``; live ones
        are followed, answered ones that were not handed on are handed on now."""
        live = {channel.id: channel for channel in await self._list_channels()}
        for path in list(self._to_delete):
            self._to_delete.discard(path)
            await self.delete_soon(path)
        for campaigncall_id in list(self._to_hang_up):
            self._to_hang_up.discard(campaigncall_id)
            if campaigncall_id in live:
                self._end_flow_call(campaigncall_id)
        for campaigncall_id, call in list(self._calls.items()):
            channel = live.get(campaigncall_id)
            if channel is None:
                log.warning("call vanished while ARI was away", campaigncall_id=campaigncall_id)
                await self._apply(call_state.vanished(call))
            elif channel.state == "Up":
                await self._apply(call_state.answered_elsewhere(call))
        for channel in live.values():
            if _CAMPAIGNCALL_ID.fullmatch(channel.id) and channel.id not in self._calls:
                await self._adopt(channel)

    async def _adopt(self, channel: Channel) -> None:
        """Follow a live call this process did not place: its past is unknown."""
        campaigncall_id = channel.id
        if campaigncall_id in self._adopting:
            return
        self._adopting.add(campaigncall_id)
        try:
            # Ours only if our application placed it under this id: on a shared Asterisk
            # another application's channel may be named with a UUID too.
            app = await self._variable(campaigncall_id, _APP_VARIABLE)
            placed_id = await self._variable(campaigncall_id, _ID_VARIABLE)
            if app != self.app or placed_id != campaigncall_id:
                log.info("live channel not ours; left alone", channel=campaigncall_id)
                return
            outcome = await self._variable(campaigncall_id, call_state.OUTCOME_VARIABLE)
            queue = await self._variable(campaigncall_id, _QUEUE_VARIABLE)
            ran_actions = await self._variable(campaigncall_id, _FLOW_VARIABLE) == "1"
            direct = await self._variable(campaigncall_id, _DIRECT_VARIABLE) == "1"
            await self._request(
                "POST",
                f"/applications/{self.app}/subscription",
                params={"eventSource": f"channel:{campaigncall_id}"},
            )
        except AriUnavailable:
            raise
        except OriginationError as exc:  # gone meanwhile, or not ours to follow
            log.info("live call not followed", campaigncall_id=campaigncall_id, error=str(exc))
            return
        finally:
            self._adopting.discard(campaigncall_id)
        if campaigncall_id in self._calls:
            return
        call = call_state.adopted(
            campaigncall_id,
            channel_state=channel.state,
            outcome=outcome,
            to_queue=bool(queue),
            direct=direct,
        )
        self._calls[campaigncall_id] = call
        self._remember(campaigncall_id)
        log.info("following a live call placed before", campaigncall_id=campaigncall_id,
                 state=channel.state)  # fmt: skip
        if call.phase is Phase.ANSWERED:
            await self._send(Answered(campaigncall_id))
            dialplan = channel.dialplan
            if dialplan is not None and dialplan.app_name == "Stasis":
                if ran_actions:
                    # Its actions ran in a process that is gone: where they were is lost.
                    log.warning("call's actions cannot resume; hanging up",
                                campaigncall_id=campaigncall_id)  # fmt: skip
                    self._end_flow_call(campaigncall_id)
                else:
                    self._hand_on(call)

    # -- events ------------------------------------------------------------------------
    async def _handle(self, message: str) -> None:
        if self._direct and self._repeated(message):
            return
        try:
            event = decode_event(message)
        except AriEventError as exc:
            log.warning("ARI event not understood; ignored", error=str(exc),
                        message=message[:300])  # fmt: skip
            return
        if event is None:
            return
        if isinstance(event, ChannelUserevent):
            check = self._check
            if check is not None and event.eventname == check[0]:
                check[1].set()
            return
        for running in list(self._flows.values()):
            if running.is_about(event):
                running.deliver(event)
        for campaigncall_id in _channels_named(event):
            call = self._calls.get(campaigncall_id)
            if call is not None:
                await self._apply(call_state.step(call, event))

    def _repeated(self, message: str) -> bool:
        """Whether the same event came just before (see ``RECENT_MESSAGES``)."""
        if message in self._recent_set:
            return True
        self._recent_set.add(message)
        self._recent.append(message)
        if len(self._recent) > RECENT_MESSAGES:
            self._recent_set.discard(self._recent.popleft())
        return False

    async def _apply(self, result: Step) -> None:
        call = result.call
        before = self._calls.get(call.id)
        if call.phase is Phase.ENDED:
            self._calls.pop(call.id, None)
            self._answered_at.pop(call.id, None)
            self._plans.pop(call.id, None)
        else:
            self._calls[call.id] = call
        if (
            before is not None
            and before.agent is call_state.Agent.NONE
            and call.agent is call_state.Agent.CONNECTED
            and call.id in self._answered_at
        ):
            wait = time.monotonic() - self._answered_at[call.id]
            metrics.answer_to_agent(wait)
            connected: AgentConnected | None = AgentConnected(call.id, wait)
        else:
            connected = None
        for event in result.events:
            if isinstance(event, Answered):
                self._answered_at[call.id] = time.monotonic()
            if isinstance(event, Ended):
                # The flow may still be running (its own hangup ended the call): the
                # recording it started is the call's all the same.
                running = self._flows.get(call.id)
                recording = self._recordings.pop(call.id, "") or (
                    running.recording if running is not None else ""
                )
                if recording:
                    event = msgspec.structs.replace(event, recording=recording)
            await self._send(event)
        if connected is not None:
            # After the step's own events: the engine sees the answer before the agent.
            await self._send(connected)
        if result.continue_in_dialplan:
            plan = self._plans.pop(call.id, None)
            if plan is None:
                self._hand_on(call)
            else:
                self._start_flow(call, plan)

    async def _send(self, event: TelephonyEvent) -> None:
        """To the engine; without yielding while its buffer has room, so the events of
        one read of the stream reach it together (an answer and an end in one burst are
        one store write there). A full buffer waits (nothing is dropped)."""
        events = self._events
        if isinstance(events, MemoryObjectSendStream):
            try:
                events.send_nowait(event)
                return
            except anyio.WouldBlock:
                pass
        if events is not None:
            await events.send(event)

    def _hand_on(self, call: CallState) -> None:
        if self._task_group is not None:
            self._task_group.start_soon(self._continue, call, name=f"ari continue {call.id}")

    def _start_flow(self, call: CallState, plan: CallPlan) -> None:
        if self._task_group is None or call.id in self._flows:
            return
        running = CallFlow(self, call.id, plan, tts=self.tts, services=self.services)
        self._flows[call.id] = running
        self._task_group.start_soon(self._run_flow, running, name=f"ari flow {call.id}")

    async def _run_flow(self, running: CallFlow) -> None:
        """Run the call's actions; hang it up after, unless it went to a queue or is gone."""
        call_id = running.call_id
        result = FlowResult()
        try:
            result = await running.run()
        except AriUnavailable as exc:
            log.error("actions stopped: ARI unavailable", campaigncall_id=call_id,
                      error=str(exc))  # fmt: skip
        except Exception:
            log.exception("actions stopped by an error", campaigncall_id=call_id)
        finally:
            self._flows.pop(call_id, None)
            running.close()
        if result.recording and call_id in self._calls:  # else its end carried it
            self._recordings[call_id] = result.recording
        if result.queued or result.callee_hung_up:
            return
        call = self._calls.get(call_id)
        if call is not None and result.machine:
            self._calls[call_id] = msgspec.structs.replace(call, outcome="machine")
        await self._hang_up_quietly(call_id)

    def _end_flow_call(self, call_id: str) -> None:
        if self._task_group is not None:
            self._task_group.start_soon(self._hang_up_quietly, call_id, name=f"ari end {call_id}")

    async def _hang_up_quietly(self, call_id: str) -> None:
        try:
            await self._drop(call_id)
        except AriUnavailable as exc:
            log.warning("call to hang up on reconnect", campaigncall_id=call_id, error=str(exc))
            self._to_hang_up.add(call_id)
        except OriginationError as exc:
            log.error("call could not be hung up", campaigncall_id=call_id, error=str(exc))

    # -- what a flow asks of ARI ----------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        missing_ok: bool = False,
    ) -> AriResponse:
        """One ARI request; raise ``OriginationError`` (``AriUnavailable`` if unreachable)."""
        return await self._request(method, path, params=params, missing_ok=missing_ok)

    async def hangup_channel(self, call_id: str, reason: str = "") -> None:
        await self._drop(call_id, reason)

    async def delete_soon(self, path: str) -> None:
        """DELETE a connect leg or bridge; when ARI cannot be asked, on reconnect. Shielded
        (bounded): a flow's clean-up still runs when the adapter stops under it, so no leg
        is left up."""
        try:
            with anyio.CancelScope(shield=True), anyio.fail_after(CLEANUP_SECONDS):
                await self._request("DELETE", path, missing_ok=True)
        except (AriUnavailable, TimeoutError):
            self._to_delete.add(path)
        except OriginationError as exc:
            log.warning("ARI resource not deleted", path=path, error=str(exc))

    async def set_variable(self, call_id: str, name: str, value: str) -> None:
        await self._request(
            "POST", f"/channels/{call_id}/variable", params={"variable": name, "value": value}
        )

    async def continue_in(self, call_id: str, context: str) -> None:
        await self._request(
            "POST",
            f"/channels/{call_id}/continue",
            params={"context": context, "extension": "s", "priority": "1"},
        )

    def dial_string(self, number: str) -> str:
        """The endpoint that dials ``number``; raise ``OriginationError`` if it cannot."""
        if not _NUMBER.fullmatch(number):
            raise OriginationError(f"destination {number!r} cannot be dialled through Asterisk")
        return self.endpoint.replace("{number}", number)

    async def _continue(self, call: CallState) -> None:
        """Send the answered channel to the dialplan; a channel left in Stasis would be a
        silent call, so one that cannot be handed on is hung up."""
        context = self.queue_context if call.to_queue else self.agentless_context
        try:
            await self._request(
                "POST",
                f"/channels/{call.id}/continue",
                params={"context": context, "extension": "s", "priority": "1"},
                missing_ok=True,
            )
        except OriginationError as exc:
            log.error("answered call not handed to the dialplan; hanging up",
                      campaigncall_id=call.id, context=context, error=str(exc))  # fmt: skip
            try:
                await self._drop(call.id)
            except OriginationError as drop_error:
                log.error("answered call could not be hung up", campaigncall_id=call.id,
                          error=str(drop_error))  # fmt: skip

    # -- requests ------------------------------------------------------------------------
    async def _drop(self, campaigncall_id: str, reason: str = "") -> None:
        # Marked first: the channel's end may be reported before the request returns.
        call = self._calls.get(campaigncall_id)
        if call is not None:
            self._calls[campaigncall_id] = call_state.end_requested(call)
        params = {"reason": reason} if reason else None
        try:
            await self._request(
                "DELETE", f"/channels/{campaigncall_id}", params=params, missing_ok=True
            )
        except AriUnavailable:
            # Not asked after all: an end seen later is not ours.
            call = self._calls.get(campaigncall_id)
            if call is not None:
                self._calls[campaigncall_id] = msgspec.structs.replace(call, ended_by_us=False)
            raise

    async def _after_uncertain_originate(self, campaigncall_id: str) -> None:
        """The originate request failed in transit: it may have placed the call. Drop it
        if it did (the engine counts the attempt failed); forget it if it did not."""
        try:
            response = await self._raw("DELETE", f"/channels/{campaigncall_id}")
        except AriUnavailable:
            return  # still uncertain: the next reconcile tells
        if response.status_code == 404:
            self._calls.pop(campaigncall_id, None)

    async def _list_channels(self) -> list[Channel]:
        response = await self._request("GET", "/channels")
        try:
            return decode_channels(response.content)
        except AriEventError as exc:
            raise AriUnavailable(str(exc)) from None

    async def _variable(self, campaigncall_id: str, name: str) -> str:
        response = await self._request(
            "GET", f"/channels/{campaigncall_id}/variable", params={"variable": name},
            missing_ok=True,
        )  # fmt: skip
        if response.status_code == 404:
            return ""
        try:
            return msgspec.json.decode(response.content, type=_Variable).value
        except msgspec.DecodeError:
            return ""

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        missing_ok: bool = False,
    ) -> AriResponse:
        response = await self._raw(method, path, params=params)
        if response.is_error and not (missing_ok and response.status_code == 404):
            raise OriginationError(f"ARI {method} {path}: {_http_error(response)}")
        return response

    async def _raw(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: object = None,
    ) -> AriResponse:
        if self._http is None:
            raise AriUnavailable("ARI backend is not running")
        try:
            return await self._http.request(method, path, params=params, json=json)
        except AriHttpError as exc:
            raise AriUnavailable(f"ARI at {self.url}: {_describe(exc)}") from None

    # -- building an origination -----------------------------------------------------
    def _originate_params(
        self, origination: Origination, queue: str, *, direct: bool
    ) -> dict[str, str]:
        params = {
            "endpoint": self.endpoint.replace("{number}", origination.destination.target),
            "channelId": origination.campaigncall_id,
            # 0 = no limit of ours: Asterisk's -1, the network ends the ringing.
            "timeout": str(math.ceil(origination.dial_timeout_ms / 1000) or -1),
        }
        if direct:
            # Answered, the channel runs the dialplan at once (Asterisk ignores these
            # when an app is given: one or the other).
            params["context"] = self.queue_context if queue else self.agentless_context
            params["extension"] = "s"
            params["priority"] = "1"
        else:
            params["app"] = self.app
        caller_id = _caller_id(origination.source)
        if caller_id:
            params["callerId"] = caller_id
        return params

    def _variables(
        self, origination: Origination, queue: str, *, flow: bool, direct: bool
    ) -> dict[str, str]:
        """The channel variables the dialplan reads; only those that apply (a variable
        not set reads as empty: each one set is an event Asterisk builds and sends). The
        actions themselves run in dialerd: they are not sent."""
        campaigncall_id = origination.campaigncall_id
        variables = {
            _ID_VARIABLE: campaigncall_id,
            _APP_VARIABLE: self.app,
            "PJSIP_HEADER(add,X-Dialerd-Id)": campaigncall_id,  # a function: no event
        }
        if queue:
            variables[_QUEUE_VARIABLE] = queue
            variables["DIALERD_QUEUE_TIMEOUT"] = str(self.queue_timeout)
        # The [telephony.asterisk] amd switch is for campaigns without actions; a
        # campaign with actions says where to detect with an amd action.
        if self.amd and not flow:
            variables["DIALERD_AMD"] = "1"
        if flow:
            variables[_FLOW_VARIABLE] = "1"
        if direct:
            variables[_DIRECT_VARIABLE] = "1"
        return variables

    def _remember(self, campaigncall_id: str) -> None:
        self._placed[campaigncall_id] = None
        while len(self._placed) > PLACED_MEMORY:
            self._placed.popitem(last=False)


class _Variable(msgspec.Struct, frozen=True):
    value: str = ""


def _channels_named(event: AriEvent) -> list[str]:
    """The channel ids an event is about (a Dial names the dialled and the dialling one)."""
    if isinstance(event, Dial):
        ids = [event.peer.id]
        if event.caller is not None and event.caller.id != event.peer.id:
            ids.append(event.caller.id)
        return ids
    if isinstance(event, ChannelVarset):
        return [event.channel.id] if event.channel is not None else []
    if isinstance(event, PlaybackFinished | RecordingFinished | RecordingFailed | ChannelUserevent):
        return []
    return [event.channel.id]


def _endpoint_ids(response: AriResponse) -> list[str]:
    """The endpoints an application is subscribed to (``GET /applications/{app}``)."""
    try:
        body = response.json()
    except ValueError:
        return []
    ids = body.get("endpoint_ids") if isinstance(body, dict) else None
    return [str(one) for one in ids] if isinstance(ids, list) else []


def trunk_endpoint(endpoint: str) -> str | None:
    """The Asterisk endpoint (``PJSIP/<name>``) every call of the dial string goes out
    on, or None if the string does not name one the same for every number."""
    found = _PJSIP_ENDPOINT.fullmatch(endpoint)
    if found is None:
        return None
    return f"PJSIP/{found['at'] or found['name']}"


def _caller_id(source: Address) -> str:
    """``"Name" <number>`` for Asterisk's callerId, from the origination's source."""
    number = re.sub(r"[^0-9A-Za-z+*#]", "", source.target)
    name = re.sub(r'["<>\r\n\\]', "", source.target_name).strip()
    if name and number:
        return f'"{name}" <{number}>'
    return number or (f'"{name}"' if name else "")


def _http_error(response: AriResponse) -> str:
    """``HTTP 400: <Asterisk's message>``: the status and what Asterisk said."""
    message = ""
    try:
        body: Any = response.json()
        if isinstance(body, dict):
            message = str(body.get("message") or body.get("error") or "")
    except ValueError:
        message = response.text[:200]
    return f"HTTP {response.status_code}: {message or response.reason_phrase}"


def _describe(exc: BaseException) -> str:
    """An exception as text, never with credentials (the ARI client does not show them)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _expected(exc: BaseException) -> bool:
    """Whether a lost connection is the network's or Asterisk's doing (no traceback)."""
    return isinstance(exc, AriHttpError | OSError | AriUnavailable)
