"""How a call's digits_receive takes the keys pressed (ari_flow), and play URLs as ARI media."""

from __future__ import annotations

import pytest

from dialerd.adapters.asterisk.ari import AriTelephony
from dialerd.adapters.asterisk.ari_flow import CallFlow, CallPlan, _media
from dialerd.core.actions import DigitsReceiveOption, Program


def flow_with(pressed: str) -> CallFlow:
    ari = AriTelephony(url="http://127.0.0.1:8088", username="u", password="p")
    plan = CallPlan(
        campaign_id="c", customer_id="k", number="+15550001", queue="", program=Program(()),
        variables={},
    )  # fmt: skip
    running = CallFlow(ari, "id", plan, tts=None, services=None)
    running._digits = pressed
    return running


@pytest.mark.parametrize(
    ("pressed", "option", "taken", "left"),
    [
        ("12", DigitsReceiveOption(duration=1000, length=3), None, "12"),  # wait for more
        ("1234", DigitsReceiveOption(duration=1000, length=3), "123", "4"),
        ("12#9", DigitsReceiveOption(duration=1000, key="#"), "12", "9"),  # key not kept
        ("#", DigitsReceiveOption(duration=1000, key="#*"), "", ""),
        ("9*", DigitsReceiveOption(duration=1000, key="#*", length=4), "9", ""),
        ("12", DigitsReceiveOption(duration=1000), None, "12"),  # only the duration ends it
    ],
)
def test_digits_until_length_or_key(
    pressed: str, option: DigitsReceiveOption, taken: str | None, left: str
) -> None:
    running = flow_with(pressed)
    assert running._take_digits(option) == taken
    assert running._digits == left
    running.close()


def test_play_urls_as_ari_media() -> None:
    assert _media("sound:beep") == "sound:beep"
    assert _media("https://m.example/a.wav") == "sound:https://m.example/a.wav"
    # ARI splits a media list on commas: one URL stays one medium.
    assert _media("https://m.example/a,b.wav") == "sound:https://m.example/a%2Cb.wav"
