"""The wrap-ups the Asterisk queue adapter reports (what the predictive model counts on
instead of ``engine.predictive_wrap_up``), from AMI event text as Asterisk 22 sends it
(app_queue's ``AgentComplete`` and member events; recorded text, not a live Asterisk)."""

from __future__ import annotations

from dialerd.adapters.asterisk.ami import AmiClient
from dialerd.adapters.asterisk.ami_protocol import AmiMessage, AmiParser
from dialerd.adapters.asterisk.ami_queue import AsteriskQueue

OURS = "0f6c1c8e-6d1b-4a55-9d1e-3c0a2b7e8f10"


def events(text: str) -> list[AmiMessage]:
    messages, problems = AmiParser(expect_banner=False).feed(text.replace("\n", "\r\n").encode())
    assert not problems
    return messages


def member_status(interface: str, wrapuptime: int, event: str = "QueueMemberStatus") -> str:
    where = "Location" if event == "QueueMember" else "Interface"
    return (
        f"Event: {event}\nQueue: sales\nMemberName: {interface}\n{where}: {interface}\n"
        f"StateInterface: {interface}\nMembership: static\nPenalty: 0\nCallsTaken: 4\n"
        "LastCall: 1800000000\nLastPause: 0\nLoginTime: 1799990000\nInCall: 0\nStatus: 1\n"
        f"Paused: 0\nPausedReason: \nRinginuse: 0\nWrapuptime: {wrapuptime}\n\n"
    )


def agent_complete(interface: str, uniqueid: str = OURS) -> str:
    return (
        "Event: AgentComplete\nPrivilege: agent,all\nChannel: PJSIP/callee-00000012\n"
        "ChannelState: 6\nChannelStateDesc: Up\nCallerIDNum: +15550100001\nCallerIDName: \n"
        "ConnectedLineNum: 201\nConnectedLineName: \nLanguage: en\nAccountCode: \n"
        "Context: dialerd\nExten: s\nPriority: 1\n"
        f"Uniqueid: {uniqueid}\nLinkedid: {uniqueid}\n"
        "DestChannel: PJSIP/agent201-00000013\nDestChannelState: 6\nDestChannelStateDesc: Up\n"
        "DestCallerIDNum: 201\nDestCallerIDName: \nDestConnectedLineNum: +15550100001\n"
        "DestConnectedLineName: \nDestLanguage: en\nDestAccountCode: \nDestContext: agents\n"
        "DestExten: 201\nDestPriority: 1\nDestUniqueid: 1800000000.42\n"
        "DestLinkedid: 1800000000.41\n"
        f"Queue: sales\nMemberName: {interface}\nInterface: {interface}\n"
        "HoldTime: 1\nTalkTime: 143\nReason: caller\n\n"
    )


def adapter(wrapup_time: int = 7) -> AsteriskQueue:
    ami = AmiClient(host="127.0.0.1", port=5038, username="dialerd", secret="unused")
    return AsteriskQueue(ami, wrapup_time=wrapup_time)


def feed(queue: AsteriskQueue, text: str) -> None:
    for event in events(text):
        queue.on_event(event)


def test_no_wrap_up_before_a_call_of_dialerd_completed() -> None:
    queue = adapter()
    feed(queue, member_status("PJSIP/agent201", 15))
    assert queue.wrap_ups("sales") == ()


def test_after_each_call_the_wrap_up_of_the_member_who_took_it() -> None:
    queue = adapter(wrapup_time=7)
    feed(queue, member_status("PJSIP/agent201", 15) + member_status("PJSIP/agent202", 0))
    feed(queue, agent_complete("PJSIP/agent201"))
    # A member without its own Wrapuptime (0) serves the queue's: the configured one.
    feed(queue, agent_complete("PJSIP/agent202"))
    # A member never reported: the queue's too.
    feed(queue, agent_complete("PJSIP/agent203"))
    assert queue.wrap_ups("sales") == (15.0, 7.0, 7.0)
    assert queue.wrap_ups("SALES") == (15.0, 7.0, 7.0)
    assert queue.wrap_ups("support") == ()


def test_a_status_reply_member_is_named_by_its_location() -> None:
    queue = adapter(wrapup_time=0)
    feed(queue, member_status("PJSIP/agent201", 12, event="QueueMember"))
    feed(queue, agent_complete("PJSIP/agent201"))
    assert queue.wrap_ups("sales") == (12.0,)


def test_calls_that_are_not_dialerd_s_are_not_counted() -> None:
    queue = adapter()
    feed(queue, member_status("PJSIP/agent201", 15))
    feed(queue, agent_complete("PJSIP/agent201", uniqueid="1800000000.40"))
    assert queue.wrap_ups("sales") == ()
