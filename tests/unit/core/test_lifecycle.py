"""Campaign status rules: may it run, stopping, exhaustion, chaining (behaviour.md §2, §6, §7)."""

from __future__ import annotations

import msgspec
import pytest

from dialerd.core.lifecycle import (
    run_problems,
    should_chain,
    status_after_stop_request,
    status_when_exhausted,
)
from dialerd.model import (
    NIL_UUID,
    NOT_DELETED,
    Action,
    Address,
    AddressType,
    Campaign,
    CampaignStatus,
    CampaignType,
    EndHandle,
    Outdial,
    Outplan,
    new_id,
)

CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
OTHER_CUSTOMER = "7a1b2c3d-4e5f-6789-abcd-ef0123456789"
CREATED = "2026-03-01 09:00:00.000000"


def outplan(**changes: object) -> Outplan:
    base = Outplan(
        id=new_id(),
        customer_id=CUSTOMER,
        name="two tries",
        detail="",
        source=Address(type=AddressType.TEL, target="+15559870000"),
        dial_timeout=30_000,
        try_interval=60_000,
        max_try_count_0=2,
        max_try_count_1=0,
        max_try_count_2=0,
        max_try_count_3=0,
        max_try_count_4=0,
        tm_create=CREATED,
        tm_update=None,
        tm_delete=NOT_DELETED,
    )
    return msgspec.structs.replace(base, **changes)


def outdial(**changes: object) -> Outdial:
    base = Outdial(
        id=new_id(),
        customer_id=CUSTOMER,
        campaign_id=NIL_UUID,
        name="march renewals",
        detail="",
        data="",
        tm_create=CREATED,
        tm_update=None,
        tm_delete=NOT_DELETED,
    )
    return msgspec.structs.replace(base, **changes)


def campaign(
    plan: Outplan | None = None, dial: Outdial | None = None, **changes: object
) -> Campaign:
    """A stopped call campaign wired to ``plan`` and ``dial`` (nil ids when not given)."""
    base = Campaign(
        id=new_id(),
        customer_id=CUSTOMER,
        type=CampaignType.CALL,
        name="march renewals",
        detail="",
        status=CampaignStatus.STOP,
        service_level=100,
        end_handle=EndHandle.STOP,
        actions=[Action(type="talk", option={"text": "Hello", "language": "en-US"})],
        outplan_id=plan.id if plan else NIL_UUID,
        outdial_id=dial.id if dial else NIL_UUID,
        queue_id=new_id(),
        next_campaign_id=NIL_UUID,
        tm_create=CREATED,
        tm_update=None,
        tm_delete=NOT_DELETED,
    )
    return msgspec.structs.replace(base, **changes)


def test_valid_campaign_has_no_problem() -> None:
    plan, dial = outplan(), outdial()
    assert run_problems(campaign(plan, dial), plan, dial, None) == []


def test_valid_campaign_with_an_existing_next_campaign_has_no_problem() -> None:
    plan, dial = outplan(), outdial()
    follow_up = campaign(plan, dial)
    first = campaign(plan, dial, next_campaign_id=follow_up.id)
    assert run_problems(first, plan, dial, follow_up) == []


def test_campaign_without_outplan_may_not_run() -> None:
    dial = outdial()
    problems = run_problems(campaign(None, dial), None, dial, None)
    assert problems == ["outplan_id is not set"]


def test_campaign_whose_outplan_is_missing_may_not_run() -> None:
    plan, dial = outplan(), outdial()
    problems = run_problems(campaign(plan, dial), None, dial, None)
    assert len(problems) == 1
    assert plan.id in problems[0]
    assert "does not exist" in problems[0]


def test_campaign_whose_outplan_allows_no_try_may_not_run() -> None:
    plan, dial = outplan(max_try_count_0=0), outdial()
    problems = run_problems(campaign(plan, dial), plan, dial, None)
    assert len(problems) == 1
    assert "max_try_count" in problems[0]


def test_outplan_allowing_tries_only_on_a_later_number_is_enough() -> None:
    plan, dial = outplan(max_try_count_0=0, max_try_count_4=1), outdial()
    assert run_problems(campaign(plan, dial), plan, dial, None) == []


def test_campaign_without_outdial_may_not_run() -> None:
    plan = outplan()
    problems = run_problems(campaign(plan, None), plan, None, None)
    assert problems == ["outdial_id is not set"]


def test_campaign_whose_outdial_is_missing_may_not_run() -> None:
    plan, dial = outplan(), outdial()
    problems = run_problems(campaign(plan, dial), plan, None, None)
    assert len(problems) == 1
    assert dial.id in problems[0]
    assert "does not exist" in problems[0]


def test_campaign_whose_next_campaign_is_missing_may_not_run() -> None:
    plan, dial = outplan(), outdial()
    missing = new_id()
    problems = run_problems(campaign(plan, dial, next_campaign_id=missing), plan, dial, None)
    assert len(problems) == 1
    assert missing in problems[0]


def test_campaign_that_chains_to_itself_may_not_run() -> None:
    plan, dial = outplan(), outdial()
    looping = campaign(plan, dial)
    looping = msgspec.structs.replace(looping, next_campaign_id=looping.id)
    problems = run_problems(looping, plan, dial, looping)
    assert problems == ["next_campaign_id names the campaign itself"]


def test_every_problem_of_a_campaign_is_reported_at_once() -> None:
    problems = run_problems(campaign(None, None, next_campaign_id=new_id()), None, None, None)
    assert len(problems) == 3


@pytest.mark.parametrize("current", [CampaignStatus.RUN, CampaignStatus.STOPPING])
def test_stop_with_active_attempts_waits_in_stopping(current: CampaignStatus) -> None:
    assert status_after_stop_request(current, active_attempts=3) == CampaignStatus.STOPPING


@pytest.mark.parametrize("current", [CampaignStatus.RUN, CampaignStatus.STOPPING])
def test_stop_without_active_attempts_stops_at_once(current: CampaignStatus) -> None:
    assert status_after_stop_request(current, active_attempts=0) == CampaignStatus.STOP


def test_stop_of_a_stopped_campaign_keeps_it_stopped() -> None:
    assert status_after_stop_request(CampaignStatus.STOP, active_attempts=2) == CampaignStatus.STOP


def test_exhausted_campaign_with_end_handle_stop_stops() -> None:
    assert status_when_exhausted(EndHandle.STOP) == CampaignStatus.STOP


def test_exhausted_campaign_with_end_handle_continue_keeps_running() -> None:
    assert status_when_exhausted(EndHandle.CONTINUE) == CampaignStatus.RUN


def chain() -> tuple[Campaign, Campaign]:
    """A campaign that just stopped (exhausted) and the stopped campaign it names next."""
    plan, dial = outplan(), outdial()
    follow_up = campaign(plan, dial)
    first = campaign(plan, dial, next_campaign_id=follow_up.id)
    return first, follow_up


def test_exhausted_campaign_starts_its_stopped_next_campaign() -> None:
    first, follow_up = chain()
    assert should_chain(first, follow_up, started_by_chain=False, dialed_any=True)


def test_exhausted_campaign_started_by_a_user_chains_even_if_it_dialed_nothing() -> None:
    first, follow_up = chain()
    assert should_chain(first, follow_up, started_by_chain=False, dialed_any=False)


def test_chained_campaign_that_dialed_chains_further() -> None:
    first, follow_up = chain()
    assert should_chain(first, follow_up, started_by_chain=True, dialed_any=True)


def test_chained_campaign_that_dialed_nothing_does_not_chain_further() -> None:
    first, follow_up = chain()
    assert not should_chain(first, follow_up, started_by_chain=True, dialed_any=False)


@pytest.mark.parametrize("status", [CampaignStatus.RUN, CampaignStatus.STOPPING])
def test_next_campaign_that_is_not_stopped_is_left_alone(status: CampaignStatus) -> None:
    first, follow_up = chain()
    busy = msgspec.structs.replace(follow_up, status=status)
    assert not should_chain(first, busy, started_by_chain=False, dialed_any=True)


def test_next_campaign_of_another_customer_is_not_started() -> None:
    first, follow_up = chain()
    foreign = msgspec.structs.replace(follow_up, customer_id=OTHER_CUSTOMER)
    assert not should_chain(first, foreign, started_by_chain=False, dialed_any=True)


def test_missing_next_campaign_is_not_started() -> None:
    first, _ = chain()
    assert not should_chain(first, None, started_by_chain=False, dialed_any=True)


def test_campaign_without_next_campaign_does_not_chain() -> None:
    first, follow_up = chain()
    alone = msgspec.structs.replace(first, next_campaign_id=NIL_UUID)
    assert not should_chain(alone, follow_up, started_by_chain=False, dialed_any=True)


def test_campaign_naming_itself_next_does_not_restart_itself() -> None:
    first, _ = chain()
    looping = msgspec.structs.replace(first, next_campaign_id=first.id)
    assert not should_chain(looping, looping, started_by_chain=False, dialed_any=True)


def test_campaign_other_than_the_named_next_one_is_not_started() -> None:
    first, _ = chain()
    stranger = campaign()
    assert not should_chain(first, stranger, started_by_chain=False, dialed_any=True)
