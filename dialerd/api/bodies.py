"""Request bodies of the control API, decoded and validated by msgspec.

Unknown fields, wrong types, bad enum values, bad UUIDs, out-of-range numbers, strings
over their length limit and non-E.164 ``tel`` targets fail with a message naming the
field. Update bodies mark every field optional: a field absent from the body is left
unchanged. A reference id may be a UUID, ``null`` or ``""``; the last two mean "unset"
(the nil UUID), as in the reference API.
"""

from __future__ import annotations

import enum
import uuid
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, UnsetType

from dialerd.api import jsontext
from dialerd.core import hours
from dialerd.model import (
    DEFAULT_ABANDON_TARGET,
    MAX_ACTIONS,
    MAX_ADDRESS_TARGET,
    MAX_DATA,
    MAX_DETAIL,
    MAX_NAME,
    MAX_OPTION_BYTES,
    MAX_OPTION_ENTRIES,
    NIL_UUID,
    Action,
    Address,
    AddressType,
    Campaign,
    CampaignType,
    DncNumber,
    EndHandle,
    OutcomeRetry,
    PacingMode,
    check_e164,
    normalize_e164,
)

# Counts and milliseconds: never negative, and small enough for any store's integers.
Count = Annotated[int, msgspec.Meta(ge=0, le=2_147_483_647)]
# A predictive campaign's abandonment target: above 0, at most the legal 3 %.
AbandonTarget = Annotated[float, msgspec.Meta(gt=0.0, le=0.03)]
Milliseconds = Annotated[int, msgspec.Meta(ge=0, le=2_147_483_647)]
PositiveMilliseconds = Annotated[int, msgspec.Meta(ge=1, le=2_147_483_647)]
UUID_PATTERN: Final = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
REFERENCE_PATTERN: Final = f"^(?:{UUID_PATTERN})?$"
jsontext.PATTERN_NAMES[REFERENCE_PATTERN] = 'a UUID, "" or null'
# A reference id: a UUID, or "" / null for "unset" (stored as the nil UUID).
Reference = (
    Annotated[
        str,
        msgspec.Meta(
            pattern=REFERENCE_PATTERN,
            description='A UUID; "" or null for none (the nil UUID)',
        ),
    ]
    | None
)
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Detail = Annotated[str, msgspec.Meta(max_length=MAX_DETAIL)]
Data = Annotated[str, msgspec.Meta(max_length=MAX_DATA)]
AddressTarget = Annotated[str, msgspec.Meta(max_length=MAX_ADDRESS_TARGET)]
Option = Annotated[
    dict[str, Any],
    msgspec.Meta(
        max_length=MAX_OPTION_ENTRIES,
        description=f"The action's options; at most {MAX_OPTION_BYTES} bytes as JSON",
    ),
]

NIL: Final = uuid.UUID(NIL_UUID)


def reference(value: str | None) -> str:
    """A reference id as stored: lower case, the nil UUID when absent, null or ""."""
    return value.lower() if value else NIL_UUID


class ActionType(enum.StrEnum):
    """The flow action types dialerd runs (``dialerd.core.actions.OPTION_TYPES``): VoIPbin's,
    less those it has no backend for, plus ``dnc_add`` (an extension)."""

    AMD = "amd"
    ANSWER = "answer"
    BEEP = "beep"
    BRANCH = "branch"
    CONDITION_CALL_DIGITS = "condition_call_digits"
    CONNECT = "connect"
    DIGITS_RECEIVE = "digits_receive"
    DIGITS_SEND = "digits_send"
    DNC_ADD = "dnc_add"
    EMAIL_SEND = "email_send"
    GOTO = "goto"
    HANGUP = "hangup"
    MESSAGE_SEND = "message_send"
    PLAY = "play"
    QUEUE_JOIN = "queue_join"
    RECORDING_START = "recording_start"
    RECORDING_STOP = "recording_stop"
    SLEEP = "sleep"
    STOP = "stop"
    TALK = "talk"
    VARIABLE_SET = "variable_set"
    WEBHOOK_SEND = "webhook_send"


class CampaignExecute(enum.StrEnum):
    """What a client may ask of a campaign's status (``stopping`` is the engine's)."""

    RUN = "run"
    STOP = "stop"


class AddressBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An address in a request (source, destination_N); a ``tel`` target is E.164."""

    type: AddressType = AddressType.NONE
    target: AddressTarget = ""
    target_name: Name = ""
    name: Name = ""
    detail: Detail = ""

    def __post_init__(self) -> None:
        if self.type is AddressType.TEL and self.target:
            try:
                check_e164(self.target)
            except ValueError as exc:
                raise ValueError(f"target: {exc}") from None

    def to_model(self) -> Address:
        """The stored form."""
        return Address(
            type=self.type,
            target=self.target,
            target_name=self.target_name,
            name=self.name,
            detail=self.detail,
        )


class ActionBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One flow action in a request; ``option`` is checked against the type's option
    schema (``TalkOption``, ``WebhookSendOption``...) when the campaign is saved."""

    type: ActionType
    id: Reference = None
    next_id: Reference = None
    option: Option = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        size = len(msgspec.json.encode(self.option))
        if size > MAX_OPTION_BYTES:
            raise ValueError(f"option: {size} bytes as JSON, at most {MAX_OPTION_BYTES}")

    def to_model(self) -> Action:
        """The stored form."""
        return Action(
            type=self.type.value,
            id=reference(self.id),
            next_id=reference(self.next_id),
            option=self.option,
        )


Actions = Annotated[list[ActionBody], msgspec.Meta(max_length=MAX_ACTIONS)]


def actions_model(actions: list[ActionBody]) -> list[Action]:
    """Request actions in their stored form."""
    return [action.to_model() for action in actions]


def present_fields(body: msgspec.Struct, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields an update body carries (not ``UNSET``), in their stored form: addresses
    and actions as model structs, reference ids (every ``*_id`` field) as stored."""
    changes: dict[str, Any] = {}
    for field in body.__struct_fields__:
        value = getattr(body, field)
        if value is UNSET or field in skip:
            continue
        if isinstance(value, AddressBody):
            value = value.to_model()
        elif isinstance(value, list) and all(isinstance(item, ActionBody) for item in value):
            value = actions_model(value)
        elif field.endswith("_id"):
            value = reference(value)
        changes[field] = value
    return changes


# -- campaigns ---------------------------------------------------------------------


class CampaignCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /campaigns``: a new campaign, created in status ``stop``."""

    type: CampaignType = CampaignType.CALL
    name: Name = ""
    detail: Detail = ""
    service_level: Count = 100
    end_handle: EndHandle = EndHandle.STOP
    # Extensions (behaviour.md §10); absent: the seed's rule.
    pacing_mode: PacingMode = PacingMode.SERVICE_LEVEL
    target_abandon_rate: AbandonTarget = DEFAULT_ABANDON_TARGET
    actions: Actions = msgspec.field(default_factory=list)
    outplan_id: Reference = None
    outdial_id: Reference = None
    queue_id: Reference = None
    next_campaign_id: Reference = None

    def to_model(self, customer_id: str, now: str) -> Campaign:
        """The campaign this body describes, in status ``stop``."""
        campaign = Campaign.fresh(
            customer_id,
            now,
            type=self.type,
            name=self.name,
            detail=self.detail,
            service_level=self.service_level,
            end_handle=self.end_handle,
            actions=actions_model(self.actions),
            outplan_id=reference(self.outplan_id),
            outdial_id=reference(self.outdial_id),
            queue_id=reference(self.queue_id),
            next_campaign_id=reference(self.next_campaign_id),
        )
        if self.pacing_mode != campaign.pacing_mode or self.target_abandon_rate != (
            campaign.target_abandon_rate
        ):
            campaign = msgspec.structs.replace(
                campaign, pacing_mode=self.pacing_mode, target_abandon_rate=self.target_abandon_rate
            )
        return campaign


class CampaignUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /campaigns/{id}``: only the fields present change; ``status`` runs or stops."""

    type: CampaignType | UnsetType = UNSET
    name: Name | UnsetType = UNSET
    detail: Detail | UnsetType = UNSET
    service_level: Count | UnsetType = UNSET
    end_handle: EndHandle | UnsetType = UNSET
    pacing_mode: PacingMode | UnsetType = UNSET
    target_abandon_rate: AbandonTarget | UnsetType = UNSET
    actions: Actions | UnsetType = UNSET
    outplan_id: Reference | UnsetType = UNSET
    outdial_id: Reference | UnsetType = UNSET
    queue_id: Reference | UnsetType = UNSET
    next_campaign_id: Reference | UnsetType = UNSET
    status: CampaignExecute | UnsetType = UNSET


class CampaignStatusBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /campaigns/{id}/status``."""

    status: CampaignExecute


class ServiceLevelBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /campaigns/{id}/service_level``."""

    service_level: Count


class ActionsBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /campaigns/{id}/actions``."""

    actions: Actions


class ResourceInfoBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /campaigns/{id}/resource_info``: only the ids present change."""

    outplan_id: Reference | UnsetType = UNSET
    outdial_id: Reference | UnsetType = UNSET
    queue_id: Reference | UnsetType = UNSET
    next_campaign_id: Reference | UnsetType = UNSET


class NextCampaignIdBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /campaigns/{id}/next_campaign_id``."""

    next_campaign_id: Reference


# -- outplans ----------------------------------------------------------------------

# The outcomes ``retry_by_outcome`` may name (``dialerd.model.RETRY_OUTCOMES``).
RetryOutcome = Literal["busy", "no_answer", "machine", "failed", "abandoned"]
RetryByOutcome = dict[RetryOutcome, OutcomeRetry]


class OutplanCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /outplans``: how and when targets are dialed and retried."""

    name: Name = ""
    detail: Detail = ""
    source: AddressBody = msgspec.field(default_factory=AddressBody)
    dial_timeout: PositiveMilliseconds = 30_000
    try_interval: Milliseconds = 60_000
    max_try_count_0: Count = 0
    max_try_count_1: Count = 0
    max_try_count_2: Count = 0
    max_try_count_3: Count = 0
    max_try_count_4: Count = 0
    retry_by_outcome: RetryByOutcome = msgspec.field(default_factory=dict)


class OutplanUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /outplans/{id}``: name and detail."""

    name: Name | UnsetType = UNSET
    detail: Detail | UnsetType = UNSET


class DialInfoBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /outplans/{id}/dial_info``: only the fields present change."""

    source: AddressBody | UnsetType = UNSET
    dial_timeout: PositiveMilliseconds | UnsetType = UNSET
    try_interval: Milliseconds | UnsetType = UNSET
    max_try_count_0: Count | UnsetType = UNSET
    max_try_count_1: Count | UnsetType = UNSET
    max_try_count_2: Count | UnsetType = UNSET
    max_try_count_3: Count | UnsetType = UNSET
    max_try_count_4: Count | UnsetType = UNSET
    retry_by_outcome: RetryByOutcome | UnsetType = UNSET


# -- outdials and targets ----------------------------------------------------------


class OutdialCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /outdials``: a list of targets; ``campaign_id`` may be nil or absent."""

    name: Name = ""
    detail: Detail = ""
    data: Data = ""
    campaign_id: Reference = None


class OutdialUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /outdials/{id}``: name and detail."""

    name: Name | UnsetType = UNSET
    detail: Detail | UnsetType = UNSET


class OutdialCampaignIdBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /outdials/{id}/campaign_id``."""

    campaign_id: Reference


class OutdialDataBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /outdials/{id}/data``."""

    data: Data


class TargetCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /outdials/{id}/targets`` (JSON, or one NDJSON line): one contact."""

    name: Name = ""
    detail: Detail = ""
    data: Data = ""
    destination_0: AddressBody | None = None
    destination_1: AddressBody | None = None
    destination_2: AddressBody | None = None
    destination_3: AddressBody | None = None
    destination_4: AddressBody | None = None

    def __post_init__(self) -> None:
        try:
            hours.check_zone_in_target_data(self.data)
        except ValueError as exc:
            raise ValueError(f"data.{exc}") from None

    @property
    def destinations(self) -> tuple[AddressBody | None, ...]:
        """``destination_0`` .. ``destination_4``."""
        return (
            self.destination_0,
            self.destination_1,
            self.destination_2,
            self.destination_3,
            self.destination_4,
        )


class ImportResult(msgspec.Struct, frozen=True):
    """What a CSV or NDJSON import stored."""

    count: int


# -- do-not-call numbers -----------------------------------------------------------

# Numbers one JSON body may add; more go in a CSV or NDJSON import.
MAX_DNC_PER_BODY: Final = 1000
# Room for separators around the at most 15 digits of an E.164 number.
DncNumberText = Annotated[str, msgspec.Meta(max_length=64)]


class DncNumberCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /dnc_numbers`` (a JSON object, an item of a JSON array, or an NDJSON line):
    an E.164 number, written with or without spaces, dashes, dots or parentheses."""

    number: DncNumberText
    detail: Detail = ""

    def __post_init__(self) -> None:
        try:
            normalize_e164(self.number)
        except ValueError as exc:
            raise ValueError(f"number: {exc}") from None

    def to_model(self, customer_id: str, now: str) -> DncNumber:
        """The stored entry: the number in E.164."""
        return DncNumber(
            customer_id=customer_id,
            number=normalize_e164(self.number),
            detail=self.detail,
            tm_create=now,
        )


DncNumbersCreate = (
    DncNumberCreate
    | Annotated[list[DncNumberCreate], msgspec.Meta(min_length=1, max_length=MAX_DNC_PER_BODY)]
)


class DncNumberList(msgspec.Struct, frozen=True):
    """The stored entries of the numbers a JSON array added, in its order."""

    result: list[DncNumber]
