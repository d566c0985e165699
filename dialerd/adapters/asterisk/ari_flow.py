"""A campaign's actions on an answered call, executed over ARI.

One ``CallFlow`` per answered call whose campaign has actions: it runs the interpreter
(``dialerd.core.flow``) and does each ``Execute`` on the channel, which stays in
dialerd's Stasis application meanwhile. Prompts are played with ``/play`` (a ``talk`` is
rendered by the TTS port first and fetched by Asterisk over HTTP from dialerd's media
server), digits come as ``ChannelDtmfReceived`` events, ``amd`` and ``queue_join``
continue into the dialplan (``AMD()`` comes back into Stasis with its result;
``Queue()`` keeps the call), ``connect`` originates a second channel and bridges the
two, ``recording_*`` records the channel in Asterisk's recording directory.

The flow ends when the interpreter says so (the call is then hung up unless it went to a
queue) or when the callee hangs up (``CalleeHungUp``).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import anyio
import msgspec
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from dialerd import metrics
from dialerd.adapters.asterisk.ari_events import (
    AriEvent,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    PlaybackFinished,
    RecordingFailed,
    RecordingFinished,
    StasisStart,
    target_channel,
)
from dialerd.adapters.tts import Tts, TtsError
from dialerd.core import flow
from dialerd.core.actions import (
    AmdOption,
    ConnectOption,
    DigitsReceiveOption,
    DigitsSendOption,
    DncAddOption,
    EmailSendOption,
    HangupOption,
    PlayOption,
    Program,
    RecordingStartOption,
    SleepOption,
    Step,
    TalkOption,
    WebhookSendOption,
)
from dialerd.ports import ActionFailed, ActionServices, OriginationError

if TYPE_CHECKING:
    from dialerd.adapters.asterisk.ari import AriTelephony

log = structlog.get_logger("dialerd.ari.flow")

# How a connect leg's channel id is made from the call's: never a campaigncall id.
CONNECT_SUFFIX: Final = "-connect-"
# Longest a connect leg may ring before the step fails.
CONNECT_RING_SECONDS: Final = 30
# Longest the dialplan's AMD() may take before the step counts as notsure.
AMD_TIMEOUT: Final = 30.0
_AMD_RESULTS: Final = {"HUMAN": "human", "MACHINE": "machine"}


class CallPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What an answered call runs, kept from its origination."""

    campaign_id: str
    customer_id: str
    number: str
    queue: str
    program: Program
    variables: dict[str, str]


class _HungUp(Exception):
    """The call's channel is being hung up or is gone."""


class _Lost(Exception):
    """The event stream was lost: what happened on the call meanwhile is unknown."""


class FlowResult(msgspec.Struct, frozen=True):
    """How the flow left the call: ``queued`` (handed to Queue()), ``hung_up`` by the
    callee, else ended by dialerd (the shell hangs it up), with ``machine`` for AMD."""

    queued: bool = False
    callee_hung_up: bool = False
    machine: bool = False
    recording: str = ""


class CallFlow:
    """The actions of one answered call."""

    def __init__(
        self,
        ari: AriTelephony,
        call_id: str,
        plan: CallPlan,
        *,
        tts: Tts | None,
        services: ActionServices | None,
    ) -> None:
        self.ari = ari
        self.call_id = call_id
        self.plan = plan
        self.tts = tts
        self.services = services
        self._send: MemoryObjectSendStream[AriEvent]
        self._receive: MemoryObjectReceiveStream[AriEvent]
        self._send, self._receive = anyio.create_memory_object_stream[AriEvent](1000)
        self._digits = ""  # pressed while no digits_receive ran: kept for the next one
        self._hung_up = False
        self._lost = False
        # Prompts of async talks still playing (the flow went on meanwhile).
        self._async_playbacks: set[str] = set()
        self.recording = ""
        self._recording_name = ""
        self.connect_legs: set[str] = set()

    # -- events from the shell -------------------------------------------------------
    def deliver(self, event: AriEvent) -> None:
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            log.warning("flow event dropped (queue full)", campaigncall_id=self.call_id)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    def lose_events(self) -> None:
        """ARI's event stream broke: the step waiting for an event cannot know it came."""
        self._lost = True
        self._send.close()

    def is_about(self, event: AriEvent) -> bool:
        """Whether the event concerns this flow (its channel, prompts, recording, legs)."""
        if isinstance(event, PlaybackFinished):
            return target_channel(event.playback.target_uri) == self.call_id
        if isinstance(event, RecordingFinished | RecordingFailed):
            return target_channel(event.recording.target_uri) == self.call_id
        channel = getattr(event, "channel", None)
        ident = getattr(channel, "id", None)
        return ident == self.call_id or ident in self.connect_legs

    async def _next(self, deadline: float | None = None) -> AriEvent | None:
        """The next event, None at the deadline; raise ``_HungUp`` when the call ends."""
        if self._hung_up:
            raise _HungUp
        timeout = math.inf if deadline is None else max(0.0, deadline - anyio.current_time())
        with anyio.move_on_after(timeout):
            try:
                event = await self._receive.receive()
            except anyio.EndOfStream:
                raise _Lost from None
            if isinstance(event, ChannelDtmfReceived) and event.channel.id == self.call_id:
                self._digits += event.digit
            if isinstance(event, PlaybackFinished):
                self._async_playbacks.discard(event.playback.id)
            if isinstance(event, ChannelHangupRequest | ChannelDestroyed) and (
                event.channel.id == self.call_id
            ):
                self._hung_up = True
                raise _HungUp
            return event
        return None

    async def _wait(
        self, predicate: Callable[[AriEvent], bool], seconds: float | None = None
    ) -> AriEvent | None:
        deadline = None if seconds is None else anyio.current_time() + seconds
        while True:
            event = await self._next(deadline)
            if event is None or predicate(event):
                return event

    # -- the flow ------------------------------------------------------------------------
    async def run(self) -> FlowResult:
        program = self.plan.program
        state, instruction = flow.start(program, self.plan.variables)
        while isinstance(instruction, flow.Execute):
            self._count_chosen(instruction.chosen)
            step = instruction.step
            try:
                outcome = await self._execute(step, instruction.variables)
            except _HungUp:
                outcome = flow.CalleeHungUp()
            except _Lost:
                outcome = flow.StepFailed("the ARI event stream was lost")
            except OriginationError as exc:  # an ARI request refused or failed
                outcome = flow.StepFailed(str(exc))
            if isinstance(outcome, _Queued):
                metrics.action_ran(self.plan.campaign_id, step.type, "done")
                return FlowResult(queued=True, recording=self.recording)
            metrics.action_ran(self.plan.campaign_id, step.type, flow.outcome_label(outcome))
            if isinstance(outcome, flow.StepFailed):
                log.warning("action failed", campaigncall_id=self.call_id, action=step.index,
                            type=step.type, reason=outcome.reason)  # fmt: skip
            state, instruction = flow.advance(program, state, outcome)
        self._count_chosen(instruction.chosen)
        log.info("flow ended", campaigncall_id=self.call_id, end=str(instruction.end),
                 detail=instruction.detail, steps=state.steps_taken)  # fmt: skip
        if instruction.end is flow.FlowEnd.COMPLETED and self.plan.queue:
            # Actions that run off their end join the campaign's queue (VoIPbin appends a
            # queue_join to a campaign's actions when it has a queue).
            queued = await self._queue_join()
            if isinstance(queued, _Queued):
                metrics.action_ran(self.plan.campaign_id, "queue_join", "done")
                return FlowResult(queued=True, recording=self.recording)
        return FlowResult(
            callee_hung_up=instruction.end is flow.FlowEnd.CALLEE_HANGUP or self._hung_up,
            machine=instruction.end is flow.FlowEnd.MACHINE,
            recording=self.recording,
        )

    def _count_chosen(self, chosen: tuple[str, ...]) -> None:
        for value in chosen:
            metrics.digits_chosen(self.plan.campaign_id, value)

    async def _execute(self, step: Step, variables: Mapping[str, str]) -> flow.Outcome | _Queued:
        option = step.option
        match step.type:
            case "answer":
                return flow.StepDone()  # an originated channel is in Stasis once answered
            case "talk":
                assert isinstance(option, TalkOption)
                return await self._talk(option)
            case "play":
                assert isinstance(option, PlayOption)
                # One playback per URL: ARI reads a list of media as comma-separated
                # (repeated parameters: only the last counts).
                for url in option.stream_urls:
                    played = await self._play(_media(url))
                    if not isinstance(played, flow.StepDone):
                        return played
                return flow.StepDone()
            case "beep":
                return await self._play("sound:beep")
            case "sleep":
                assert isinstance(option, SleepOption)
                await self._wait(lambda _event: False, option.duration / 1000)
                return flow.StepDone()
            case "digits_send":
                assert isinstance(option, DigitsSendOption)
                return await self._digits_send(option)
            case "digits_receive":
                assert isinstance(option, DigitsReceiveOption)
                return await self._digits_receive(option)
            case "amd":
                assert isinstance(option, AmdOption)
                return await self._amd(option)
            case "queue_join":
                return await self._queue_join()
            case "connect":
                assert isinstance(option, ConnectOption)
                return await self._connect(option)
            case "recording_start":
                assert isinstance(option, RecordingStartOption)
                return await self._recording_start(option)
            case "recording_stop":
                return await self._recording_stop()
            case "hangup":
                assert isinstance(option, HangupOption)
                await self.ari.hangup_channel(self.call_id, option.reason)
                return flow.StepDone()
            case "webhook_send":
                assert isinstance(option, WebhookSendOption)
                if self.services is None:
                    return flow.StepFailed("no action services on this host")
                try:
                    status = await self.services.webhook_send(option, variables)
                except ActionFailed as exc:
                    return flow.StepFailed(str(exc))
                return flow.HttpAnswered(status)
            case "email_send":
                assert isinstance(option, EmailSendOption)
                if self.services is None:
                    return flow.StepFailed("no action services on this host")
                try:
                    await self.services.email_send(option, variables)
                except ActionFailed as exc:
                    return flow.StepFailed(str(exc))
                return flow.StepDone()
            case "dnc_add":
                assert isinstance(option, DncAddOption)
                return await self._dnc_add(option)
            case _:
                return flow.StepFailed(f"{step.type} cannot run on a call through Asterisk")

    # -- prompts ------------------------------------------------------------------------
    async def _talk(self, option: TalkOption) -> flow.Outcome:
        if self.tts is None:
            metrics.prompt_failed(self.plan.campaign_id)
            return flow.StepFailed("no text to speech configured")
        try:
            path = await self.tts.render(option.text, option.language, option.gender)
        except TtsError as exc:
            metrics.prompt_failed(self.plan.campaign_id)
            return flow.StepFailed(f"text to speech: {exc}")
        media = f"sound:{self.ari.media_url}/tts/{path.name}"
        if option.async_:
            # The flow goes on while it plays (a digits_receive next: keys cut it short).
            playback_id = str(uuid.uuid4())
            await self.ari.request(
                "POST", f"/channels/{self.call_id}/play/{playback_id}", params={"media": media}
            )
            self._async_playbacks.add(playback_id)
            return flow.StepDone()
        return await self._play(media, stop_on_digit=option.digits_handle == "next")

    async def _stop_async_prompts(self) -> None:
        for playback_id in list(self._async_playbacks):
            self._async_playbacks.discard(playback_id)
            await self.ari.request("DELETE", f"/playbacks/{playback_id}", missing_ok=True)

    async def _play(self, media: str, *, stop_on_digit: bool = False) -> flow.Outcome:
        playback_id = str(uuid.uuid4())
        before = len(self._digits)
        await self.ari.request(
            "POST", f"/channels/{self.call_id}/play/{playback_id}", params={"media": media}
        )

        def finished(event: AriEvent) -> bool:
            if isinstance(event, PlaybackFinished) and event.playback.id == playback_id:
                return True
            return stop_on_digit and len(self._digits) > before

        event = await self._wait(finished)
        if isinstance(event, PlaybackFinished):
            if event.playback.state == "failed":
                metrics.prompt_failed(self.plan.campaign_id)
                return flow.StepFailed(f"Asterisk could not play {media}")
            return flow.StepDone()
        # A digit stopped the prompt: it goes to the flow now, not to a later receive.
        await self.ari.request("DELETE", f"/playbacks/{playback_id}", missing_ok=True)
        digits, self._digits = self._digits[before:], self._digits[:before]
        return flow.DigitsReceived(digits)

    # -- digits -------------------------------------------------------------------------
    async def _digits_send(self, option: DigitsSendOption) -> flow.Outcome:
        await self.ari.request(
            "POST",
            f"/channels/{self.call_id}/dtmf",
            params={
                "dtmf": option.digits,
                "duration": str(option.duration),
                "between": str(option.interval),
            },
        )
        # ARI queues the keys: the step lasts as long as they take to send.
        await self._wait(
            lambda _event: False, len(option.digits) * (option.duration + option.interval) / 1000
        )
        return flow.StepDone()

    async def _digits_receive(self, option: DigitsReceiveOption) -> flow.Outcome:
        """Digits until ``length`` of them, a ``key`` (not kept), or ``duration`` ms."""
        deadline = anyio.current_time() + option.duration / 1000
        while True:
            if self._digits and self._async_playbacks:
                await self._stop_async_prompts()  # a key cuts an async prompt short
            digits = self._take_digits(option)
            if digits is not None:
                return flow.DigitsReceived(digits)
            if await self._next(deadline) is None:
                digits, self._digits = self._digits, ""
                return flow.DigitsReceived(digits)

    def _take_digits(self, option: DigitsReceiveOption) -> str | None:
        for at, digit in enumerate(self._digits):
            if option.key and digit in option.key:
                taken, self._digits = self._digits[:at], self._digits[at + 1 :]
                return taken
            if option.length and at + 1 >= option.length:
                taken, self._digits = self._digits[: at + 1], self._digits[at + 1 :]
                return taken
        return None

    # -- the dialplan: AMD, the queue ---------------------------------------------------------
    async def _amd(self, option: AmdOption) -> flow.Outcome:
        wait = "1" if option.machine_handle == "continue" else "0"
        await self._stop_async_prompts()
        await self.ari.set_variable(self.call_id, "DIALERD_AMD_WAIT", wait)
        await self.ari.continue_in(self.call_id, self.ari.amd_context)

        def back(event: AriEvent) -> bool:
            return (
                isinstance(event, StasisStart)
                and event.channel.id == self.call_id
                and bool(event.args)
                and event.args[0] == "amd"
            )

        event = await self._wait(back, AMD_TIMEOUT)
        if not isinstance(event, StasisStart):
            return flow.AmdDetected("notsure")
        status = event.args[1] if len(event.args) > 1 else ""
        return flow.AmdDetected(_AMD_RESULTS.get(status.upper(), "notsure"))

    async def _queue_join(self) -> flow.Outcome | _Queued:
        if not self.plan.queue:
            return flow.StepFailed("the campaign has no queue")
        await self._stop_async_prompts()
        await self.ari.continue_in(self.call_id, self.ari.queue_context)
        return _Queued()

    # -- connect --------------------------------------------------------------------------
    async def _connect(self, option: ConnectOption) -> flow.Outcome:
        """Dial the destinations one after the other; bridge the first that answers and
        stay bridged until one side hangs up (the callee: the flow ends)."""
        for number, destination in enumerate(option.destinations):
            leg = f"{self.call_id}{CONNECT_SUFFIX}{number}"
            self.connect_legs.add(leg)
            try:
                try:
                    answered = await self._dial_leg(leg, destination.target, option)
                except OriginationError as exc:
                    log.warning("connect leg not placed", campaigncall_id=self.call_id,
                                error=str(exc))  # fmt: skip
                    answered = False
                if answered:
                    return await self._bridged(leg)
            finally:
                # Whatever happened (the leg hung up, the callee, ARI lost): no leg stays.
                self.connect_legs.discard(leg)
                await self.ari.delete_soon(f"/channels/{leg}")
        return flow.StepFailed("no destination answered")

    async def _dial_leg(self, leg: str, number: str, option: ConnectOption) -> bool:
        params = {
            "endpoint": self.ari.dial_string(number),
            "app": self.ari.app,
            "appArgs": "connect",
            "channelId": leg,
            "timeout": str(CONNECT_RING_SECONDS),
        }
        if option.source.target:
            params["callerId"] = option.source.target
        await self.ari.request("POST", "/channels", params=params)

        def settled(event: AriEvent) -> bool:
            return isinstance(event, StasisStart | ChannelDestroyed) and event.channel.id == leg

        event = await self._wait(settled, CONNECT_RING_SECONDS + 5)
        return isinstance(event, StasisStart)

    async def _bridged(self, leg: str) -> flow.Outcome:
        bridge = f"{self.call_id}-bridge"
        await self.ari.request("POST", f"/bridges/{bridge}", params={"type": "mixing"})
        try:
            await self.ari.request(
                "POST", f"/bridges/{bridge}/addChannel", params={"channel": f"{self.call_id},{leg}"}
            )

            def leg_gone(event: AriEvent) -> bool:
                return (
                    isinstance(event, ChannelHangupRequest | ChannelDestroyed)
                    and event.channel.id == leg
                )

            await self._wait(leg_gone)
            return flow.StepDone()
        finally:
            await self.ari.delete_soon(f"/bridges/{bridge}")

    # -- recording --------------------------------------------------------------------------
    async def _recording_start(self, option: RecordingStartOption) -> flow.Outcome:
        name = f"{self.ari.recording_dir}/{self.plan.campaign_id}/{self.call_id}"
        terminate = {"": "none", "none": "none", "any": "any"}.get(
            option.end_of_key, option.end_of_key
        )
        await self.ari.request(
            "POST",
            f"/channels/{self.call_id}/record",
            params={
                "name": name,
                "format": option.format,
                "maxDurationSeconds": str(option.duration),
                "maxSilenceSeconds": str(option.end_of_silence),
                "ifExists": "overwrite",
                "beep": "true" if option.beep_start else "false",
                "terminateOn": terminate,
            },
        )
        self.recording = f"{name}.{option.format}"
        self._recording_name = name
        return flow.StepDone()

    async def _recording_stop(self) -> flow.Outcome:
        name = self._recording_name
        if not name:
            return flow.StepDone()
        # The name holds slashes (directories): one path segment, %2F-encoded.
        await self.ari.request(
            "POST", f"/recordings/live/{quote(name, safe='')}/stop", missing_ok=True
        )

        def done(event: AriEvent) -> bool:
            return isinstance(event, RecordingFinished | RecordingFailed) and (
                event.recording.name == name
            )

        await self._wait(done, 10.0)
        return flow.StepDone()

    # -- opt-out --------------------------------------------------------------------------
    async def _dnc_add(self, option: DncAddOption) -> flow.Outcome:
        if self.services is None:
            return flow.StepFailed("no action services on this host")
        detail = option.detail or (
            f"opt-out by the callee: campaign {self.plan.campaign_id}, campaigncall {self.call_id}"
        )
        try:
            await self.services.dnc_add(self.plan.customer_id, self.plan.number, detail)
        except ActionFailed as exc:
            return flow.StepFailed(str(exc))
        metrics.opt_out(self.plan.campaign_id)
        return flow.StepDone()


def _media(url: str) -> str:
    """A play URL as ARI media: ``sound:`` kept, ``http(s)://`` behind ``sound:`` (Asterisk
    fetches it through its media cache), a comma %-encoded (ARI splits media on commas)."""
    media = url if url.startswith("sound:") else f"sound:{url}"
    return media.replace(",", "%2C")


class _Queued(msgspec.Struct, frozen=True):
    """queue_join handed the call to Queue(): the flow is over for dialerd."""
