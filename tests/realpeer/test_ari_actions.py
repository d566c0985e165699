"""A campaign's actions on real calls (AriTelephony against the rig): the SIPp callee
presses RFC 2833 digits and the flow takes the branch they choose; the listener (an
Asterisk extension that records what it hears) hears the prompts, a message left after
an answering machine's beep, and the party a connect bridges it to; recording_* leaves a
playable file."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from dialerd import metrics
from dialerd.adapters.asterisk.ari import AriTelephony
from dialerd.adapters.tts import EspeakTts, wav_seconds
from dialerd.core.actions import Capability, EmailSendOption, WebhookSendOption
from dialerd.model import Action
from dialerd.ports import HangupReason
from tests.conftest import free_port
from tests.realpeer.harness import Harness, eventually, origination, running, telephony
from tests.realpeer.rig import LedgerEntry, Rig
from tests.realpeer.test_ari_telephony import Proxy

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()
pytestmark = pytest.mark.realpeer

LISTENER = "PJSIP/{number}@listener"


class Services:
    """The side effects outside the call, as the tests see them."""

    def __init__(self) -> None:
        self.opted_out: list[tuple[str, str, str]] = []
        self.webhooks: list[str] = []

    async def webhook_send(self, option: WebhookSendOption, variables: Mapping[str, str]) -> int:
        self.webhooks.append(option.data)
        return 200

    async def email_send(self, option: EmailSendOption, variables: Mapping[str, str]) -> None:
        raise AssertionError("no email in these flows")

    async def dnc_add(self, customer_id: str, number: str, detail: str) -> None:
        self.opted_out.append((customer_id, number, detail))

    def capabilities(self) -> frozenset[Capability]:
        return frozenset(Capability)


def act(kind: str, option: dict[str, Any] | None = None, *, id: str = "") -> Action:
    if id:
        return Action(type=kind, id=id, option=option or {})
    return Action(type=kind, option=option or {})


MENU_TEXT = "Press 1 for an agent, 9 to be put on our do not call list."
AGENT = str(uuid.uuid4())
OPT_OUT = str(uuid.uuid4())


def menu() -> list[Action]:
    """The IVR: a prompt, one digit within 6 s, a branch (1: webhook, 9: opt-out)."""
    return [
        act("talk", {"text": MENU_TEXT, "language": "en-US"}),
        act("digits_receive", {"duration": 6000, "length": 1}),
        act("branch", {"target_ids": {"1": AGENT, "9": OPT_OUT}}),
        act("hangup"),
        act("webhook_send", {"uri": "https://example.com/agent", "data": "chose 1"}, id=AGENT),
        act("hangup"),
        act("dnc_add", id=OPT_OUT),
        act("hangup"),
    ]


@asynccontextmanager
async def with_actions(
    rig: Rig, tmp_path: Path, services: Services, **overrides: Any
) -> AsyncIterator[Harness]:
    port = free_port()
    backend: AriTelephony = telephony(
        rig,
        tts=EspeakTts(tmp_path / "tts"),
        services=services,
        media_listen=("127.0.0.1", port),
        media_url=f"http://127.0.0.1:{port}",
        **overrides,
    )
    async with running(backend) as calls:
        yield calls


def heard(rig: Rig, name: str, within: float = 10.0) -> Path:
    """What the listener called ``name`` heard (written when its call ends)."""
    path = rig.root / "var/spool/asterisk-dialerd/heard" / f"{name}.wav"
    deadline = time.monotonic() + within
    size = -1
    while True:
        if path.is_file() and path.stat().st_size == size and size > 44:
            return path
        size = path.stat().st_size if path.is_file() else -1
        if time.monotonic() > deadline:
            raise AssertionError(f"the listener wrote no {path}")
        time.sleep(0.2)


def sound(path: Path) -> tuple[float, float, float]:
    """(length in seconds, RMS amplitude, seconds until the first sound) of a WAV."""
    length = wav_seconds(path)
    stat = subprocess.run(
        ["sox", str(path), "-n", "stat"], capture_output=True, text=True, check=True
    ).stderr
    rms = float(re.search(r"RMS\s+amplitude:\s+([0-9.]+)", stat)[1])  # type: ignore[index]
    trimmed = Path(f"{path}.trimmed.wav")
    subprocess.run(["sox", str(path), str(trimmed), "silence", "1", "0.05", "1%"], check=True)
    onset = length - wav_seconds(trimmed)
    trimmed.unlink()
    return length, rms, onset


def voiced_seconds(path: Path) -> float:
    """The length of a WAV without its leading and trailing silence."""
    trimmed = Path(f"{path}.voiced.wav")
    subprocess.run(
        ["sox", str(path), str(trimmed), "silence", "1", "0.05", "1%",
         "reverse", "silence", "1", "0.05", "1%", "reverse"],
        check=True,
    )  # fmt: skip
    seconds = wav_seconds(trimmed)
    trimmed.unlink()
    return seconds


def answered_lines(entries: list[LedgerEntry], call_id: str) -> list[str]:
    sip_calls = {e.call_id for e in entries if e.dialerd_id == call_id}
    return [e.event for e in entries if e.call_id in sip_calls]


@pytest.mark.parametrize(("number", "branch"), [("press1-1500", "1"), ("press9-1500", "9")])
async def test_the_digit_the_callee_presses_chooses_the_branch(
    rig: Rig, tmp_path: Path, number: str, branch: str
) -> None:
    services = Services()
    mark = rig.ledger_mark()
    async with with_actions(rig, tmp_path, services) as calls:
        call = origination(number, actions=menu())
        chosen_before = metrics.CAMPAIGN_DIGITS_CHOSEN.labels(call.campaign_id, branch)._value.get()
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        ended = await calls.ended(call.campaigncall_id, within=20)
    assert ended.reason == HangupReason.NORMAL
    if branch == "1":
        assert services.webhooks == ["chose 1"]
        assert services.opted_out == []
    else:
        assert services.webhooks == []
        assert services.opted_out == [
            (
                call.customer_id,
                number,
                f"opt-out by the callee: campaign {call.campaign_id}, "
                f"campaigncall {call.campaigncall_id}",
            )
        ]
    chosen = metrics.CAMPAIGN_DIGITS_CHOSEN.labels(call.campaign_id, branch)._value.get()
    assert chosen == chosen_before + 1
    # The callee pressed, then dialerd hung up (the flow's hangup): one INVITE.
    events = answered_lines(
        rig.wait_ledger(mark, lambda e: "caller-bye" in answered_lines(e, call.campaigncall_id)),
        call.campaigncall_id,
    )
    assert events == ["invite", "answered", f"pressed-{branch}", "caller-bye"]


async def test_no_digit_within_the_duration_takes_the_default(rig: Rig, tmp_path: Path) -> None:
    services = Services()
    async with with_actions(rig, tmp_path, services) as calls:
        call = origination("answer-0", actions=menu())
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id, within=25)).reason == HangupReason.NORMAL
    assert (services.webhooks, services.opted_out) == ([], [])


async def test_the_callee_hears_the_prompt_as_long_as_it_was_rendered(
    rig: Rig, tmp_path: Path
) -> None:
    name = f"listen-{uuid.uuid4().hex[:12]}"
    text = "Hello. This is a reminder of your appointment tomorrow at ten."
    async with with_actions(rig, tmp_path, Services(), endpoint=LISTENER) as calls:
        call = origination(name, actions=[act("talk", {"text": text}), act("hangup")])
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id, within=30)).reason == HangupReason.NORMAL
        rendered = await EspeakTts(tmp_path / "tts").render(text, "en-US", "")
    path = heard(rig, name)
    _length, rms, _onset = sound(path)
    assert rms > 0.01, "the callee heard silence"
    assert voiced_seconds(path) == pytest.approx(voiced_seconds(rendered), abs=0.6)


async def test_a_callee_hanging_up_mid_prompt_ends_the_flow(rig: Rig, tmp_path: Path) -> None:
    services = Services()
    long_text = "This prompt goes on. " * 20
    actions = [act("talk", {"text": long_text}), act("dnc_add")]
    async with with_actions(rig, tmp_path, services) as calls:
        call = origination("hangup-1500", actions=actions)
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id, within=15)).reason == HangupReason.NORMAL
        await calls.no_more_events(call.campaigncall_id)
    assert services.opted_out == [], "the steps after the prompt did not run"
    count = metrics.CAMPAIGN_ACTIONS.labels(call.campaign_id, "talk", "callee_hangup")
    assert count._value.get() == 1


async def test_amd_machine_then_a_message_after_the_beep(rig: Rig, tmp_path: Path) -> None:
    name = f"vm-{uuid.uuid4().hex[:12]}"
    actions = [
        act("amd", {"machine_handle": "continue"}),
        act("talk", {"text": "Hello, this is Acme. Please call us back."}),
        act("hangup"),
    ]
    async with with_actions(rig, tmp_path, Services(), endpoint=LISTENER) as calls:
        call = origination(name, actions=actions)
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id, within=45)).reason == HangupReason.NORMAL
    machine = metrics.CAMPAIGN_ACTIONS.labels(call.campaign_id, "amd", "machine")
    assert machine._value.get() == 1
    greeting = wav_seconds(rig.directory / "audio/rig-voicemail.wav")
    _length, rms, onset = sound(heard(rig, name))
    assert rms > 0.005, "the machine recorded no message"
    assert onset >= greeting, f"the message began {onset:.1f} s in, before the beep"


async def test_amd_machine_with_hangup_ends_the_call_as_machine(rig: Rig, tmp_path: Path) -> None:
    actions = [act("amd", {"machine_handle": "hangup"}), act("talk", {"text": "Hi"})]
    async with with_actions(rig, tmp_path, Services()) as calls:
        call = origination("machine-0", actions=actions)
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id, within=20)).reason == HangupReason.MACHINE


async def test_connect_bridges_the_callee_to_a_second_callee(rig: Rig, tmp_path: Path) -> None:
    callee = f"listen-{uuid.uuid4().hex[:12]}"
    second = f"vm-{uuid.uuid4().hex[:12]}"
    actions = [
        act("connect", {"destinations": [{"type": "tel", "target": second}]}),
        act("hangup"),
    ]
    async with with_actions(rig, tmp_path, Services(), endpoint=LISTENER) as calls:
        call = origination(callee, actions=actions)
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        # The second callee (an answering machine) plays its greeting into the bridge.
        greeting = wav_seconds(rig.directory / "audio/rig-voicemail.wav")
        with pytest.raises(TimeoutError):
            await calls.next_event(call.campaigncall_id, within=greeting + 1)
        await calls.backend.hangup(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id)).reason == HangupReason.NORMAL
    _length, rms, _onset = sound(heard(rig, callee))
    assert rms > 0.01, "the callee heard nothing of the second callee"
    assert voiced_seconds(heard(rig, callee)) == pytest.approx(greeting, abs=1.0)
    # The second leg is gone with the call (ARI lists channels by id; the CLI by name).
    leg = f"{call.campaigncall_id}-connect-0"
    await eventually(lambda: leg not in _channel_ids(rig), 5, "the connect leg hung up")


def _channel_ids(rig: Rig) -> list[str]:
    response = httpx.get(f"{rig.ari_url}/ari/channels", auth=rig.ari_auth, timeout=5)
    return [channel["id"] for channel in response.json()]


async def test_recording_leaves_a_playable_file_the_call_names(rig: Rig, tmp_path: Path) -> None:
    actions = [
        act("recording_start", {"format": "wav"}),
        act("sleep", {"duration": 2000}),
        act("recording_stop"),
        act("hangup"),
    ]
    async with with_actions(rig, tmp_path, Services()) as calls:
        call = origination("human-0", actions=actions)
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        ended = await calls.ended(call.campaigncall_id, within=15)
    name = f"dialerd/{call.campaign_id}/{call.campaigncall_id}.wav"
    assert ended.recording == name
    path = rig.root / "var/spool/asterisk-dialerd/recording" / name
    assert wav_seconds(path) == pytest.approx(2.0, abs=0.5)
    _length, rms, _onset = sound(path)
    assert rms > 0.005, "the recording holds the callee's hello"


async def test_ari_lost_mid_prompt_hangs_the_call_up_when_back(rig: Rig, tmp_path: Path) -> None:
    proxy = Proxy(8088)
    long_text = "This prompt goes on for a while. " * 15
    actions = [act("talk", {"text": long_text}), act("dnc_add")]
    services = Services()
    mark = rig.ledger_mark()
    async with anyio.create_task_group() as proxies:
        await proxies.start(proxy.serve)
        url = f"http://127.0.0.1:{proxy.port}"
        async with with_actions(rig, tmp_path, services, url=url) as calls:
            call = origination("answer-0", actions=actions)
            await calls.backend.originate(call)
            await calls.answered(call.campaigncall_id)
            proxy.down()
            await eventually(lambda: calls.backend.unavailable_reason() is not None)
            await proxies.start(proxy.serve)
            # Back: the flow could not know how its prompt went; the call is hung up.
            ended = await calls.ended(call.campaigncall_id, within=20)
            assert ended.reason == HangupReason.NORMAL
        proxies.cancel_scope.cancel()
    assert services.opted_out == []
    entries = rig.wait_ledger(
        mark, lambda e: "caller-bye" in answered_lines(e, call.campaigncall_id)
    )
    assert answered_lines(entries, call.campaigncall_id) == ["invite", "answered", "caller-bye"]


async def test_play_and_beep_reach_the_callee(rig: Rig, tmp_path: Path) -> None:
    name = f"listen-{uuid.uuid4().hex[:12]}"
    tts = EspeakTts(tmp_path / "tts")
    prompt = await tts.render("One, two, three, four, five.", "en-US", "")
    port = free_port()
    url = f"http://127.0.0.1:{port}/tts/{prompt.name}"  # served by the adapter's media server
    actions = [act("beep"), act("play", {"stream_urls": [url, "sound:beep"]}), act("hangup")]
    backend = telephony(
        rig, tts=tts, services=Services(), media_listen=("127.0.0.1", port),
        media_url=f"http://127.0.0.1:{port}", endpoint=LISTENER,
    )  # fmt: skip
    async with running(backend) as calls:
        call = origination(name, actions=actions)
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id, within=20)).reason == HangupReason.NORMAL
    path = heard(rig, name)
    _length, rms, _onset = sound(path)
    assert rms > 0.01
    # A beep, the prompt, a beep: at least as long as the prompt's voice.
    assert voiced_seconds(path) >= voiced_seconds(prompt)
    for step in ("beep", "play"):
        done = metrics.CAMPAIGN_ACTIONS.labels(call.campaign_id, step, "done")
        assert done._value.get() == 1, step


async def test_digits_send_reaches_the_callee(rig: Rig, tmp_path: Path) -> None:
    name = f"dtmf-{uuid.uuid4().hex[:12]}"
    actions = [
        act("digits_send", {"digits": "4*79", "duration": 200, "interval": 150}),
        act("sleep", {"duration": 1500}),
        act("hangup"),
    ]
    async with with_actions(rig, tmp_path, Services(), endpoint=LISTENER) as calls:
        call = origination(name, actions=actions)
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id, within=20)).reason == HangupReason.NORMAL
    got = rig.root / "var/spool/asterisk-dialerd/heard" / f"{name}.digits"
    assert got.read_text().strip() == "4*79"


async def test_a_key_stops_a_talk_with_digits_handle_next(rig: Rig, tmp_path: Path) -> None:
    services = Services()
    text = "Our offers this week are many, and I will read them all to you now. " * 4
    actions = [
        act("talk", {"text": text, "digits_handle": "next"}),
        act("branch", {"target_ids": {"1": AGENT}}),
        act("hangup"),
        act("webhook_send", {"uri": "https://example.com/agent", "data": "chose 1"}, id=AGENT),
        act("hangup"),
    ]
    mark = rig.ledger_mark()
    async with with_actions(rig, tmp_path, services) as calls:
        call = origination("press1-1000", actions=actions)
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id, within=30)).reason == HangupReason.NORMAL
        prompt = await EspeakTts(tmp_path / "tts").render(text, "en-US", "")
    assert services.webhooks == ["chose 1"]
    entries = rig.wait_ledger(
        mark, lambda e: "caller-bye" in answered_lines(e, call.campaigncall_id)
    )
    ours = {e.event: e.time for e in entries if e.dialerd_id == call.campaigncall_id}
    # The key cut the prompt short: the call ended long before the prompt would have.
    assert ours["caller-bye"] - ours["answered"] < wav_seconds(prompt) / 2


async def test_an_async_talk_plays_while_the_digits_are_received(rig: Rig, tmp_path: Path) -> None:
    services = Services()
    text = "Welcome. Our menu has many options, listen carefully as they have changed. " * 3
    actions = [
        act("talk", {"text": text, "async": True}),
        act("digits_receive", {"duration": 20000, "length": 1}),
        act("branch", {"target_ids": {"1": AGENT}}),
        act("hangup"),
        act("webhook_send", {"uri": "https://example.com/agent", "data": "chose 1"}, id=AGENT),
        act("hangup"),
    ]
    mark = rig.ledger_mark()
    async with with_actions(rig, tmp_path, services) as calls:
        call = origination("press1-1000", actions=actions)
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id, within=30)).reason == HangupReason.NORMAL
        prompt = await EspeakTts(tmp_path / "tts").render(text, "en-US", "")
    assert services.webhooks == ["chose 1"]
    entries = rig.wait_ledger(
        mark, lambda e: "caller-bye" in answered_lines(e, call.campaigncall_id)
    )
    ours = {e.event: e.time for e in entries if e.dialerd_id == call.campaigncall_id}
    # The key came during the prompt, was taken at once, and the prompt did not hold it up.
    assert ours["caller-bye"] - ours["answered"] < wav_seconds(prompt) / 2


async def test_the_seeds_campaign_talks_then_joins_the_queue(rig: Rig, tmp_path: Path) -> None:
    # A talk and nothing else, on a campaign with a queue: after the prompt the call
    # waits for an agent, as the seed's example campaign does.
    text = "Please wait until the agent answers the call."
    before = REGISTRY.get_sample_value("dialerd_answer_to_agent_seconds_count") or 0.0
    async with with_actions(rig, tmp_path, Services()) as calls:
        call = origination("answer-0", queue="sales", actions=[act("talk", {"text": text})])
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        await eventually(
            lambda: (
                (REGISTRY.get_sample_value("dialerd_answer_to_agent_seconds_count") or 0.0) > before
            ),
            what="an agent answers after the prompt",
            within=20,
        )
        prompt = await EspeakTts(tmp_path / "tts").render(text, "en-US", "")
        await calls.backend.hangup(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id)).reason == HangupReason.NORMAL
    # The agent was reached after the prompt had played, counted from the answer.
    assert calls.agent_waits[call.campaigncall_id] >= wav_seconds(prompt) - 0.5


async def test_a_key_pressed_once_is_received_once(rig: Rig, tmp_path: Path) -> None:
    # The application is subscribed to the trunk's endpoint (for calls without actions)
    # and, through the origination, to this call's channel: Asterisk reports each of the
    # channel's events on both ways. Each key counts once all the same.
    services = Services()
    actions = [
        act("digits_receive", {"duration": 4000, "length": 2}),
        act("branch", {"target_ids": {"1": AGENT}}),
        act("hangup"),
        act("webhook_send", {"uri": "https://example.com/agent", "data": "chose 1"}, id=AGENT),
        act("hangup"),
    ]
    async with with_actions(rig, tmp_path, services) as calls:
        call = origination("press1-1500", actions=actions)
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id, within=20)).reason == HangupReason.NORMAL
    assert services.webhooks == ["chose 1"]
