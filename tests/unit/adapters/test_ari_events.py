"""Decoding ARI events: the ones dialerd reads, others skipped, malformed ones explained."""

from __future__ import annotations

import pytest

from dialerd.adapters.asterisk.ari_events import (
    AriEventError,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelUserevent,
    ChannelVarset,
    Dial,
    PlaybackFinished,
    RecordingFinished,
    StasisStart,
    decode_channels,
    decode_event,
    target_channel,
)

CHANNEL = (
    '{"id":"c1","name":"PJSIP/callee-00000001","state":"Up","caller":{"name":"","number":""},'
    '"dialplan":{"context":"default","exten":"s","priority":1,"app_name":"Stasis",'
    '"app_data":"dialerd"},"creationtime":"2026-11-30T10:00:00.000+0000","language":"en"}'
)


def test_stasis_start_with_unknown_fields() -> None:
    event = decode_event(
        '{"type":"StasisStart","timestamp":"x","args":[],"channel":' + CHANNEL
        + ',"asterisk_id":"a","application":"dialerd","extra":{"new":1}}'
    )  # fmt: skip
    assert isinstance(event, StasisStart)
    assert event.channel.id == "c1"
    assert event.channel.state == "Up"
    assert event.channel.dialplan is not None
    assert event.channel.dialplan.app_name == "Stasis"


def test_destroyed_dial_and_varset() -> None:
    destroyed = decode_event(
        '{"type":"ChannelDestroyed","cause":17,"cause_txt":"User busy","tech_cause":486,'
        '"channel":' + CHANNEL + "}"
    )
    assert destroyed == ChannelDestroyed(
        channel=destroyed.channel,
        cause=17,
        cause_txt="User busy",
        tech_cause=486,  # type: ignore[union-attr]
    )
    dial = decode_event('{"type":"Dial","dialstatus":"BUSY","peer":' + CHANNEL + "}")
    assert isinstance(dial, Dial)
    assert dial.caller is None
    assert dial.dialstatus == "BUSY"
    varset = decode_event('{"type":"ChannelVarset","variable":"DIALERD_OUTCOME","value":"machine"}')
    assert varset == ChannelVarset(variable="DIALERD_OUTCOME", value="machine")


def test_a_user_event_as_asterisk_sends_it() -> None:
    # POST /ari/events/user/dialerd-check-1?application=... on the rig's Asterisk 22.
    event = decode_event(
        '{"type":"ChannelUserevent","timestamp":"2026-12-08T00:37:55.398+0000",'
        '"eventname":"dialerd-check-1","userevent":{"eventname":"dialerd-check-1"},'
        '"asterisk_id":"02:fc:00:00:00:01","application":"dialerd-ue-probe"}'
    )
    assert event == ChannelUserevent(eventname="dialerd-check-1")


def test_other_types_are_skipped() -> None:
    assert decode_event('{"type":"BridgeCreated","bridge":{}}') is None


def test_variables_dialerd_does_not_read_are_skipped() -> None:
    # A dozen a call: those set at origination, Gosub's, the RTP statistics at hang-up.
    for name in ("DIALERD_ID", "GOSUB_RETVAL", "RTPAUDIOQOS"):
        event = '{"type":"ChannelVarset","variable":"%s","value":"x","channel":%s}'
        assert decode_event(event % (name, CHANNEL)) is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("not json", "not an event"),
        ('{"no":"type"}', "not an event"),
        ('{"type":"ChannelDestroyed","cause":"17","channel":' + CHANNEL + "}", "ChannelDestroyed"),
        ('{"type":"StasisStart"}', "missing required field `channel`"),
    ],
)
def test_malformed_events_say_what_is_wrong(message: str, expected: str) -> None:
    with pytest.raises(AriEventError, match=expected):
        decode_event(message)


def test_channel_list() -> None:
    assert [c.id for c in decode_channels(("[" + CHANNEL + "]").encode())] == ["c1"]
    with pytest.raises(AriEventError, match="channel list"):
        decode_channels(b'{"message":"nope"}')


def test_the_events_a_flow_waits_for() -> None:
    back = decode_event('{"type":"StasisStart","args":["amd","MACHINE"],"channel":' + CHANNEL + "}")
    assert isinstance(back, StasisStart)
    assert back.args == ["amd", "MACHINE"]
    digit = decode_event(
        '{"type":"ChannelDtmfReceived","digit":"9","duration_ms":120,"channel":' + CHANNEL + "}"
    )
    assert isinstance(digit, ChannelDtmfReceived)
    assert (digit.channel.id, digit.digit, digit.duration_ms) == ("c1", "9", 120)
    played = decode_event(
        '{"type":"PlaybackFinished","playback":{"id":"p1","media_uri":"sound:beep",'
        '"target_uri":"channel:c1","language":"en","state":"done"}}'
    )
    assert isinstance(played, PlaybackFinished)
    assert (played.playback.state, target_channel(played.playback.target_uri)) == ("done", "c1")
    recorded = decode_event(
        '{"type":"RecordingFinished","recording":{"name":"dialerd/a/b","format":"wav",'
        '"state":"done","target_uri":"channel:c1"}}'
    )
    assert isinstance(recorded, RecordingFinished)
    assert recorded.recording.name == "dialerd/a/b"
    assert target_channel("bridge:b1") is None
    assert target_channel("channel:") is None
