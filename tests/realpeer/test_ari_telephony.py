"""AriTelephony against the real rig: each callee behaviour ends with the right reason, one
INVITE per origination (the SIPp ledger says), queue, AMD, restart and outage handling."""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import SocketStream
from structlog.testing import capture_logs

from dialerd import metrics
from dialerd.ports import (
    Ended,
    HangupReason,
    OriginationError,
    TelephonyEvent,
    TelephonyUnavailable,
)
from tests.realpeer.harness import (
    eventually,
    origination,
    running,
    take_registration,
    telephony,
)
from tests.realpeer.rig import LedgerEntry, Rig

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()
pytestmark = pytest.mark.realpeer


def lines(entries: list[LedgerEntry], campaigncall_id: str, event: str) -> list[LedgerEntry]:
    return [e for e in entries if e.dialerd_id == campaigncall_id and e.event == event]


def invites_of(rig: Rig, campaigncall_id: str) -> int:
    return len(lines(rig.ledger(), campaigncall_id, "invite"))


def ledger_has(campaigncall_id: str, event: str) -> object:
    call_ids: set[str] = set()

    def check(entries: list[LedgerEntry]) -> bool:
        # Outcome lines name the SIP call, not always our id: follow the call id.
        call_ids.update(e.call_id for e in entries if e.dialerd_id == campaigncall_id)
        return any(e.call_id in call_ids and e.event == event for e in entries)

    return check


async def test_answered_then_our_hangup_is_normal_with_one_invite(rig: Rig) -> None:
    mark = rig.ledger_mark()
    async with running(telephony(rig)) as calls:
        call = origination("answer-0")
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        await calls.backend.hangup(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id)).reason == HangupReason.NORMAL
        await calls.no_more_events(call.campaigncall_id)
    entries = rig.wait_ledger(mark, ledger_has(call.campaigncall_id, "caller-bye"))
    assert len(lines(entries, call.campaigncall_id, "invite")) == 1


async def test_callee_hangs_up_after_answer_is_normal(rig: Rig) -> None:
    async with running(telephony(rig)) as calls:
        call = origination("hangup-300")
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id)).reason == HangupReason.NORMAL


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("busy-100", HangupReason.BUSY),
        ("unavail-0", HangupReason.FAILED),
        ("decline-0", HangupReason.NO_ANSWER),
    ],
)
async def test_unanswered_outcomes(rig: Rig, number: str, reason: HangupReason) -> None:
    async with running(telephony(rig)) as calls:
        call = origination(number)
        await calls.backend.originate(call)
        assert (await calls.ended(call.campaigncall_id)).reason == reason
        await calls.no_more_events(call.campaigncall_id)
    assert invites_of(rig, call.campaigncall_id) == 1


async def test_ringing_past_the_dial_timeout_is_no_answer(rig: Rig) -> None:
    async with running(telephony(rig)) as calls:
        call = origination("noanswer-0", dial_timeout_ms=2000)
        started = anyio.current_time()
        await calls.backend.originate(call)
        assert (await calls.ended(call.campaigncall_id)).reason == HangupReason.NO_ANSWER
        assert 1.5 < anyio.current_time() - started < 3.5


async def test_cancel_while_ringing_sends_a_cancel(rig: Rig) -> None:
    mark = rig.ledger_mark()
    async with running(telephony(rig)) as calls:
        call = origination("noanswer-0")
        await calls.backend.originate(call)
        await anyio.to_thread.run_sync(
            lambda: rig.wait_ledger(mark, ledger_has(call.campaigncall_id, "invite"))
        )
        await calls.backend.cancel(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id)).reason == HangupReason.CANCELLED
        await calls.backend.cancel(call.campaigncall_id)  # gone: nothing happens
        await calls.backend.hangup("00000000-0000-4000-8000-000000000000")  # unknown: nothing
    rig.wait_ledger(mark, ledger_has(call.campaigncall_id, "cancelled"))


async def test_the_same_id_twice_places_one_call_even_from_another_process(rig: Rig) -> None:
    call = origination("noanswer-0")
    async with running(telephony(rig)) as first:
        await first.backend.originate(call)
        await first.backend.originate(call)  # the same process: ignored
        async with running(telephony(rig, app=f"{first.backend.app}-2")) as second:
            await second.backend.originate(call)  # Asterisk's 409: live already
        await first.backend.cancel(call.campaigncall_id)
        assert (await first.ended(call.campaigncall_id)).reason == HangupReason.CANCELLED
        await first.backend.originate(call)  # after it ended: still never a second call
        await first.no_more_events(call.campaigncall_id)
    assert invites_of(rig, call.campaigncall_id) == 1


def agent_connects() -> float:
    return REGISTRY.get_sample_value("dialerd_answer_to_agent_seconds_count") or 0.0


async def test_queue_with_a_free_agent_connects_and_ends_normal(fresh_rig: Rig) -> None:
    before = agent_connects()
    async with running(telephony(fresh_rig)) as calls:
        call = origination("answer-0", queue="sales")
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        await eventually(lambda: agent_connects() > before, what="an agent answers")
        await calls.backend.hangup(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id)).reason == HangupReason.NORMAL
    # The engine's abandonment measurement is told how long the caller waited.
    assert 0.0 <= calls.agent_waits[call.campaigncall_id] < 2.0


async def test_queue_with_every_agent_paused_is_abandoned(fresh_rig: Rig) -> None:
    for agent in ("agent1", "agent2"):
        fresh_rig.pause("sales", agent)
    async with running(telephony(fresh_rig, queue_timeout=1)) as calls:
        call = origination("answer-0", queue="sales")
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        assert (await calls.ended(call.campaigncall_id)).reason == HangupReason.ABANDONED


async def test_the_queue_is_the_one_the_origination_names_not_its_id(fresh_rig: Rig) -> None:
    before = agent_connects()
    async with running(telephony(fresh_rig)) as calls:
        call = origination("answer-0", queue="sales")
        assert call.queue_id != "sales"
        await calls.backend.originate(call)
        await calls.answered(call.campaigncall_id)
        await eventually(lambda: agent_connects() > before, what="an agent answers")
        await calls.backend.hangup(call.campaigncall_id)
        await calls.ended(call.campaigncall_id)


async def test_amd_sends_a_human_to_the_queue_and_ends_a_machine(fresh_rig: Rig) -> None:
    before = agent_connects()
    async with running(telephony(fresh_rig, amd=True)) as calls:
        human = origination("human-0", queue="sales")
        machine = origination("machine-0", queue="sales")
        await calls.backend.originate(human)
        await calls.backend.originate(machine)
        await calls.answered(human.campaigncall_id)
        await calls.answered(machine.campaigncall_id)
        assert (await calls.ended(machine.campaigncall_id, 15)).reason == HangupReason.MACHINE
        await eventually(lambda: agent_connects() > before, 15, what="the human reaches an agent")
        await calls.backend.hangup(human.campaigncall_id)
        assert (await calls.ended(human.campaigncall_id)).reason == HangupReason.NORMAL


async def test_a_new_process_follows_calls_placed_before(fresh_rig: Rig) -> None:
    ringing = origination("noanswer-0", dial_timeout_ms=30_000)
    talking = origination("answer-0", queue="sales")
    async with running(telephony(fresh_rig)) as before:
        await before.backend.originate(ringing)
        await before.backend.originate(talking)
        await before.answered(talking.campaigncall_id)
    async with running(telephony(fresh_rig)) as after:
        live = await after.backend.live_calls()
        assert {ringing.campaigncall_id, talking.campaigncall_id} <= live
        await after.answered(talking.campaigncall_id)  # found Up: reported answered
        await after.backend.cancel(ringing.campaigncall_id)
        assert (await after.ended(ringing.campaigncall_id)).reason == HangupReason.CANCELLED
        await after.backend.hangup(talking.campaigncall_id)
        assert (await after.ended(talking.campaigncall_id)).reason == HangupReason.NORMAL
        assert talking.campaigncall_id not in await after.backend.live_calls()
    assert invites_of(fresh_rig, ringing.campaigncall_id) == 1


def registrations_lost() -> float:
    lost = REGISTRY.get_sample_value(
        "dialerd_telephony_registration_lost_total", {"backend": "asterisk"}
    )
    return lost or 0.0


async def test_a_registration_taken_while_connected_is_noticed_and_made_again(rig: Rig) -> None:
    # Another websocket session of the same app registers and ends: Asterisk unregisters
    # the app by name, and the adapter's websocket, still up, would get no more events.
    backend = telephony(rig, registration_check_seconds=0.5, registration_check_timeout=2.0)
    before = registrations_lost()
    with capture_logs() as logs:
        async with running(backend) as calls:
            ringing = origination("noanswer-0", dial_timeout_ms=30_000)
            await backend.originate(ringing)
            await take_registration(rig, backend.app)
            await eventually(lambda: registrations_lost() > before, 10, what="the loss noticed")
            await eventually(lambda: backend.unavailable_reason() is None, 10, what="reconnect")
            # Calls are followed again: the one ringing across the loss, and a new one.
            await backend.cancel(ringing.campaigncall_id)
            assert (await calls.ended(ringing.campaigncall_id)).reason == HangupReason.CANCELLED
            again = origination("busy-0")
            await backend.originate(again)
            assert (await calls.ended(again.campaigncall_id)).reason == HangupReason.BUSY
    assert registrations_lost() == before + 1
    [warning] = [line for line in logs if line["log_level"] == "warning"]
    assert warning["event"] == "ARI application no longer registered; reconnecting"
    assert warning["app"] == backend.app


async def test_events_held_by_a_full_engine_buffer_are_not_a_lost_registration(rig: Rig) -> None:
    # The engine takes no event (its buffer full, as in a store outage): the adapter's
    # reader waits, and so does the registration check's user event; not a loss.
    backend = telephony(rig, registration_check_seconds=0.5, registration_check_timeout=1.0)
    before = registrations_lost()
    send, receive = anyio.create_memory_object_stream[TelephonyEvent](0)
    async with receive, anyio.create_task_group() as task_group:
        await task_group.start(backend.run, send)
        busy = origination("busy-0")
        await backend.originate(busy)
        await anyio.sleep(4)  # several check rounds, the reader held on the call's end
        assert registrations_lost() == before
        assert backend.unavailable_reason() is None
        assert await receive.receive() == Ended(busy.campaigncall_id, HangupReason.BUSY)
        task_group.cancel_scope.cancel()
    await anyio.to_thread.run_sync(rig.wait_connections_ended, backend.app)


class Proxy:
    """A TCP proxy in front of ARI that the test can take down and bring back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._scope: anyio.CancelScope | None = None

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=self.port, reuse_port=False
        )
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
        with anyio.CancelScope() as self._scope:
            async with listener:
                task_status.started()
                await listener.serve(self._relay)

    def down(self) -> None:
        assert self._scope is not None
        self._scope.cancel()

    async def _relay(self, client: SocketStream) -> None:
        async with (
            client,
            await anyio.connect_tcp("127.0.0.1", self.target_port) as server,
            anyio.create_task_group() as task_group,
        ):

            async def pipe(source: SocketStream, sink: SocketStream) -> None:
                try:
                    async for chunk in source:
                        await sink.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
                task_group.cancel_scope.cancel()

            task_group.start_soon(pipe, client, server)
            task_group.start_soon(pipe, server, client)


async def test_ari_away_then_back(rig: Rig) -> None:
    proxy = Proxy(8088)
    async with anyio.create_task_group() as proxies:
        await proxies.start(proxy.serve)
        backend = telephony(rig, url=f"http://127.0.0.1:{proxy.port}")
        async with running(backend) as calls:
            assert backend.unavailable_reason() is None
            gone = origination("hangup-300")
            await backend.originate(gone)
            await calls.answered(gone.campaigncall_id)
            proxy.down()
            await eventually(lambda: backend.unavailable_reason() is not None, what="noticed")
            assert "ARI at http://127.0.0.1" in (backend.unavailable_reason() or "")
            assert rig.ari_password not in (backend.unavailable_reason() or "")
            with pytest.raises(OriginationError, match="cannot place calls"):
                await backend.originate(origination("answer-0"))
            with pytest.raises(TelephonyUnavailable):
                await backend.live_calls()
            with pytest.raises(TelephonyUnavailable):
                await backend.hangup(gone.campaigncall_id)
            up = REGISTRY.get_sample_value("dialerd_telephony_connected", {"backend": "asterisk"})
            assert up == 0
            await anyio.sleep(0.5)  # the call ends (callee BYE) while no one listens
            await proxies.start(proxy.serve)
            await eventually(lambda: backend.unavailable_reason() is None, 15, what="reconnect")
            assert (await calls.ended(gone.campaigncall_id)).reason == HangupReason.LOST
            again = origination("busy-0")
            await backend.originate(again)
            assert (await calls.ended(again.campaigncall_id)).reason == HangupReason.BUSY
        proxies.cancel_scope.cancel()


async def test_wrong_password_is_a_clear_reason(rig: Rig) -> None:
    backend = telephony(rig, password="wrong-password")
    async with running(backend):
        reason = backend.unavailable_reason() or ""
        assert "401" in reason or "Upgrade" in reason, reason
        assert "wrong-password" not in reason
