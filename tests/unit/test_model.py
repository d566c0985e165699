"""The resource model against the reference: struct-page examples and OpenAPI component schemas."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialerd.model import (
    NIL_UUID,
    NOT_DELETED,
    Action,
    Address,
    AddressType,
    Campaign,
    Campaigncall,
    CampaigncallResult,
    CampaigncallStatus,
    CampaignStatus,
    CampaignType,
    EndHandle,
    Outdial,
    OutdialTarget,
    Outplan,
    ReferenceType,
    TargetStatus,
    format_time,
    new_id,
    new_ids,
    new_ordered_id,
    new_ordered_ids,
    parse_time,
    to_builtins,
)
from tests.unit.reference import json_examples, schema_errors

CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
CREATED = datetime(2026, 3, 2, 9, 15, 30, 123456, tzinfo=UTC)
SOURCE = Address(type=AddressType.TEL, target="+15559870000", target_name="Acme Renewals")
MOBILE = Address(type=AddressType.TEL, target="+15551230001", name="mobile")

STRUCT_PAGES: list[tuple[str, type[msgspec.Struct]]] = [
    ("campaign_struct_campaign.rst", Campaign),
    ("campaign_struct_campaigncall.rst", Campaigncall),
    ("outplan_struct_outplan.rst", Outplan),
    ("outdial_struct_outdial.rst", Outdial),
    ("outdial_struct_outdialtarget.rst", OutdialTarget),
]


def make_outplan() -> Outplan:
    return Outplan(
        id=new_id(),
        customer_id=CUSTOMER,
        name="renewals retry plan",
        detail="three tries on the mobile, one on the office line",
        source=SOURCE,
        dial_timeout=30_000,
        try_interval=3_600_000,
        max_try_count_0=3,
        max_try_count_1=1,
        max_try_count_2=0,
        max_try_count_3=0,
        max_try_count_4=0,
        tm_create=format_time(CREATED),
        tm_update=format_time(CREATED + timedelta(minutes=5)),
        tm_delete=NOT_DELETED,
    )


def make_outdial() -> Outdial:
    return Outdial(
        id=new_id(),
        customer_id=CUSTOMER,
        campaign_id=NIL_UUID,
        name="march renewals",
        detail="customers whose contract ends in March",
        data="",
        tm_create=format_time(CREATED),
        tm_update=None,
        tm_delete=NOT_DELETED,
    )


def make_campaign() -> Campaign:
    return Campaign(
        id=new_id(),
        customer_id=CUSTOMER,
        type=CampaignType.CALL,
        name="march renewals",
        detail="call every customer whose contract ends in March",
        status=CampaignStatus.RUN,
        service_level=100,
        end_handle=EndHandle.STOP,
        actions=[
            Action(
                type="talk",
                option={"text": "Hello, this is Acme about your renewal.", "language": "en-US"},
            )
        ],
        outplan_id=new_id(),
        outdial_id=new_id(),
        queue_id=new_id(),
        next_campaign_id=NIL_UUID,
        tm_create=format_time(CREATED),
        tm_update=format_time(CREATED + timedelta(hours=1)),
        tm_delete=NOT_DELETED,
    )


def make_target() -> OutdialTarget:
    return OutdialTarget(
        id=new_id(),
        outdial_id=new_id(),
        name="Ada Lovelace",
        detail="contract 4711",
        data='{"contract": 4711}',
        status=TargetStatus.IDLE,
        destination_0=MOBILE,
        destination_1=Address(type=AddressType.TEL, target="+15551230002", name="office"),
        destination_2=None,
        destination_3=None,
        destination_4=None,
        try_count_0=1,
        try_count_1=0,
        try_count_2=0,
        try_count_3=0,
        try_count_4=0,
        tm_create=format_time(CREATED),
        tm_update=format_time(CREATED + timedelta(hours=2)),
        tm_delete=None,
    )


def make_campaigncall() -> Campaigncall:
    return Campaigncall(
        id=new_id(),
        customer_id=CUSTOMER,
        campaign_id=new_id(),
        outplan_id=new_id(),
        outdial_id=new_id(),
        outdial_target_id=new_id(),
        queue_id=new_id(),
        flow_id=NIL_UUID,
        activeflow_id=NIL_UUID,
        reference_type=ReferenceType.CALL,
        reference_id=new_id(),
        status=CampaigncallStatus.DONE,
        result=CampaigncallResult.FAIL,
        source=SOURCE,
        destination=MOBILE,
        destination_index=0,
        try_count=1,
        tm_create=format_time(CREATED),
        tm_update=format_time(CREATED + timedelta(seconds=42)),
        tm_delete=None,
        reason="busy",
    )


RESOURCES: list[tuple[str, Any]] = [
    ("CampaignManagerCampaign", make_campaign),
    ("CampaignManagerCampaigncall", make_campaigncall),
    ("CampaignManagerOutplan", make_outplan),
    ("OutdialManagerOutdial", make_outdial),
    ("OutdialManagerOutdialtarget", make_target),
]


@pytest.mark.parametrize(("page", "struct"), STRUCT_PAGES, ids=[page for page, _ in STRUCT_PAGES])
def test_reference_examples_decode_and_encode_unchanged(
    page: str, struct: type[msgspec.Struct]
) -> None:
    examples = json_examples(page)
    assert examples, f"{page} has no JSON example"
    for example in examples:
        decoded = msgspec.json.decode(json.dumps(example), type=struct)
        assert json.loads(msgspec.json.encode(decoded)) == example


@pytest.mark.parametrize(
    ("page", "schema"),
    [
        ("campaign_struct_campaign.rst", "CampaignManagerCampaign"),
        ("campaign_struct_campaigncall.rst", "CampaignManagerCampaigncall"),
        ("outplan_struct_outplan.rst", "CampaignManagerOutplan"),
        ("outdial_struct_outdial.rst", "OutdialManagerOutdial"),
        ("outdial_struct_outdialtarget.rst", "OutdialManagerOutdialtarget"),
    ],
)
def test_reference_examples_satisfy_the_openapi_schemas(page: str, schema: str) -> None:
    for example in json_examples(page):
        assert schema_errors(schema, example) == []


@pytest.mark.parametrize(("schema", "factory"), RESOURCES, ids=[name for name, _ in RESOURCES])
def test_resources_we_build_satisfy_the_openapi_schemas(schema: str, factory: Any) -> None:
    assert schema_errors(schema, to_builtins(factory())) == []


def test_active_campaigncall_without_reason_satisfies_the_schema() -> None:
    active = msgspec.structs.replace(
        make_campaigncall(),
        status=CampaigncallStatus.DIALING,
        result=CampaigncallResult.NONE,
        tm_update=None,
        reason="",
    )
    body = to_builtins(active)
    assert "reason" not in body
    assert schema_errors("CampaignManagerCampaigncall", body) == []


def test_campaign_with_a_wrong_status_fails_the_schema() -> None:
    broken = to_builtins(make_campaign()) | {"status": "paused"}
    errors = schema_errors("CampaignManagerCampaign", broken)
    assert len(errors) == 1
    assert errors[0].startswith("status:")


def test_outplan_with_a_textual_timeout_fails_the_schema() -> None:
    broken = to_builtins(make_outplan()) | {"dial_timeout": "30s"}
    errors = schema_errors("CampaignManagerOutplan", broken)
    assert len(errors) == 1
    assert errors[0].startswith("dial_timeout:")


def test_target_with_a_wrong_address_type_fails_the_schema() -> None:
    body = to_builtins(make_target())
    body["destination_0"]["type"] = "pstn"
    errors = schema_errors("OutdialManagerOutdialtarget", body)
    assert errors
    assert all(error.startswith("destination_0") for error in errors)


def test_nullable_fields_accept_null_but_not_other_types() -> None:
    body = to_builtins(make_target()) | {"destination_4": None, "tm_delete": None}
    assert schema_errors("OutdialManagerOutdialtarget", body) == []
    assert schema_errors("OutdialManagerOutdialtarget", body | {"destination_4": "+1555"})
    assert schema_errors("OutdialManagerOutdialtarget", body | {"tm_delete": 0})


def test_resource_json_round_trips_through_msgspec() -> None:
    for _, factory in RESOURCES:
        resource = factory()
        assert msgspec.json.decode(msgspec.json.encode(resource), type=type(resource)) == resource


def test_address_with_an_unknown_field_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `phone`"):
        msgspec.json.decode(b'{"type": "tel", "phone": "+1555"}', type=Address)


def test_format_time_renders_utc_with_microseconds() -> None:
    moment = datetime(2026, 3, 2, 11, 15, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2026-03-02 09:15:30.000005"


def test_parse_time_reads_a_reference_timestamp_as_utc() -> None:
    assert parse_time("2022-04-28 02:16:39.712142") == datetime(
        2022, 4, 28, 2, 16, 39, 712142, tzinfo=UTC
    )


def test_not_deleted_sentinel_is_a_reference_timestamp() -> None:
    assert format_time(parse_time(NOT_DELETED)) == NOT_DELETED


def test_ordered_ids_are_uuid7_that_sort_in_the_order_made_and_carry_the_time() -> None:
    before = int(time.time() * 1000)
    made = [new_ordered_id() for _ in range(1000)]
    after = int(time.time() * 1000)
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    for made_id in made:
        parsed = uuid.UUID(made_id)
        assert str(parsed) == made_id
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert before <= parsed.int >> 80 <= after


def test_ordered_ids_made_together_sort_in_the_order_given_and_after_those_made_before() -> None:
    before = new_ordered_id()
    batches = [new_ordered_ids(64) for _ in range(50)]
    after = new_ordered_id()
    made = [before, *(made_id for batch in batches for made_id in batch), after]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    for made_id in made:
        parsed = uuid.UUID(made_id)
        assert str(parsed) == made_id
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)


def test_random_ids_made_together_are_distinct_uuid4() -> None:
    made = [made_id for _ in range(100) for made_id in new_ids(64)]
    assert len(set(made)) == len(made)
    for made_id in made:
        parsed = uuid.UUID(made_id)
        assert str(parsed) == made_id
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
    # Every hex digit varies where the version and variant leave it random.
    for position in (0, 15, 20, 35):
        assert len({made_id[position] for made_id in made}) == 16
    assert {made_id[19] for made_id in made} == set("89ab")
    assert new_ids(0) == [] == new_ordered_ids(0)


offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=offsets,
    )
)
def test_timestamps_round_trip_in_utc(moment: datetime) -> None:
    text = format_time(moment)
    assert len(text) == len("YYYY-MM-DD HH:MM:SS.ffffff")
    parsed = parse_time(text)
    assert parsed == moment
    assert parsed.utcoffset() == timedelta(0)
    assert format_time(parsed) == text


# -- E.164 numbers: the quick check decides as phonenumbers does -------------------------


def _by_phonenumbers(number: str) -> bool:
    """What ``check_e164`` decided before its quick path: parse, format back, length."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False
    return (
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == number
        and phonenumbers.is_possible_number_with_reason(parsed)
        == phonenumbers.ValidationResult.IS_POSSIBLE
    )


def _accepted(number: str) -> bool:
    from dialerd.model import check_e164

    try:
        check_e164(number)
    except ValueError:
        return False
    return True


def _country_codes() -> list[int]:
    import phonenumbers

    return sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.text("0123456789", min_size=1, max_size=19),
        st.tuples(st.sampled_from(_country_codes()), st.text("0123456789", max_size=16)).map(
            lambda pair: f"{pair[0]}{pair[1]}"
        ),
    )
)
def test_e164_check_agrees_with_phonenumbers(digits: str) -> None:
    number = f"+{digits}"
    assert _accepted(number) == _by_phonenumbers(number)


@pytest.mark.parametrize(
    "number",
    [
        "+15551234567",  # NANP, a fictional 555 number a dialer still calls
        "+442079460000",  # UK
        "+4930123456",  # DE, variable length
        "+390612345678",  # IT: the national number keeps its leading 0
        "+80012345678",  # a non-geographic code (+800)
        "+61412345678",  # AU mobile
    ],
)
def test_e164_numbers_accepted(number: str) -> None:
    assert _accepted(number)
    assert _by_phonenumbers(number)


@pytest.mark.parametrize(
    "number",
    ["+1555123456", "+155512345678", "+0123456789", "+999123456", "+1", "+12", "15551234567"],
)
def test_e164_numbers_refused(number: str) -> None:
    assert not _accepted(number)
