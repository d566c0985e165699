"""The flow interpreter (``dialerd.core.flow``): what runs next given what happened."""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dialerd.core.actions import (
    ActionsInvalid,
    Program,
    TalkOption,
    WebhookSendOption,
    compile_actions,
)
from dialerd.core.flow import (
    STEP_BUDGET,
    AmdDetected,
    CalleeHungUp,
    DigitsReceived,
    Execute,
    Finish,
    FlowEnd,
    FlowState,
    HttpAnswered,
    Instruction,
    Outcome,
    StepDone,
    StepFailed,
    advance,
    reads_target,
    render,
    start,
)
from dialerd.model import NIL_UUID, Action

MENU = "aaaaaaaa-0000-4000-8000-000000000001"
AGENT = "bbbbbbbb-0000-4000-8000-000000000002"
OPT_OUT = "cccccccc-0000-4000-8000-000000000003"
BYE = "dddddddd-0000-4000-8000-000000000004"


def act(kind: str, option: dict[str, Any] | None = None, **ids: str) -> Action:
    return Action(type=kind, option=option or {}, **ids)


# "press 1 for an agent, 9 to be put on our do-not-call list", asked three times at most.
IVR = compile_actions(
    [
        act(
            "talk",
            {"text": "Hello ${target.name}. Press 1 or 9.", "digits_handle": "next"},
            id=MENU,
        ),
        act("digits_receive", {"duration": 5000, "length": 1}),
        act("branch", {"target_ids": {"1": AGENT, "9": OPT_OUT}}),
        act("goto", {"target_id": MENU, "loop_count": 2}),
        act("hangup", id=BYE),
        act("queue_join", id=AGENT),
        act("hangup"),
        act("dnc_add", {"detail": "opt-out in ${campaign.name}"}, id=OPT_OUT),
        act("talk", {"text": "You will not be called again."}, next_id=BYE),
    ]
)


def run(
    program: Program, outcomes: list[Outcome], variables: dict[str, str] | None = None
) -> tuple[list[str], Instruction, FlowState]:
    """Run a flow, answering each Execute with the next outcome (StepDone once spent)."""
    state, instruction = start(program, variables or {})
    ran: list[str] = []
    replies = iter(outcomes)
    while isinstance(instruction, Execute):
        ran.append(instruction.step.type)
        state, instruction = advance(program, state, next(replies, StepDone()))
    return ran, instruction, state


def test_an_empty_program_finishes_at_once_as_completed() -> None:
    state, instruction = start(compile_actions([]), {})
    assert instruction == Finish(FlowEnd.COMPLETED)
    assert state.at is None


def test_actions_run_in_order_and_the_flow_completes_off_the_end() -> None:
    program = compile_actions([act("answer"), act("beep"), act("sleep", {"duration": 10})])
    ran, end, state = run(program, [])
    assert ran == ["answer", "beep", "sleep"]
    assert end == Finish(FlowEnd.COMPLETED)
    assert state.steps_taken == 3


def test_pressing_1_goes_to_the_queue() -> None:
    ran, end, _ = run(IVR, [StepDone(), DigitsReceived("1")])
    assert ran == ["talk", "digits_receive", "queue_join", "hangup"]
    assert end.end is FlowEnd.HANGUP if isinstance(end, Finish) else False


def test_pressing_9_during_the_prompt_opts_out_and_hangs_up() -> None:
    state, instruction = start(IVR, {"campaign.name": "Spring"})
    state, instruction = advance(IVR, state, DigitsReceived("9"))  # talk, digits_handle next
    assert isinstance(instruction, Execute)
    assert instruction.step.type == "digits_receive"
    state, instruction = advance(IVR, state, DigitsReceived(""))
    assert isinstance(instruction, Execute)
    assert instruction.step.type == "dnc_add"
    assert instruction.step.option == type(instruction.step.option)(detail="opt-out in Spring")
    assert instruction.chosen == ("9",)
    ran, end, _ = run(IVR, [DigitsReceived("9"), DigitsReceived("")])
    assert ran == ["talk", "digits_receive", "dnc_add", "talk", "hangup"]
    assert isinstance(end, Finish)
    assert end.end is FlowEnd.HANGUP


def test_no_choice_repeats_the_menu_loop_count_times_then_goes_on() -> None:
    ran, end, state = run(IVR, [StepDone()] * 20)
    assert ran == ["talk", "digits_receive"] * 3 + ["hangup"]
    assert isinstance(end, Finish)
    assert end.end is FlowEnd.HANGUP
    assert state.loops == {3: 2}


def test_a_branch_empties_the_digits_it_read() -> None:
    state, _ = start(IVR, {})
    state, _ = advance(IVR, state, StepDone())
    state, instruction = advance(IVR, state, DigitsReceived("7"))
    assert isinstance(instruction, Execute)
    assert instruction.step.type == "talk"
    assert instruction.chosen == ("other",)
    assert state.variables["voipbin.call.digits"] == ""


def test_condition_call_digits_goes_on_or_jumps_to_its_false_target() -> None:
    program = compile_actions(
        [
            act("digits_receive", {"duration": 3000, "key": "#"}, id=MENU),
            act("condition_call_digits", {"length": 4, "false_target_id": MENU}),
            act("talk", {"text": "Thanks, ${voipbin.call.digits}"}),
        ]
    )
    ran, _end, _ = run(program, [DigitsReceived("12"), DigitsReceived("34")])
    assert ran == ["digits_receive", "digits_receive", "talk"]
    state, _ = start(program, {})
    state, _ = advance(program, state, DigitsReceived("12"))
    state, instruction = advance(program, state, DigitsReceived("345"))
    assert isinstance(instruction, Execute)
    assert isinstance(instruction.step.option, TalkOption)
    assert instruction.step.option.text == "Thanks, 12345"


def test_condition_call_digits_holds_when_the_key_was_pressed() -> None:
    program = compile_actions(
        [
            act("digits_receive", {"duration": 3000}, id=MENU),
            act("condition_call_digits", {"key": "#", "false_target_id": MENU}),
            act("stop"),
        ]
    )
    ran, end, _ = run(program, [DigitsReceived("1"), DigitsReceived("2#")])
    assert ran == ["digits_receive", "digits_receive"]
    assert end == Finish(FlowEnd.STOP)


def test_a_branch_without_match_or_default_goes_to_the_next_action() -> None:
    program = compile_actions(
        [
            act("variable_set", {"key": "lang", "value": "fr"}),
            act("branch", {"variable": "lang", "target_ids": {"en": BYE}}),
            act("talk", {"text": "Bonjour"}),
            act("stop", id=BYE),
        ]
    )
    ran, end, _ = run(program, [])
    assert ran == ["talk"]
    assert end == Finish(FlowEnd.STOP, chosen=())


def test_variable_set_renders_its_value_and_talk_reads_it() -> None:
    program = compile_actions(
        [
            act("variable_set", {"key": "who", "value": "${target.name} (${target.data.plan})"}),
            act("talk", {"text": "Hi ${who}, ${missing}bye"}),
        ]
    )
    _state, instruction = start(program, {"target.name": "Ann", "target.data.plan": "gold"})
    assert isinstance(instruction, Execute)
    assert isinstance(instruction.step.option, TalkOption)
    assert instruction.step.option.text == "Hi Ann (gold), bye"
    assert instruction.variables["who"] == "Ann (gold)"


def test_render_replaces_known_names_and_empties_unknown_ones() -> None:
    assert render("${a}-${b}-$c-${}", {"a": "1"}) == "1--$c-"


def test_amd_machine_with_hangup_ends_as_machine() -> None:
    program = compile_actions(
        [act("amd", {"machine_handle": "hangup"}), act("talk", {"text": "hi"})]
    )
    ran, end, state = run(program, [AmdDetected("machine")])
    assert ran == ["amd"]
    assert end == Finish(FlowEnd.MACHINE)
    assert state.variables["amd.result"] == "machine"


def test_amd_machine_with_continue_goes_on_to_leave_a_message() -> None:
    program = compile_actions(
        [act("amd", {"machine_handle": "continue"}), act("beep"), act("talk", {"text": "msg"})]
    )
    ran, end, _ = run(program, [AmdDetected("machine")])
    assert ran == ["amd", "beep", "talk"]
    assert end == Finish(FlowEnd.COMPLETED)


def test_a_callee_hangup_or_a_failure_ends_the_flow() -> None:
    ran, end, state = run(IVR, [CalleeHungUp()])
    assert ran == ["talk"]
    assert end == Finish(FlowEnd.CALLEE_HANGUP)
    assert state.at is None
    ran, end, _ = run(IVR, [StepFailed("no audio")])
    assert isinstance(end, Finish)
    assert end.end is FlowEnd.FAILED
    assert "no audio" in end.detail


def test_a_sync_webhook_answered_with_an_error_fails_the_flow_an_async_one_goes_on() -> None:
    sync = compile_actions([act("webhook_send", {"uri": "https://h/x", "sync": True}), act("stop")])
    assert run(sync, [HttpAnswered(500)])[1].end is FlowEnd.FAILED  # type: ignore[union-attr]
    assert run(sync, [HttpAnswered(204)])[1] == Finish(FlowEnd.STOP)
    nosync = compile_actions([act("webhook_send", {"uri": "https://h/x"}), act("stop")])
    assert run(nosync, [HttpAnswered(500)])[1] == Finish(FlowEnd.STOP)


def test_webhook_uri_and_data_are_rendered() -> None:
    program = compile_actions(
        [
            act(
                "webhook_send",
                {"uri": "https://h/${target.id}", "data": '{"n": "${target.destination}"}'},
            )
        ]
    )
    _, instruction = start(program, {"target.id": "t1", "target.destination": "+15551230001"})
    assert isinstance(instruction, Execute)
    option = instruction.step.option
    assert isinstance(option, WebhookSendOption)
    assert (option.uri, option.data) == ("https://h/t1", '{"n": "+15551230001"}')


def test_a_waiting_loop_ends_at_the_step_budget() -> None:
    program = compile_actions(
        [
            act("sleep", {"duration": 100}, id=MENU),
            act("goto", {"target_id": MENU, "loop_count": 100}),
            act("beep", next_id=MENU),
        ]
    )
    ran, end, state = run(program, [])
    assert isinstance(end, Finish)
    assert end.end is FlowEnd.BUDGET
    assert state.steps_taken == STEP_BUDGET
    assert len(ran) < STEP_BUDGET


def test_advancing_an_ended_flow_is_an_error() -> None:
    state, _ = start(compile_actions([]), {})
    try:
        advance(compile_actions([]), state, StepDone())
    except ValueError:
        return
    raise AssertionError("advance accepted an ended flow")


OUTCOMES = st.one_of(
    st.just(StepDone()),
    st.builds(DigitsReceived, st.sampled_from(["", "1", "9", "7", "#", "12"])),
    st.builds(AmdDetected, st.sampled_from(["human", "machine", "notsure"])),
    st.builds(HttpAnswered, st.sampled_from([200, 404, 500])),
)
PROGRAMS = st.sampled_from(
    [
        IVR,
        compile_actions(
            [
                act("digits_receive", {"duration": 1000, "length": 2}, id=MENU),
                act("condition_call_digits", {"length": 2, "false_target_id": MENU}),
                act("branch", {"target_ids": {"12": MENU}, "default_target_id": AGENT}),
                act("amd", {"machine_handle": "continue"}, id=AGENT, next_id=MENU),
            ]
        ),
        compile_actions(
            [
                act("webhook_send", {"uri": "https://h/x", "sync": True}, id=MENU),
                act("sleep", {"duration": 10}),
                act("goto", {"target_id": MENU, "loop_count": 5}),
                act("talk", {"text": "again"}, next_id=MENU),
            ]
        ),
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    PROGRAMS,
    st.lists(OUTCOMES, max_size=50),
    st.sampled_from([None, StepFailed("x"), CalleeHungUp()]),
)
def test_any_outcome_sequence_ends_within_the_budget(
    program: Program, outcomes: list[Outcome], last: Outcome | None
) -> None:
    state, instruction = start(program, {})
    replies = iter([*outcomes, *([last] if last else [])])
    executed = 0
    while isinstance(instruction, Execute):
        executed += 1
        assert executed <= STEP_BUDGET
        assert instruction.step.type not in (
            "goto",
            "branch",
            "condition_call_digits",
            "variable_set",
            "stop",
        )
        state, instruction = advance(program, state, next(replies, StepDone()))
    assert state.at is None
    assert state.steps_taken <= STEP_BUDGET


def test_reads_target_only_when_an_option_refers_to_the_targets_name_or_data() -> None:
    assert not reads_target([act("talk", {"text": "Hi ${target.destination}"})])
    assert reads_target([act("webhook_send", {"uri": "https://h", "data": "${target.data.id}"})])
    assert reads_target([act("talk", {"text": "Hi ${target.name}"})])


IDS = [f"{n:08d}-0000-4000-8000-000000000000" for n in range(6)]


def _generated_action(draw: st.DrawFn, index: int) -> Action:
    target = st.sampled_from(IDS)
    kind = draw(
        st.sampled_from(
            ["talk", "digits_receive", "branch", "goto", "condition_call_digits",
             "variable_set", "stop", "hangup", "amd", "webhook_send", "sleep"]
        )
    )  # fmt: skip
    option: dict[str, Any] = {
        "talk": lambda: {"text": "x", "digits_handle": draw(st.sampled_from(["", "next"]))},
        "digits_receive": lambda: {"duration": 1000, "length": 1},
        "branch": lambda: {"target_ids": {"1": draw(target), "9": draw(target)}},
        "goto": lambda: {"target_id": draw(target), "loop_count": draw(st.integers(0, 100))},
        "condition_call_digits": lambda: {"length": 1, "false_target_id": draw(target)},
        "variable_set": lambda: {"key": "voipbin.call.digits", "value": "1"},
        "stop": dict,
        "hangup": dict,
        "amd": lambda: {"machine_handle": draw(st.sampled_from(["hangup", "continue"]))},
        "webhook_send": lambda: {"uri": "https://h/x", "sync": draw(st.booleans())},
        "sleep": lambda: {"duration": 10},
    }[kind]()
    next_id = draw(st.sampled_from([NIL_UUID, NIL_UUID, *IDS]))
    return Action(type=kind, id=IDS[index], next_id=next_id, option=option)


@st.composite
def generated_programs(draw: st.DrawFn) -> Program:
    actions = [_generated_action(draw, index) for index in range(len(IDS))]
    try:
        return compile_actions(actions)
    except ActionsInvalid:
        assume(False)
        raise


@settings(max_examples=300, deadline=None)
@given(generated_programs(), st.lists(OUTCOMES, max_size=200))
def test_any_generated_program_ends_within_the_budget_whatever_happens(
    program: Program, outcomes: list[Outcome]
) -> None:
    state, instruction = start(program, {})
    replies = iter(outcomes)
    while isinstance(instruction, Execute):
        assert state.steps_taken <= STEP_BUDGET
        state, instruction = advance(program, state, next(replies, StepDone()))
    assert state.at is None
    assert state.steps_taken <= STEP_BUDGET
