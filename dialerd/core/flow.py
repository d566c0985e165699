"""The flow interpreter: given a program and what happened to the last step, what next.

Pure: no I/O, no clock. An executor (the Asterisk adapter, the flow runner, the sim)
calls ``start`` once, runs each ``Execute`` it is given, reports its ``Outcome`` to
``advance``, and stops at ``Finish``. The interpreter runs the control steps itself
(``goto``, ``branch``, ``condition_call_digits``, ``variable_set``, ``stop``) and counts
every step, so no flow outlives ``STEP_BUDGET`` steps (behaviour.md, "Actions").
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec

from dialerd.core.actions import (
    AMD_VARIABLE,
    DIGITS_VARIABLE,
    AmdOption,
    BranchOption,
    ConditionCallDigitsOption,
    DncAddOption,
    EmailSendOption,
    GotoOption,
    MessageSendOption,
    Option,
    Program,
    Step,
    TalkOption,
    VariableSetOption,
    WebhookSendOption,
)
from dialerd.model import Action, Campaign, Campaigncall, OutdialTarget

# Steps per flow, control steps included. A menu repeated a few times takes tens.
STEP_BUDGET: Final = 1000


class FlowEnd(enum.StrEnum):
    """How a flow ended."""

    COMPLETED = "completed"  # ran off the end of its actions
    HANGUP = "hangup"  # a hangup action
    STOP = "stop"  # a stop action
    MACHINE = "machine"  # amd found a machine, machine_handle hangup
    CALLEE_HANGUP = "callee_hangup"
    FAILED = "failed"  # a step failed (a sync webhook answered other than 2xx)
    BUDGET = "budget"  # STEP_BUDGET steps taken


class FlowState(msgspec.Struct, frozen=True):
    """Where a flow is: the step running (None: ended), steps taken, variables, and how
    often each ``goto`` (by index) has jumped."""

    at: int | None
    steps_taken: int
    variables: dict[str, str]
    loops: dict[int, int]


class StepDone(msgspec.Struct, frozen=True):
    """The step finished normally."""


class DigitsReceived(msgspec.Struct, frozen=True):
    """``digits_receive`` (or a ``talk`` with ``digits_handle`` next) got ``digits``."""

    digits: str


class AmdDetected(msgspec.Struct, frozen=True):
    """``amd`` decided: ``human``, ``machine`` or ``notsure``."""

    result: str


class HttpAnswered(msgspec.Struct, frozen=True):
    """``webhook_send`` got an answer with this status."""

    status: int


class StepFailed(msgspec.Struct, frozen=True):
    """The executor could not do the step; ``reason`` says why."""

    reason: str


class CalleeHungUp(msgspec.Struct, frozen=True):
    """The callee hung up while the step ran."""


Outcome = StepDone | DigitsReceived | AmdDetected | HttpAnswered | StepFailed | CalleeHungUp


class Execute(msgspec.Struct, frozen=True):
    """Run ``step`` (its option rendered with ``variables``) and report its outcome.

    ``chosen``: the values the ``branch`` steps run since the last instruction matched
    (a ``target_ids`` key, or ``other``), for the digits-chosen metric."""

    step: Step
    variables: dict[str, str]
    chosen: tuple[str, ...] = ()


class Finish(msgspec.Struct, frozen=True):
    """The flow is over (the executor hangs up a call that is still up)."""

    end: FlowEnd
    detail: str = ""
    chosen: tuple[str, ...] = ()


Instruction = Execute | Finish

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
# The option fields rendered with the variables before a step is executed.
_RENDERED: Final[Mapping[type[Option], tuple[str, ...]]] = {
    TalkOption: ("text",),
    WebhookSendOption: ("uri", "data"),
    EmailSendOption: ("subject", "content"),
    MessageSendOption: ("text",),
    DncAddOption: ("detail",),
}


def render(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with each ``${name}`` replaced by the variable's value ("" if unknown)."""
    return _VARIABLE.sub(lambda found: variables.get(found[1], ""), text)


def _rendered(step: Step, variables: Mapping[str, str]) -> Step:
    fields = _RENDERED.get(type(step.option))
    if not fields:
        return step
    changes = {name: render(getattr(step.option, name), variables) for name in fields}
    return msgspec.structs.replace(step, option=msgspec.structs.replace(step.option, **changes))


# The names a campaign's actions read from the target itself (a store read per call).
_TARGET_READS: Final = ("${target.name}", "${target.data")


def reads_target(actions: Sequence[Action]) -> bool:
    """Whether the actions refer to the target's name or data (not kept on the call)."""
    encoded = msgspec.json.encode([action.option for action in actions]).decode()
    return any(name in encoded for name in _TARGET_READS)


def call_variables(
    campaign: Campaign, campaigncall: Campaigncall, target: OutdialTarget | None
) -> dict[str, str]:
    """The variables dialerd sets for one attempt (``Origination.variables``).

    The target's ``data``, when it is a JSON object, gives ``target.data.<key>`` per key
    (strings as they are, other values JSON-encoded); ``target.data`` is the text as stored.
    """
    variables = {
        "campaign.id": campaign.id,
        "campaign.name": campaign.name,
        "campaigncall.id": campaigncall.id,
        "customer.id": campaign.customer_id,
        "target.id": campaigncall.outdial_target_id,
        "target.destination": campaigncall.destination.target,
    }
    if target is None:
        return variables
    variables["target.name"] = target.name
    variables["target.data"] = target.data
    try:
        data = msgspec.json.decode(target.data) if target.data else None
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict):
        for key, value in data.items():
            text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
            variables[f"target.data.{key}"] = text
    return variables


def start(program: Program, variables: Mapping[str, str]) -> tuple[FlowState, Instruction]:
    """Begin a flow with the variables dialerd sets (``Origination.variables``)."""
    state = FlowState(
        at=0 if program.steps else None, steps_taken=0, variables=dict(variables), loops={}
    )
    return _run(program, state)


def advance(program: Program, state: FlowState, outcome: Outcome) -> tuple[FlowState, Instruction]:
    """Go on from the step now running, given what happened to it."""
    if state.at is None:
        raise ValueError("the flow has ended")
    step = program.steps[state.at]
    ended = msgspec.structs.replace(state, at=None)
    match outcome:
        case CalleeHungUp():
            return ended, Finish(FlowEnd.CALLEE_HANGUP)
        case StepFailed(reason=reason):
            return ended, Finish(FlowEnd.FAILED, f"{step.type} (action {step.index}): {reason}")
        case HttpAnswered(status=status) if not 200 <= status < 300:
            if isinstance(step.option, WebhookSendOption) and step.option.sync:
                return ended, Finish(
                    FlowEnd.FAILED, f"webhook_send (action {step.index}): HTTP {status}"
                )
        case AmdDetected(result=result):
            state = _set(state, AMD_VARIABLE, result)
            hangs_up = isinstance(step.option, AmdOption) and step.option.machine_handle == "hangup"
            if result == "machine" and hangs_up:
                return msgspec.structs.replace(state, at=None), Finish(FlowEnd.MACHINE)
        case DigitsReceived(digits=digits):
            state = _set(state, DIGITS_VARIABLE, state.variables.get(DIGITS_VARIABLE, "") + digits)
    if step.type == "hangup":
        return msgspec.structs.replace(state, at=None), Finish(FlowEnd.HANGUP)
    return _run(program, msgspec.structs.replace(state, at=step.next_index))


def _set(state: FlowState, name: str, value: str) -> FlowState:
    return msgspec.structs.replace(state, variables={**state.variables, name: value})


def _run(program: Program, state: FlowState) -> tuple[FlowState, Instruction]:
    """Run control steps from ``state.at`` until a step for the executor, or the end."""
    chosen: list[str] = []
    while True:
        if state.at is None:
            return state, Finish(FlowEnd.COMPLETED, chosen=tuple(chosen))
        if state.steps_taken >= STEP_BUDGET:
            detail = f"{STEP_BUDGET} steps taken"
            return msgspec.structs.replace(state, at=None), Finish(
                FlowEnd.BUDGET, detail, tuple(chosen)
            )
        step = program.steps[state.at]
        state = msgspec.structs.replace(state, steps_taken=state.steps_taken + 1)
        option = step.option
        goes_to = step.next_index
        if isinstance(option, GotoOption):
            taken = state.loops.get(step.index, 0)
            if taken < option.loop_count:
                state = msgspec.structs.replace(state, loops={**state.loops, step.index: taken + 1})
                goes_to = program.index_of(option.target_id)
        elif isinstance(option, BranchOption):
            value = state.variables.get(option.read, "")
            state = _set(state, option.read, "")
            target = option.target_ids.get(value) or option.default_target_id
            chosen.append(value if value in option.target_ids else "other")
            if target:
                goes_to = program.index_of(target)
        elif isinstance(option, ConditionCallDigitsOption):
            digits = state.variables.get(DIGITS_VARIABLE, "")
            held = (option.length and len(digits) >= option.length) or (
                option.key and option.key in digits
            )
            if not held:
                goes_to = program.index_of(option.false_target_id)
        elif isinstance(option, VariableSetOption):
            state = _set(state, option.key, render(option.value, state.variables))
        elif step.type == "stop":
            return msgspec.structs.replace(state, at=None), Finish(
                FlowEnd.STOP, chosen=tuple(chosen)
            )
        else:
            instruction = Execute(
                _rendered(step, state.variables), dict(state.variables), tuple(chosen)
            )
            return state, instruction
        state = msgspec.structs.replace(state, at=goes_to)


def outcome_label(outcome: Outcome) -> str:
    """The outcome as the actions-run metric labels it."""
    match outcome:
        case StepDone() | DigitsReceived():
            return "done"
        case AmdDetected(result=result):
            return result if result in ("human", "machine", "notsure") else "notsure"
        case HttpAnswered(status=status):
            return "done" if 200 <= status < 300 else "failed"
        case StepFailed():
            return "failed"
        case CalleeHungUp():
            return "callee_hangup"
