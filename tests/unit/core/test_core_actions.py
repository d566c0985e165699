"""A campaign's actions checked and compiled (``dialerd.core.actions``): every supported
type's options, the ids jumps name, the loop rule, what a host must be able to do."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.core.actions import (
    CALL_ONLY_TYPES,
    OPTION_TYPES,
    ActionsInvalid,
    Capability,
    GotoOption,
    TalkOption,
    call_only,
    compile_actions,
    missing,
    needs,
)
from dialerd.model import NIL_UUID, Action

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"
EMAIL = [{"type": "email", "target": "ann@example.com"}]
TEL = [{"type": "tel", "target": "+15551230001"}]

# One valid option per supported type, the smallest that is accepted.
VALID: dict[str, dict[str, Any]] = {
    "answer": {},
    "talk": {"text": "Hello"},
    "play": {"stream_urls": ["https://media.example.com/a.wav"]},
    "beep": {},
    "sleep": {"duration": 1000},
    "digits_send": {"digits": "12#"},
    "digits_receive": {"duration": 5000},
    "condition_call_digits": {"length": 1, "false_target_id": A},
    "branch": {"target_ids": {"1": A}},
    "goto": {"target_id": A},
    "amd": {},
    "queue_join": {},
    "connect": {"destinations": TEL},
    "recording_start": {},
    "recording_stop": {},
    "variable_set": {"key": "greeting"},
    "webhook_send": {"uri": "https://hooks.example.com/x"},
    "email_send": {"destinations": EMAIL},
    "message_send": {"destinations": TEL, "text": "hi"},
    "hangup": {},
    "stop": {},
    "dnc_add": {},
}

# (type, option, the field named, a word of the message)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("answer", {"x": 1}, "x", "unknown field"),
    ("talk", {}, "text", "missing required field"),
    ("talk", {"text": ""}, "text", "length >= 1"),
    ("talk", {"text": "x" * 4097}, "text", "length <= 4096"),
    ("talk", {"text": "a", "bogus_field": 1}, "bogus_field", "unknown field"),
    ("talk", {"text": "a", "gender": "robot"}, "gender", "Invalid enum value"),
    ("talk", {"text": "a", "language": "english please"}, "language", "regex"),
    ("talk", {"text": "a", "digits_handle": "stop"}, "digits_handle", "Invalid enum value"),
    ("talk", {"text": "a", "async": "yes"}, "async", "Expected `bool`"),
    ("play", {}, "stream_urls", "missing required field"),
    ("play", {"stream_urls": []}, "stream_urls", "length >= 1"),
    ("play", {"stream_urls": ["file:///etc/passwd"]}, "stream_urls[0]", "regex"),
    ("play", {"stream_urls": ["https://x/" + "a" * 2048]}, "stream_urls[0]", "length <= 2048"),
    ("beep", {"volume": 3}, "volume", "unknown field"),
    ("sleep", {}, "duration", "missing required field"),
    ("sleep", {"duration": 0}, "duration", ">= 1"),
    ("sleep", {"duration": "5"}, "duration", "Expected `int`"),
    ("digits_send", {"digits": "12x"}, "digits", "regex"),
    ("digits_send", {"digits": "1", "duration": 50}, "duration", ">= 100"),
    ("digits_receive", {"duration": 5000, "key": "x"}, "key", "regex"),
    ("digits_receive", {"duration": 5000, "length": -1}, "length", ">= 0"),
    ("condition_call_digits", {"false_target_id": A}, "length", "never holds"),
    ("condition_call_digits", {"length": 1}, "false_target_id", "missing required field"),
    ("condition_call_digits", {"length": 1, "false_target_id": "x"}, "false_target_id", "regex"),
    ("branch", {}, "target_ids", "missing required field"),
    ("branch", {"target_ids": {"1": "nope"}}, "target_ids[...]", "regex"),
    ("goto", {}, "target_id", "missing required field"),
    ("goto", {"target_id": A, "loop_count": 101}, "loop_count", "<= 100"),
    ("amd", {"machine_handle": "voicemail"}, "machine_handle", "Invalid enum value"),
    ("amd", {"async": True}, "async", "must be false"),
    ("queue_join", {"queue_id": "q1"}, "queue_id", "regex"),
    ("connect", {}, "destinations", "missing required field"),
    ("connect", {"destinations": [{"type": "fax"}]}, "destinations[0].type", "Invalid enum"),
    ("recording_start", {"format": "flac"}, "format", "Invalid enum value"),
    ("recording_start", {"on_end_flow_id": A}, "on_end_flow_id", "unknown field"),
    ("recording_stop", {"x": 1}, "x", "unknown field"),
    ("variable_set", {}, "key", "missing required field"),
    ("variable_set", {"key": "a b"}, "key", "regex"),
    ("webhook_send", {}, "uri", "missing required field"),
    ("webhook_send", {"uri": "ftp://x"}, "uri", "regex"),
    ("webhook_send", {"uri": "https://x", "method": "PATCH"}, "method", "Invalid enum"),
    ("webhook_send", {"uri": "https://x", "data": "d" * 8193}, "data", "length <= 8192"),
    ("email_send", {"destinations": []}, "destinations", "length >= 1"),
    ("email_send", {"destinations": EMAIL, "attachments": []}, "attachments", "unknown field"),
    ("message_send", {"destinations": TEL}, "text", "missing required field"),
    ("hangup", {"reason": "whatever"}, "reason", "Invalid enum value"),
    ("stop", {"now": True}, "now", "unknown field"),
    ("dnc_add", {"detail": 3}, "detail", "Expected `str`"),
]


def actions(*items: tuple[str, dict[str, Any]] | Action) -> list[Action]:
    return [
        item if isinstance(item, Action) else Action(type=item[0], option=item[1]) for item in items
    ]


def errors_of(items: list[Action], **kwargs: Any) -> list[tuple[int, str, str]]:
    with pytest.raises(ActionsInvalid) as refused:
        compile_actions(items, **kwargs)
    return [(e.index, e.field, e.message) for e in refused.value.errors]


def test_every_supported_type_has_an_option_struct_and_a_valid_example() -> None:
    assert set(VALID) == set(OPTION_TYPES)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_type_accepts_its_smallest_option(kind: str) -> None:
    target = Action(type="beep", id=A)
    program = compile_actions([Action(type=kind, option=VALID[kind]), target])
    assert isinstance(program.steps[0].option, OPTION_TYPES[kind])


@pytest.mark.parametrize(("kind", "option", "field", "word"), INVALID)
def test_a_bad_option_is_refused_naming_the_action_and_field(
    kind: str, option: dict[str, Any], field: str, word: str
) -> None:
    items = actions(("beep", {}), ("beep", {}), (kind, option), Action(type="beep", id=A))
    [(index, named, message)] = errors_of(items)
    assert index == 2
    assert named == f"$.actions[2].option.{field}"
    assert word in message


def test_an_unknown_or_unsupported_type_is_refused_naming_the_type() -> None:
    [(index, field, message)] = errors_of(actions(("beep", {}), ("ai_talk", {})))
    assert (index, field) == (1, "$.actions[1].type")
    assert "'ai_talk'" in message
    assert "talk" in message


def test_every_bad_action_is_named_and_the_error_text_names_the_first() -> None:
    items = actions(("talk", {}), ("beep", {}), ("sleep", {"duration": -1}))
    with pytest.raises(ActionsInvalid) as refused:
        compile_actions(items)
    assert [e.field for e in refused.value.errors] == [
        "$.actions[0].option.text",
        "$.actions[2].option.duration",
    ]
    assert "$.actions[0].option.text" in str(refused.value)


def test_option_defaults_are_voipbins() -> None:
    items = actions(("talk", {"text": "hi"}), ("goto", {"target_id": A}), Action(type="beep", id=A))
    program = compile_actions(items)
    talk = program.steps[0].option
    assert isinstance(talk, TalkOption)
    assert (talk.language, talk.gender, talk.digits_handle, talk.async_) == ("en-US", "", "", False)
    # A goto without loop_count does not jump (VoIPbin: loop_count 0 goes on).
    goto = program.steps[1].option
    assert isinstance(goto, GotoOption)
    assert goto.loop_count == 0


def test_next_index_follows_next_id_else_the_following_action() -> None:
    items = [
        Action(type="talk", id=A, option={"text": "a"}, next_id=C),
        Action(type="talk", id=B, option={"text": "b"}),
        Action(type="talk", id=C, option={"text": "c"}),
    ]
    program = compile_actions(items)
    assert [step.next_index for step in program.steps] == [2, 2, None]
    assert program.index_of(C.upper()) == 2


def test_an_empty_list_is_an_empty_program() -> None:
    assert compile_actions([]).empty
    assert not compile_actions(actions(("beep", {}))).empty


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (Action(type="beep", next_id=B), "$.actions[0].next_id"),
        (Action(type="goto", option={"target_id": B}), "$.actions[0].option.target_id"),
        (
            Action(type="condition_call_digits", option={"key": "#", "false_target_id": B}),
            "$.actions[0].option.false_target_id",
        ),
        (
            Action(type="branch", option={"target_ids": {"1": A}, "default_target_id": B}),
            "$.actions[0].option.default_target_id",
        ),
        (
            Action(type="branch", option={"target_ids": {"7": B}}),
            "$.actions[0].option.target_ids.7",
        ),
    ],
)
def test_a_jump_to_an_id_no_action_has_is_refused(item: Action, field: str) -> None:
    [(index, named, message)] = errors_of([item, Action(type="talk", id=A, option={"text": "x"})])
    assert (index, named) == (0, field)
    assert B in message


def test_two_actions_with_the_same_id_are_refused() -> None:
    items = [Action(type="beep", id=A), Action(type="beep", id=A.upper())]
    assert errors_of(items) == [(1, "$.actions[1].id", "the same id as action 0")]


def test_nil_ids_may_repeat() -> None:
    compile_actions([Action(type="beep", id=NIL_UUID), Action(type="beep", id=NIL_UUID)])


def test_a_loop_without_a_waiting_step_is_refused() -> None:
    items = [
        Action(type="variable_set", id=A, option={"key": "k", "value": "v"}),
        Action(type="webhook_send", option={"uri": "https://x"}),
        Action(type="branch", option={"variable": "k", "target_ids": {"v": A}}),
    ]
    [(index, field, message)] = errors_of(items)
    assert (index, field) == (2, "$.actions[2].option.target_ids.v")
    assert "loop" in message
    assert "sleep" in message


def test_a_next_id_loop_without_a_waiting_step_is_refused() -> None:
    items = [Action(type="answer", id=A), Action(type="recording_stop", next_id=A)]
    assert errors_of(items)[0][:2] == (1, "$.actions[1].next_id")


def test_a_loop_through_a_waiting_step_is_accepted() -> None:
    items = [
        Action(type="talk", id=A, option={"text": "press 1"}),
        Action(type="digits_receive", option={"duration": 3000, "length": 1}),
        Action(type="condition_call_digits", option={"length": 1, "false_target_id": A}),
    ]
    compile_actions(items)


def test_a_goto_loop_is_bounded_by_its_loop_count_and_accepted() -> None:
    items = [
        Action(type="webhook_send", id=A, option={"uri": "https://x"}),
        Action(type="goto", option={"target_id": A, "loop_count": 3}),
    ]
    compile_actions(items)


def test_a_talk_in_a_language_without_a_voice_is_refused() -> None:
    def has_voice(language: str, gender: str) -> bool:
        return language == "en-US"

    items = actions(("talk", {"text": "a"}), ("talk", {"text": "b", "language": "xx-YY"}))
    [(index, field, message)] = errors_of(items, has_voice=has_voice)
    assert (index, field) == (1, "$.actions[1].option.language")
    assert "xx-YY" in message


def test_call_only_types_are_named_for_a_flow_campaign() -> None:
    items = actions(("webhook_send", VALID["webhook_send"]), ("talk", {"text": "x"}))
    assert [(e.index, e.field) for e in call_only(items)] == [(1, "$.actions[1].type")]
    assert "talk" in CALL_ONLY_TYPES
    assert "webhook_send" not in CALL_ONLY_TYPES


def test_needs_and_missing_name_what_the_host_cannot_run() -> None:
    program = compile_actions(
        actions(
            ("email_send", VALID["email_send"]),
            ("message_send", VALID["message_send"]),
            ("dnc_add", {}),
        )
    )
    assert needs(program, "flow") == {Capability.EMAIL, Capability.MESSAGE, Capability.DNC}
    host = frozenset({Capability.CALL_MEDIA, Capability.WEBHOOK, Capability.DNC})
    lacking = missing(program, "flow", host)
    assert [(e.index, e.field) for e in lacking] == [
        (0, "$.actions[0].type"),
        (1, "$.actions[1].type"),
    ]
    assert "email" in lacking[0].message
    assert needs(compile_actions([]), "call") == {Capability.CALL_MEDIA}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from([A, B]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELD_NAMES = st.sampled_from(
    ["text", "duration", "target_id", "target_ids", "false_target_id", "length", "key", "uri",
     "destinations", "stream_urls", "loop_count", "async", "variable", "value", "bogus"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(OPTION_TYPES)),
            st.sampled_from([NIL_UUID, A, B]),
            st.sampled_from([NIL_UUID, A, B, C]),
            st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=4),
        ),
        max_size=5,
    )
)
def test_any_actions_compile_or_are_refused_with_named_errors(
    items: list[tuple[str, str, str, dict[str, Any]]],
) -> None:
    actions = [Action(type=t, id=i, next_id=n, option=o) for t, i, n, o in items]
    try:
        program = compile_actions(actions)
    except ActionsInvalid as exc:
        errors = exc.errors
    else:
        assert len(program.steps) == len(actions)
        return
    assert errors
    for error in errors:
        assert error.field.startswith(f"$.actions[{error.index}]")
        assert error.message
