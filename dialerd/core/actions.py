"""A campaign's actions, checked and compiled into a program the flow interpreter runs.

Each supported action type has a frozen option struct with VoIPbin's field names and
defaults; ``compile_actions`` checks every action's option against it, resolves
``id``/``next_id`` and the jump targets of ``goto``, ``branch`` and
``condition_call_digits`` to indexes, and refuses a graph that could loop without
waiting (behaviour.md, "Actions"). Pure: msgspec and the standard library only.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Final, Literal

import msgspec

from dialerd.model import NIL_UUID, Action, Address, CampaignType

# Longest accepted values (characters; lists: items). An option is also at most
# MAX_OPTION_BYTES as JSON (dialerd.model), which bounds them all together.
MAX_TEXT: Final = 4096
MAX_URL: Final = 2048
MAX_LIST: Final = 16
MAX_VARIABLE_NAME: Final = 255
MAX_LOOP_COUNT: Final = 100
MAX_DURATION_MS: Final = 600_000  # ten minutes: a prompt, a pause, a wait for digits
MAX_DIGITS: Final = 100

UUID_PATTERN: Final = (
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# The variable received digits are kept in (VoIPbin's name): what ``branch`` reads by
# default and what ``condition_call_digits`` checks.
DIGITS_VARIABLE: Final = "voipbin.call.digits"
# Where ``amd`` leaves its result (human, machine, notsure), for a ``branch`` to read.
AMD_VARIABLE: Final = "amd.result"

Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
RequiredText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL, pattern="^https?://")]
MediaUrl = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_URL, pattern="^(https?://|sound:)")
]
ActionId = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN)]
OptionalActionId = Annotated[
    str, msgspec.Meta(pattern=f"^(?:{UUID_PATTERN[1:-1]})?$", description='A UUID or ""')
]
DurationMs = Annotated[int, msgspec.Meta(ge=1, le=MAX_DURATION_MS)]
Seconds = Annotated[int, msgspec.Meta(ge=0, le=86_400)]
DtmfKeys = Annotated[str, msgspec.Meta(max_length=MAX_DIGITS, pattern="^[0-9A-D#*]*$")]
VariableName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_VARIABLE_NAME, pattern=r"^[A-Za-z0-9_.\-]+$")
]
Language = Annotated[str, msgspec.Meta(pattern="^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
BranchValue = Annotated[str, msgspec.Meta(max_length=MAX_DIGITS)]
Addresses = Annotated[list[Address], msgspec.Meta(min_length=1, max_length=MAX_LIST)]


class Option(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the option structs: frozen, keyword-only, unknown fields refused."""


class AnswerOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``answer``: answer the call (an outbound call is answered already)."""


class TalkOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``talk``: speak ``text`` with a text-to-speech voice."""

    text: RequiredText
    language: Language = "en-US"
    gender: Literal["", "male", "female", "neutral"] = ""
    # "next": a digit pressed during the prompt stops it and the flow goes on.
    digits_handle: Literal["", "next"] = ""
    async_: bool = msgspec.field(default=False, name="async")


class PlayOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``play``: play media (``http(s)://`` URLs, or ``sound:`` files of the PBX)."""

    stream_urls: Annotated[list[MediaUrl], msgspec.Meta(min_length=1, max_length=MAX_LIST)]


class BeepOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``beep``: play a beep."""


class SleepOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``sleep``: wait ``duration`` milliseconds."""

    duration: DurationMs


class DigitsSendOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``digits_send``: send DTMF ``digits`` to the callee."""

    digits: Annotated[
        str, msgspec.Meta(min_length=1, max_length=MAX_DIGITS, pattern="^[0-9A-D#*]+$")
    ]
    duration: Annotated[int, msgspec.Meta(ge=100, le=1000)] = 250
    interval: Annotated[int, msgspec.Meta(ge=0, le=5000)] = 100


class DigitsReceiveOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``digits_receive``: collect digits for ``duration`` ms, until ``length`` digits or
    one of the ``key`` digits (not kept) arrives."""

    duration: DurationMs
    key: DtmfKeys = ""
    length: Annotated[int, msgspec.Meta(ge=0, le=MAX_DIGITS)] = 0


class ConditionCallDigitsOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``condition_call_digits``: go on when the digits received so far have ``length``
    digits or contain ``key``; otherwise jump to ``false_target_id``."""

    length: Annotated[int, msgspec.Meta(ge=0, le=MAX_DIGITS)] = 0
    key: DtmfKeys = ""
    false_target_id: ActionId

    def __post_init__(self) -> None:
        if self.length == 0 and not self.key:
            raise ValueError("length: set length or key, or the condition never holds")


class BranchOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``branch``: jump to ``target_ids[value of variable]``, else ``default_target_id``
    (else the next action); the variable is emptied."""

    variable: Annotated[str, msgspec.Meta(max_length=MAX_VARIABLE_NAME)] = ""
    default_target_id: OptionalActionId = ""
    target_ids: Annotated[dict[BranchValue, ActionId], msgspec.Meta(min_length=1, max_length=64)]

    @property
    def read(self) -> str:
        """The variable the branch reads (VoIPbin's default: the received digits)."""
        return self.variable or DIGITS_VARIABLE


class GotoOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``goto``: jump to ``target_id`` ``loop_count`` times, then go on."""

    target_id: ActionId
    loop_count: Annotated[int, msgspec.Meta(ge=0, le=MAX_LOOP_COUNT)] = 0


class AmdOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``amd``: detect an answering machine; ``hangup`` ends the call on a machine."""

    machine_handle: Literal["hangup", "continue"] = "hangup"
    async_: bool = msgspec.field(default=False, name="async")

    def __post_init__(self) -> None:
        if self.async_:
            raise ValueError("async: must be false: the flow waits for the detection")


class QueueJoinOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``queue_join``: join a queue; none (the default) means the campaign's queue."""

    queue_id: OptionalActionId = ""


class ConnectOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``connect``: dial ``destinations`` and bridge the first to answer with the call."""

    source: Address = msgspec.field(default_factory=Address)
    destinations: Addresses
    early_media: bool = False
    relay_reason: bool = False


class RecordingStartOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``recording_start``: record the call."""

    format: Literal["wav", "mp3", "ogg"] = "wav"
    end_of_silence: Seconds = 0
    end_of_key: Literal["", "none", "any", "*", "#"] = ""
    duration: Seconds = 0
    beep_start: bool = False


class RecordingStopOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``recording_stop``: stop recording."""


class VariableSetOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``variable_set``: set variable ``key`` to ``value`` (``${name}`` rendered)."""

    key: VariableName
    value: Text = ""


class WebhookSendOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``webhook_send``: send ``data`` to ``uri``; ``sync`` waits for the answer."""

    uri: Url
    method: Literal["POST", "GET", "PUT", "DELETE"] = "POST"
    data_type: Annotated[str, msgspec.Meta(max_length=255)] = "application/json"
    data: Annotated[str, msgspec.Meta(max_length=8192)] = ""
    sync: bool = False


class EmailSendOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``email_send``: send an email to ``destinations`` (addresses of type ``email``)."""

    destinations: Addresses
    subject: Annotated[str, msgspec.Meta(max_length=998)] = ""
    content: Annotated[str, msgspec.Meta(max_length=8192)] = ""


class MessageSendOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``message_send``: send a text message."""

    source: Address = msgspec.field(default_factory=Address)
    destinations: Addresses
    text: RequiredText


class HangupOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``hangup``: hang up the call."""

    reason: Literal["", "normal", "busy"] = ""


class StopOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``stop``: end the flow."""


class DncAddOption(Option, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``dnc_add`` (dialerd's extension): put the callee's number on the customer's
    do-not-call list, with ``detail``."""

    detail: Annotated[str, msgspec.Meta(max_length=2048)] = ""


OPTION_TYPES: Final[Mapping[str, type[Option]]] = {
    "answer": AnswerOption,
    "talk": TalkOption,
    "play": PlayOption,
    "beep": BeepOption,
    "sleep": SleepOption,
    "digits_send": DigitsSendOption,
    "digits_receive": DigitsReceiveOption,
    "condition_call_digits": ConditionCallDigitsOption,
    "branch": BranchOption,
    "goto": GotoOption,
    "amd": AmdOption,
    "queue_join": QueueJoinOption,
    "connect": ConnectOption,
    "recording_start": RecordingStartOption,
    "recording_stop": RecordingStopOption,
    "variable_set": VariableSetOption,
    "webhook_send": WebhookSendOption,
    "email_send": EmailSendOption,
    "message_send": MessageSendOption,
    "hangup": HangupOption,
    "stop": StopOption,
    "dnc_add": DncAddOption,
}

# The steps the interpreter runs itself; every other step goes to an executor.
CONTROL_TYPES: Final = frozenset(
    {"goto", "branch", "condition_call_digits", "variable_set", "stop"}
)
# Steps that take time on the call (a prompt, a pause, a wait): a loop must hold one.
WAITING_TYPES: Final = frozenset(
    {
        "talk",
        "play",
        "beep",
        "sleep",
        "digits_send",
        "digits_receive",
        "amd",
        "queue_join",
        "connect",
    }
)


class Capability(enum.StrEnum):
    """What a host must be able to do to run a step."""

    CALL_MEDIA = "call_media"  # a real call: prompts, digits, AMD, queue, bridge, recording
    WEBHOOK = "webhook"
    EMAIL = "email"
    MESSAGE = "message"
    DNC = "dnc"


# What every host can do (telephony's media, HTTP out, its own do-not-call list).
BASE_CAPABILITIES: Final = frozenset({Capability.CALL_MEDIA, Capability.WEBHOOK, Capability.DNC})

_CALL_MEDIA: Final = frozenset(
    {
        "answer",
        "talk",
        "play",
        "beep",
        "digits_send",
        "digits_receive",
        "amd",
        "queue_join",
        "connect",
        "recording_start",
        "recording_stop",
        "hangup",
    }
)
# The types a ``flow`` campaign (no call) cannot run.
CALL_ONLY_TYPES: Final = _CALL_MEDIA
NEEDS: Final[Mapping[str, Capability]] = {
    **dict.fromkeys(_CALL_MEDIA, Capability.CALL_MEDIA),
    "webhook_send": Capability.WEBHOOK,
    "email_send": Capability.EMAIL,
    "message_send": Capability.MESSAGE,
    "dnc_add": Capability.DNC,
}


class ActionError(msgspec.Struct, frozen=True):
    """What is wrong with one action: its index, the JSON path of the field, why."""

    index: int
    field: str
    message: str


class ActionsInvalid(ValueError):
    """The actions cannot be run; ``errors`` says which and why (the first in ``str()``)."""

    def __init__(self, errors: Sequence[ActionError]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(f"{first.message} - at `{first.field}`")


class Step(msgspec.Struct, frozen=True):
    """One compiled action: ``next_index`` is where control goes when it finishes
    normally (``next_id``'s action, else the following one; None ends the flow)."""

    index: int
    id: str
    type: str
    option: Option
    next_index: int | None


class Program(msgspec.Struct, frozen=True):
    """A campaign's compiled actions."""

    steps: tuple[Step, ...]

    @property
    def empty(self) -> bool:
        return not self.steps

    def index_of(self, action_id: str) -> int:
        """The index of the action whose ``id`` is ``action_id`` (compiled: it exists)."""
        wanted = action_id.lower()
        for step in self.steps:
            if step.id == wanted:
                return step.index
        raise KeyError(action_id)


def path(index: int, *fields: str) -> str:
    """The JSON path of an action's field: ``$.actions[2].option.text``."""
    return "".join((f"$.actions[{index}]", *(f".{name}" for name in fields)))


_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<where>[^`]*)`$", re.DOTALL)
_NAMED = re.compile(r"field `(?P<name>[^`]+)`")
_LEADING = re.compile(r"^(?P<name>[a-z_]+): (?P<message>.*)$", re.DOTALL)


def _option_error(index: int, error: msgspec.ValidationError) -> ActionError:
    """Rewrite msgspec's error (paths from the option's root) to name the action's field."""
    text = str(error)
    where = ""
    if located := _AT.match(text):
        text, where = located["message"], located["where"]
    if (named := _NAMED.search(text)) and not where:
        where = f".{named['name']}"
    elif leading := _LEADING.match(text):
        where, text = f"{where}.{leading['name']}", leading["message"]
    return ActionError(index, path(index, "option") + where, text)


def _option(index: int, action: Action) -> Option | ActionError:
    kind = OPTION_TYPES.get(action.type)
    if kind is None:
        supported = ", ".join(OPTION_TYPES)
        return ActionError(
            index, path(index, "type"), f"dialerd cannot run {action.type!r}; it runs {supported}"
        )
    try:
        return msgspec.convert(action.option, kind)
    except msgspec.ValidationError as exc:
        return _option_error(index, exc)


def _jumps(option: Option) -> Iterator[tuple[str, str]]:
    """The action ids an option names, with the option field naming each."""
    if isinstance(option, GotoOption):
        yield "target_id", option.target_id
    elif isinstance(option, ConditionCallDigitsOption):
        yield "false_target_id", option.false_target_id
    elif isinstance(option, BranchOption):
        if option.default_target_id:
            yield "default_target_id", option.default_target_id
        for value, target in option.target_ids.items():
            yield f"target_ids.{value}", target


def _check_ids(actions: Sequence[Action], options: Sequence[Option]) -> list[ActionError]:
    errors: list[ActionError] = []
    seen: dict[str, int] = {}
    for index, action in enumerate(actions):
        own = action.id.lower()
        if own == NIL_UUID:
            continue
        if own in seen:
            errors.append(
                ActionError(index, path(index, "id"), f"the same id as action {seen[own]}")
            )
        seen.setdefault(own, index)
    for index, (action, option) in enumerate(zip(actions, options, strict=True)):
        named = [("next_id", action.next_id)] if action.next_id.lower() != NIL_UUID else []
        for field, target in [*named, *((f"option.{f}", t) for f, t in _jumps(option))]:
            if target.lower() not in seen:
                errors.append(
                    ActionError(index, f"{path(index)}.{field}", f"no action has id {target!r}")
                )
    return errors


def _unbounded_edges(program: Program, step: Step) -> Iterator[tuple[int, str]]:
    """Where control may go after ``step`` without a bound (a goto's jump is bounded by
    its ``loop_count``), with the field that sends it there."""
    option = step.option
    if step.type in ("stop", "hangup"):
        return
    if isinstance(option, BranchOption):
        for field, target in _jumps(option):
            yield program.index_of(target), f"option.{field}"
        if option.default_target_id:
            return
    elif isinstance(option, ConditionCallDigitsOption):
        yield program.index_of(option.false_target_id), "option.false_target_id"
    if step.next_index is not None:
        yield step.next_index, "next_id"


def _loop_without_wait(program: Program) -> ActionError | None:
    """A cycle of steps none of which waits (it would spin until the step budget)."""
    busy = [step.type not in WAITING_TYPES for step in program.steps]
    state = [0] * len(program.steps)  # 0 unseen, 1 on the current path, 2 done
    for root in range(len(program.steps)):
        if state[root] or not busy[root]:
            continue
        stack: list[tuple[int, Iterator[tuple[int, str]]]] = []
        state[root] = 1
        stack.append((root, _unbounded_edges(program, program.steps[root])))
        while stack:
            at, edges = stack[-1]
            for target, field in edges:
                if not busy[target]:
                    continue
                if state[target] == 1:
                    return ActionError(
                        at,
                        path(at, *field.split(".", 1)) if "." in field else path(at, field),
                        f"goes back to action {target} in a loop with no step that waits "
                        f"({', '.join(sorted(WAITING_TYPES))})",
                    )
                if state[target] == 0:
                    state[target] = 1
                    stack.append((target, _unbounded_edges(program, program.steps[target])))
                    break
            else:
                state[at] = 2
                stack.pop()
    return None


def compile_actions(
    actions: Sequence[Action], *, has_voice: Callable[[str, str], bool] | None = None
) -> Program:
    """Check ``actions`` and compile them; raise ``ActionsInvalid`` naming each problem.

    ``has_voice(language, gender)`` (when given) says whether text to speech can speak a
    ``talk``'s language with that gender ("" for any).
    """
    errors: list[ActionError] = []
    options: list[Option] = []
    for index, action in enumerate(actions):
        option = _option(index, action)
        if isinstance(option, ActionError):
            errors.append(option)
            continue
        options.append(option)
        if (
            isinstance(option, TalkOption)
            and has_voice
            and not has_voice(option.language, option.gender)
        ):
            voice = f"{option.language} {option.gender}".strip()
            errors.append(
                ActionError(
                    index, path(index, "option", "language"), f"no text-to-speech voice for {voice}"
                )
            )
    if errors:
        raise ActionsInvalid(errors)
    errors = _check_ids(actions, options)
    if errors:
        raise ActionsInvalid(errors)
    index_of = {a.id.lower(): i for i, a in enumerate(actions) if a.id.lower() != NIL_UUID}
    steps = []
    for index, (action, option) in enumerate(zip(actions, options, strict=True)):
        if action.next_id.lower() != NIL_UUID:
            next_index: int | None = index_of[action.next_id.lower()]
        else:
            next_index = index + 1 if index + 1 < len(actions) else None
        steps.append(Step(index, action.id.lower(), action.type, option, next_index))
    program = Program(tuple(steps))
    if looping := _loop_without_wait(program):
        raise ActionsInvalid([looping])
    return program


def call_only(actions: Sequence[Action]) -> list[ActionError]:
    """The actions a ``flow`` campaign (no call) cannot run, one error each."""
    return [
        ActionError(
            index, path(index, "type"), f"{action.type!r} needs a call; a flow campaign has none"
        )
        for index, action in enumerate(actions)
        if action.type in CALL_ONLY_TYPES
    ]


def needs(program: Program, campaign_type: CampaignType | str) -> frozenset[Capability]:
    """What a host must be able to do to run ``program`` for a campaign of that type."""
    wanted = {NEEDS[step.type] for step in program.steps if step.type in NEEDS}
    if CampaignType(campaign_type) is CampaignType.CALL:
        wanted.add(Capability.CALL_MEDIA)
    return frozenset(wanted)


def missing(
    program: Program, campaign_type: CampaignType | str, capabilities: frozenset[Capability]
) -> list[ActionError]:
    """One error per step this host cannot run (a 409 at ``run``)."""
    lacking = needs(program, campaign_type) - capabilities
    return [
        ActionError(
            step.index,
            path(step.index, "type"),
            f"{step.type!r} needs {NEEDS[step.type].value}, which this host is not configured for",
        )
        for step in program.steps
        if NEEDS.get(step.type) in lacking
    ]


def option_json(option: Option) -> dict[str, Any]:
    """An option in its JSON form (VoIPbin's field names)."""
    encoded: dict[str, Any] = msgspec.to_builtins(option)
    return encoded
