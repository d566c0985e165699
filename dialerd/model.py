"""The resource model: campaigns, outplans, outdials, targets and campaigncalls.

Field names and JSON shapes follow the reference campaign API. Times are UTC strings
``YYYY-MM-DD HH:MM:SS.ffffff``; unset references are the nil UUID.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import re
import struct
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Generic, NamedTuple, TypeVar

import msgspec
import phonenumbers

NIL_UUID: Final = "00000000-0000-0000-0000-000000000000"
# Campaign, outplan and outdial mark "not deleted" with this sentinel, not with null.
NOT_DELETED: Final = "9999-01-01 00:00:00.000000"
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S.%f"
_STAMP_LENGTH: Final = len("2022-04-28 01:41:40.503790")
SLOTS: Final = (0, 1, 2, 3, 4)

# Longest accepted values (characters; actions and option entries: items), so one
# resource stays small enough to list 100 of them in one page.
MAX_NAME: Final = 255
MAX_DETAIL: Final = 2048
MAX_DATA: Final = 8192
MAX_ADDRESS_TARGET: Final = 255
MAX_ACTIONS: Final = 100
MAX_OPTION_ENTRIES: Final = 64
MAX_OPTION_BYTES: Final = 16384


class _CountryPlan(NamedTuple):
    """What ``phonenumbers`` decides an E.164 number of one country code by: the
    national prefix it would strip, and the possible lengths of a national number."""

    national_prefix: re.Pattern[str] | None
    lengths: frozenset[int]


@functools.cache
def _country_plan(country_code: int) -> _CountryPlan | None:
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None or metadata.general_desc is None:
        return None
    general = metadata.general_desc
    lengths = [n for n in general.possible_length or () if n > 0]
    local = set(general.possible_length_local_only or ())
    prefix = metadata.national_prefix_for_parsing
    return _CountryPlan(
        re.compile(prefix) if prefix else None, frozenset(n for n in lengths if n not in local)
    )


@functools.cache
def _country_of(first_digits: str) -> tuple[int, _CountryPlan | None]:
    """The length of the country code the first three digits start with (country codes
    are a prefix code, as phonenumbers reads them: shortest first) and its plan; no
    plan when there is no such code."""
    if first_digits.startswith("0"):
        return 0, None
    for size in (1, 2, 3):
        code = int(first_digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return size, _country_plan(code)
    return 0, None


def _surely_e164(digits: str) -> bool:
    """True when ``phonenumbers`` would certainly accept ``+<digits>`` (False: ask it).

    The common case, decided without parsing: a country code, then a national number
    that neither starts with 0 nor with the country's national prefix (so parsing keeps
    it as it is and formats it back the same), of a possible length for the country.
    """
    if not 3 <= len(digits) <= 20:
        return False
    size, plan = _country_of(digits[:3])
    national = digits[size:]
    if plan is None or not 2 <= len(national) <= 17 or national[0] == "0":
        return False
    if plan.national_prefix is not None and plan.national_prefix.match(national):
        return False
    return len(national) in plan.lengths


def surely_e164(number: str) -> bool:
    """True when ``check_e164`` would surely accept ``number`` (a few µs); False when
    only ``check_e164`` can tell (it may accept it still, or names the problem)."""
    digits = number[1:]
    return number.startswith("+") and digits.isascii() and digits.isdigit() and _surely_e164(digits)


def check_e164(number: str) -> None:
    """Raise ``ValueError`` unless ``number`` is an E.164 number (``+15551234567``).

    E.164 form exactly (``+``, country code, national number, no spaces) and a length
    possible for that country code by the numbering-plan metadata of ``phonenumbers``.
    Not ``is_valid_number``: it rejects fictional and newly allocated ranges that a
    dialer must still be able to call (such as +1 555 01xx test numbers). The common
    case is decided from the metadata directly (``_surely_e164``, a few µs; imports
    check millions), anything else by parsing.
    """
    problem = f"{number[:40]!r} is not an E.164 number (like +15551234567)"
    if not number.startswith("+") or not number[1:].isascii() or not number[1:].isdigit():
        raise ValueError(problem)
    if _surely_e164(number[1:]):
        return
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise ValueError(problem) from None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    possible = phonenumbers.is_possible_number_with_reason(parsed)
    if e164 != number or possible != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise ValueError(
            f"{problem}: its length is not possible for country code +{parsed.country_code}"
        )


# What people write between the digits of a phone number; dropped before the E.164 check.
_NUMBER_SEPARATORS: Final = str.maketrans("", "", " -.()\t")


def normalize_e164(text: str) -> str:
    """``text`` as an E.164 number: separators (spaces, ``-``, ``.``, parentheses)
    dropped, then checked by ``check_e164`` (``ValueError`` naming the problem)."""
    number = text.strip().translate(_NUMBER_SEPARATORS)
    check_e164(number)
    return number


def format_time(moment: datetime) -> str:
    """Render an aware datetime as the reference API's UTC timestamp string."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # TIME_FORMAT, written by isoformat (about three times faster than strftime): the
    # first 26 characters, before the UTC offset.
    return moment.isoformat(" ", "microseconds")[:_STAMP_LENGTH]


def parse_time(text: str) -> datetime:
    """Parse a reference timestamp string into an aware UTC datetime."""
    # The stored strings are always this shape: fromisoformat reads them ten times
    # faster than strptime; anything else goes through strptime, which says what's wrong.
    if len(text) == _STAMP_LENGTH and text[10] == " " and text[19] == ".":
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


# The bits a random (version 4, RFC 4122 variant) UUID fixes, and their values.
_UUID4_FIXED: Final = 0xF000 << 64 | 0xC000 << 48
_UUID4_BITS: Final = 0x4000 << 64 | 0x8000 << 48


def new_id() -> str:
    """A fresh random UUID (version 4) as a string: what ``str(uuid.uuid4())`` gives,
    made without the ``UUID`` object (about twice as fast)."""
    bits = int.from_bytes(os.urandom(16)) & ~_UUID4_FIXED | _UUID4_BITS
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# The RFC 4122 variant's hex digit (``10xx``) for each hex digit of a random nibble.
_VARIANT_DIGIT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_ids(count: int) -> list[str]:
    """``count`` fresh random UUIDs (version 4), as ``new_id`` makes them, from one draw
    of random bytes for all of them (a tick's attempts need several ids each)."""
    text = os.urandom(16 * count).hex()
    variant = _VARIANT_DIGIT
    return [
        f"{text[at : at + 8]}-{text[at + 8 : at + 12]}-4{text[at + 13 : at + 16]}-"
        f"{variant[text[at + 16]]}{text[at + 17 : at + 20]}-{text[at + 20 : at + 32]}"
        for at in range(0, 32 * count, 32)
    ]


# The variant bits of a UUID (RFC 9562), and the mask of a version 7 id's random bits.
_RANDOM_62: Final = (1 << 62) - 1
_VARIANT_10: Final = 0x2 << 62


def new_ordered_id() -> str:
    """A fresh time-ordered UUID (version 7, RFC 9562) as a string: the Unix time in
    milliseconds, then its fraction in 12 bits (ids made later in this process sort
    after), then 62 random bits. Ids that key an index a row is added to per attempt
    are taken from here: each lands at the end of the index, where the pages written
    last are, instead of on a random page of it."""
    return new_ordered_ids(1)[0]


def new_ordered_ids(count: int) -> list[str]:
    """``count`` fresh time-ordered UUIDs (version 7, see ``new_ordered_id``), from one
    reading of the clock and one draw of random bytes: they share the time
    and their random bits are sorted, so they too sort in the order returned."""
    milliseconds, rest = divmod(time.time_ns(), 1_000_000)
    head = f"{milliseconds << 16 | 0x7000 | rest * 4096 // 1_000_000:016x}"
    prefix = f"{head[:8]}-{head[8:12]}-{head[12:]}-"
    draws = struct.unpack(f">{count}Q", os.urandom(8 * count))
    tails = [f"{_VARIANT_10 | value:016x}" for value in sorted(d & _RANDOM_62 for d in draws)]
    return [f"{prefix}{tail[:4]}-{tail[4:]}" for tail in tails]


class HangupReason(enum.StrEnum):
    """Why an attempt ended. Only ``normal`` (answered, ended normally) is a success."""

    NORMAL = "normal"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    CANCELLED = "cancelled"
    MACHINE = "machine"
    ABANDONED = "abandoned"
    TIMEOUT = "timeout"
    ERROR = "error"
    LOST = "lost"


class CampaignType(enum.StrEnum):
    CALL = "call"
    FLOW = "flow"


class CampaignStatus(enum.StrEnum):
    STOP = "stop"
    STOPPING = "stopping"
    RUN = "run"


class EndHandle(enum.StrEnum):
    STOP = "stop"
    CONTINUE = "continue"


class TargetStatus(enum.StrEnum):
    IDLE = "idle"
    PROGRESSING = "progressing"
    DONE = "done"


class CampaigncallStatus(enum.StrEnum):
    DIALING = "dialing"
    PROGRESSING = "progressing"
    DONE = "done"


class CampaigncallResult(enum.StrEnum):
    NONE = ""
    SUCCESS = "success"
    FAIL = "fail"


class ReferenceType(enum.StrEnum):
    NONE = "none"
    CALL = "call"
    FLOW = "flow"


class AddressType(enum.StrEnum):
    NONE = ""
    AGENT = "agent"
    CONFERENCE = "conference"
    EMAIL = "email"
    EXTENSION = "extension"
    LINE = "line"
    SIP = "sip"
    TEL = "tel"
    WEB_SESSION = "web_session"


class Address(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a call comes from or goes to."""

    type: AddressType = AddressType.NONE
    target: str = ""
    target_name: str = ""
    name: str = ""
    detail: str = ""

    @property
    def is_empty(self) -> bool:
        """An address without a target cannot be dialed and counts as absent."""
        return self.target == ""


class Action(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One flow action run when a target answers (for example ``talk``)."""

    type: str
    id: str = NIL_UUID
    next_id: str = NIL_UUID
    option: dict[str, Any] = msgspec.field(default_factory=dict)


class PacingMode(enum.StrEnum):
    """How a campaign decides how many lines to ring (an extension; behaviour.md §10)."""

    SERVICE_LEVEL = "service_level"  # the seed's rule on ``service_level``
    PREDICTIVE = "predictive"  # a forecast of free agents, held to ``target_abandon_rate``


# The legal cap on abandoned live answers (US and UK alike); the predictive default.
DEFAULT_ABANDON_TARGET = 0.03


# omit_defaults: only the extension fields have defaults, so a campaign that does not set
# them encodes exactly as the reference shape does.
class Campaign(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    customer_id: str
    type: CampaignType
    name: str
    detail: str
    status: CampaignStatus
    service_level: int
    end_handle: EndHandle
    actions: list[Action]
    outplan_id: str
    outdial_id: str
    queue_id: str
    next_campaign_id: str
    tm_create: str
    tm_update: str | None
    tm_delete: str | None
    # Extensions (absent: the seed's rule, unchanged).
    pacing_mode: PacingMode = PacingMode.SERVICE_LEVEL
    target_abandon_rate: float = DEFAULT_ABANDON_TARGET

    @classmethod
    def fresh(
        cls,
        customer_id: str,
        now: str,
        *,
        type: CampaignType = CampaignType.CALL,
        name: str = "",
        detail: str = "",
        service_level: int = 100,
        end_handle: EndHandle = EndHandle.STOP,
        actions: Sequence[Action] = (),
        outplan_id: str = NIL_UUID,
        outdial_id: str = NIL_UUID,
        queue_id: str = NIL_UUID,
        next_campaign_id: str = NIL_UUID,
    ) -> Campaign:
        """A new campaign, in status ``stop``, created at ``now``."""
        return cls(
            id=new_id(),
            customer_id=customer_id,
            type=type,
            name=name,
            detail=detail,
            status=CampaignStatus.STOP,
            service_level=service_level,
            end_handle=end_handle,
            actions=list(actions),
            outplan_id=outplan_id,
            outdial_id=outdial_id,
            queue_id=queue_id,
            next_campaign_id=next_campaign_id,
            tm_create=now,
            tm_update=None,
            tm_delete=NOT_DELETED,
        )


class OutcomeRetry(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """How a target is retried after an attempt with one outcome (dialerd's extension
    of the reference outplan): ``try_interval`` instead of the outplan's; with
    ``max_tries``, only while the target has had fewer attempts than that in all."""

    try_interval: Annotated[int, msgspec.Meta(ge=0, le=2_147_483_647)] | None = None
    max_tries: Annotated[int, msgspec.Meta(ge=0, le=2_147_483_647)] | None = None


# The outcomes an outplan may give their own retry rule (``retry_by_outcome`` keys).
RETRY_OUTCOMES: Final = ("busy", "no_answer", "machine", "failed", "abandoned")


# omit_defaults: the reference example of an outplan carries no customer_id; ours always do.
class Outplan(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    customer_id: str = ""
    name: str
    detail: str
    source: Address
    dial_timeout: int
    try_interval: int
    max_try_count_0: int
    max_try_count_1: int
    max_try_count_2: int
    max_try_count_3: int
    max_try_count_4: int
    # Absent (empty) unless set: the reference's shape is unchanged.
    retry_by_outcome: dict[str, OutcomeRetry] = {}
    tm_create: str
    tm_update: str | None
    tm_delete: str | None

    @classmethod
    def fresh(
        cls,
        customer_id: str,
        now: str,
        *,
        source: Address,
        name: str = "",
        detail: str = "",
        dial_timeout: int = 30_000,
        try_interval: int = 60_000,
        max_try_counts: Sequence[int] = (0, 0, 0, 0, 0),
        retry_by_outcome: dict[str, OutcomeRetry] | None = None,
    ) -> Outplan:
        """A new outplan created at ``now``; ``max_try_counts`` are slots 0..4."""
        counts = [*max_try_counts, 0, 0, 0, 0, 0][:5]
        return cls(
            id=new_id(),
            customer_id=customer_id,
            name=name,
            detail=detail,
            source=source,
            dial_timeout=dial_timeout,
            try_interval=try_interval,
            max_try_count_0=counts[0],
            max_try_count_1=counts[1],
            max_try_count_2=counts[2],
            max_try_count_3=counts[3],
            max_try_count_4=counts[4],
            retry_by_outcome=dict(retry_by_outcome or {}),
            tm_create=now,
            tm_update=None,
            tm_delete=NOT_DELETED,
        )

    @property
    def max_try_counts(self) -> tuple[int, int, int, int, int]:
        """``max_try_count_0`` .. ``max_try_count_4`` as one tuple."""
        return (
            self.max_try_count_0,
            self.max_try_count_1,
            self.max_try_count_2,
            self.max_try_count_3,
            self.max_try_count_4,
        )


class Outdial(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    customer_id: str
    campaign_id: str
    name: str
    detail: str
    data: str
    tm_create: str
    tm_update: str | None
    tm_delete: str | None

    @classmethod
    def fresh(
        cls,
        customer_id: str,
        now: str,
        *,
        name: str = "",
        detail: str = "",
        data: str = "",
        campaign_id: str = NIL_UUID,
    ) -> Outdial:
        """A new, empty outdial created at ``now``."""
        return cls(
            id=new_id(),
            customer_id=customer_id,
            campaign_id=campaign_id,
            name=name,
            detail=detail,
            data=data,
            tm_create=now,
            tm_update=None,
            tm_delete=NOT_DELETED,
        )


class SkippedDestination(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A destination of a target that a claim stepped over, and why (``dnc``: its
    number, as the trunk would dial it, is on the customer's do-not-call list)."""

    destination_index: int
    reason: str


# omit_defaults: ``hold_reason``, ``tm_next_try`` and ``skipped_destinations`` (dialerd's)
# appear only when set.
class OutdialTarget(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    outdial_id: str
    name: str
    detail: str
    data: str
    status: TargetStatus
    destination_0: Address | None
    destination_1: Address | None
    destination_2: Address | None
    destination_3: Address | None
    destination_4: Address | None
    try_count_0: int
    try_count_1: int
    try_count_2: int
    try_count_3: int
    try_count_4: int
    tm_create: str
    tm_update: str | None
    tm_delete: str | None
    # Why the dialing rules hold the target back ("" when they do not: see
    # dialerd.core.targets.Held), and from when it may be dialed again when it waits.
    hold_reason: str = ""
    tm_next_try: Annotated[
        str,
        msgspec.Meta(
            description="dialerd's: when a target the rules hold back is looked at again. "
            "The next opening of its calling hours, the end of a lockout or retry "
            "interval; for an unknown zone, or hours that open nowhere in the next 14 "
            "days, a re-check an hour after the claim that found it so, not an opening."
        ),
    ] = ""
    skipped_destinations: Annotated[
        tuple[SkippedDestination, ...],
        msgspec.Meta(
            description="dialerd's: the destinations the latest claim stepped over, and "
            "why (dnc: on the do-not-call list); absent when none were."
        ),
    ] = ()

    @classmethod
    def fresh(
        cls,
        outdial_id: str,
        destinations: Sequence[Address | None],
        now: str,
        *,
        name: str = "",
        detail: str = "",
        data: str = "",
        target_id: str = "",
    ) -> OutdialTarget:
        """A new, never-tried ``idle`` target with up to five destinations (others null);
        its id ``target_id`` if given, else a fresh one."""
        slots = [*destinations, None, None, None, None, None][:5]
        return cls(
            id=target_id or new_id(),
            outdial_id=outdial_id,
            name=name,
            detail=detail,
            data=data,
            status=TargetStatus.IDLE,
            destination_0=slots[0],
            destination_1=slots[1],
            destination_2=slots[2],
            destination_3=slots[3],
            destination_4=slots[4],
            try_count_0=0,
            try_count_1=0,
            try_count_2=0,
            try_count_3=0,
            try_count_4=0,
            tm_create=now,
            tm_update=None,
            tm_delete=None,
        )

    @property
    def destinations(self) -> tuple[Address | None, ...]:
        """``destination_0`` .. ``destination_4`` as one tuple."""
        return (
            self.destination_0,
            self.destination_1,
            self.destination_2,
            self.destination_3,
            self.destination_4,
        )

    @property
    def try_counts(self) -> tuple[int, int, int, int, int]:
        """``try_count_0`` .. ``try_count_4`` as one tuple."""
        return (
            self.try_count_0,
            self.try_count_1,
            self.try_count_2,
            self.try_count_3,
            self.try_count_4,
        )


# omit_defaults: ``reason`` appears only once the attempt has ended.
class Campaigncall(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One dial attempt of a campaign on one destination of one target."""

    id: str
    customer_id: str
    campaign_id: str
    outplan_id: str
    outdial_id: str
    outdial_target_id: str
    queue_id: str
    flow_id: str
    activeflow_id: str
    reference_type: ReferenceType
    reference_id: str
    status: CampaigncallStatus
    result: CampaigncallResult
    source: Address
    destination: Address
    destination_index: int
    try_count: int
    tm_create: str
    tm_update: str | None
    tm_delete: str | None
    # Extension: why the attempt ended (hangup reason), "" while it is active.
    reason: str = ""


class DncNumber(msgspec.Struct, frozen=True, kw_only=True):
    """A number on a customer's do-not-call list (dialerd extension): never originated."""

    customer_id: str
    # E.164, as ``normalize_e164`` gives it: the form target destinations are compared in.
    number: str
    detail: str = ""
    tm_create: str


T = TypeVar("T")


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a newest-first listing; ``next_page_token`` is "" on the last page."""

    result: list[T]
    next_page_token: str = ""


def encode(value: Any) -> bytes:
    """Encode a resource (or any msgspec-friendly value) as JSON."""
    return msgspec.json.encode(value)


def to_builtins(value: Any) -> Any:
    """A resource as plain dicts and lists, ready for JSON."""
    return msgspec.to_builtins(value)
