"""The ARI events dialerd reads, as typed structs, and their decoding.

Only the fields the call state machine needs are declared; Asterisk sends many more,
which are ignored. An event of another type decodes to ``None``; a malformed one raises
``AriEventError`` naming the event type and what was wrong, so the shell can log it and
carry on with the next event.
"""

from __future__ import annotations

from typing import Final

import msgspec


class AriEventError(Exception):
    """A backend event that could not be decoded; the text says which and why."""


class Dialplan(msgspec.Struct, frozen=True):
    context: str = ""
    exten: str = ""
    app_name: str = ""
    app_data: str = ""


class Channel(msgspec.Struct, frozen=True):
    """A channel snapshot; ``id`` is the campaigncall id for the calls dialerd placed."""

    id: str
    name: str = ""
    # Down, Rsrvd, OffHook, Dialing, Ring, Ringing, Up, Busy, Dialing Offhook, Pre-ring
    state: str = ""
    dialplan: Dialplan | None = None


class StasisStart(msgspec.Struct, frozen=True, tag=True):
    """The channel entered our application: for an originated channel, it was answered;
    ``args`` are the Stasis() arguments of a channel coming back from the dialplan."""

    channel: Channel
    application: str = ""
    args: list[str] = msgspec.field(default_factory=list)


class StasisEnd(msgspec.Struct, frozen=True, tag=True):
    channel: Channel


class ChannelStateChange(msgspec.Struct, frozen=True, tag=True):
    channel: Channel


class ChannelHangupRequest(msgspec.Struct, frozen=True, tag=True):
    channel: Channel
    cause: int = 0
    soft: bool = False


class ChannelDestroyed(msgspec.Struct, frozen=True, tag=True):
    """The channel is gone; ``cause`` is its Q.850 hangup cause."""

    channel: Channel
    cause: int = 0
    cause_txt: str = ""
    tech_cause: int = 0


class Dial(msgspec.Struct, frozen=True, tag=True):
    """A dial attempt: ``peer`` is the dialled channel, ``caller`` the one dialling (if any)."""

    peer: Channel
    dialstatus: str = ""
    caller: Channel | None = None


class ChannelVarset(msgspec.Struct, frozen=True, tag=True):
    """A channel variable was set (``channel`` is absent for a global variable)."""

    variable: str
    value: str = ""
    channel: Channel | None = None


class ChannelDtmfReceived(msgspec.Struct, frozen=True, tag=True):
    """The callee pressed a key (RFC 2833 / SIP INFO / inband, as the endpoint says)."""

    channel: Channel
    digit: str = ""
    duration_ms: int = 0


class Playback(msgspec.Struct, frozen=True):
    """A playback; ``target_uri`` is ``channel:<id>`` for a prompt played to a channel."""

    id: str
    target_uri: str = ""
    state: str = ""  # queued, playing, done, failed...


class PlaybackFinished(msgspec.Struct, frozen=True, tag=True):
    playback: Playback


class LiveRecording(msgspec.Struct, frozen=True):
    name: str
    target_uri: str = ""
    state: str = ""
    format: str = ""
    cause: str = ""


class RecordingFinished(msgspec.Struct, frozen=True, tag=True):
    recording: LiveRecording


class RecordingFailed(msgspec.Struct, frozen=True, tag=True):
    recording: LiveRecording


class ChannelUserevent(msgspec.Struct, frozen=True, tag=True):
    """A user event (``POST /events/user/{eventname}``): the adapter sends its application
    one to check that the application's events still reach its websocket."""

    eventname: str = ""


AriEvent = (
    StasisStart
    | StasisEnd
    | ChannelStateChange
    | ChannelHangupRequest
    | ChannelDestroyed
    | Dial
    | ChannelVarset
    | ChannelDtmfReceived
    | PlaybackFinished
    | RecordingFinished
    | RecordingFailed
    | ChannelUserevent
)

EVENT_TYPES: Final[dict[str, type[AriEvent]]] = {
    kind.__name__: kind
    for kind in (
        StasisStart,
        StasisEnd,
        ChannelStateChange,
        ChannelHangupRequest,
        ChannelDestroyed,
        Dial,
        ChannelVarset,
        ChannelDtmfReceived,
        PlaybackFinished,
        RecordingFinished,
        RecordingFailed,
        ChannelUserevent,
    )
}


# The channel variables dialerd reads from ChannelVarset events: the dialplan's verdict.
# Asterisk reports every variable set (a dozen a call: those set at origination, Gosub's,
# the RTP statistics at hang-up); the others are dropped before they are decoded.
READ_VARIABLES: Final = frozenset({"DIALERD_OUTCOME"})


class _Envelope(msgspec.Struct, frozen=True):
    type: str
    variable: str = ""


_envelope = msgspec.json.Decoder(_Envelope)
_decoders: Final = {name: msgspec.json.Decoder(kind) for name, kind in EVENT_TYPES.items()}


def decode_event(data: str | bytes) -> AriEvent | None:
    """The event in one websocket message, or None for a type dialerd does not read (or
    a ChannelVarset of a variable it does not read)."""
    try:
        envelope = _envelope.decode(data)
    except msgspec.DecodeError as exc:
        raise AriEventError(f"ARI message is not an event: {exc}") from None
    kind = envelope.type
    decoder = _decoders.get(kind)
    if decoder is None:
        return None
    if kind == "ChannelVarset" and envelope.variable not in READ_VARIABLES:
        return None
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise AriEventError(f"ARI {kind} event: {exc}") from None


def decode_channels(data: bytes) -> list[Channel]:
    """The channels listed by ``GET /ari/channels``."""
    try:
        return msgspec.json.decode(data, type=list[Channel])
    except msgspec.DecodeError as exc:
        raise AriEventError(f"ARI channel list: {exc}") from None


def target_channel(target_uri: str) -> str | None:
    """The channel id of a ``channel:<id>`` target (a playback's, a recording's)."""
    kind, _, ident = target_uri.partition(":")
    return ident if kind == "channel" and ident else None
