"""The ``Ledger`` port (dialerd/store/ports.py, behaviour.md §4-§6): claims, answers,
finishes, counts, exhaustion and abandonment; run on every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest

from dialerd.core.abandonment import DayCount
from dialerd.core.targets import RetryRule
from dialerd.model import (
    Address,
    AddressType,
    CampaigncallResult,
    CampaigncallStatus,
    CampaignStatus,
    CampaignType,
    OutcomeRetry,
    ReferenceType,
    TargetStatus,
    new_id,
)
from dialerd.store import (
    AsStored,
    AttemptEnd,
    Fence,
    FinishResult,
    LeaseLost,
    Store,
)
from tests.integration.conftest import Dialing
from tests.integration.store.store_steps import FAIL, SUCCESS, claim, finish

if TYPE_CHECKING:
    from tests.integration.conftest import Factory, StoreMaker


# -- start_attempt: order and choice (behaviour.md §4) --------------------------------------


async def test_never_tried_targets_go_in_creation_order(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    targets = [make.target(dialing.outdial.id, name=f"lead {n}") for n in range(20)]
    await store.create_targets(targets)
    claimed = [(await claim(store, dialing, make.at(1))).outdial_target_id for _ in targets]
    assert claimed == [target.id for target in targets]
    assert await store.start_attempt(dialing.plan(make.at(1))) is None


async def test_older_targets_go_first_whenever_they_were_added(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    later = make.target(dialing.outdial.id, tm_create=make.stamp(10))
    earlier = make.target(dialing.outdial.id, tm_create=make.stamp(5))
    await store.create_targets([later])
    await store.create_targets([earlier])
    assert (await claim(store, dialing, make.at(20))).outdial_target_id == earlier.id
    assert (await claim(store, dialing, make.at(20))).outdial_target_id == later.id


async def test_retried_targets_go_by_when_their_last_attempt_ended(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    targets = [make.target(dialing.outdial.id) for _ in range(3)]
    await store.create_targets(targets)
    first, second, third = [await claim(store, dialing, make.at(1)) for _ in targets]
    await finish(store, dialing, third, make.at(2))
    await finish(store, dialing, first, make.at(3))
    await finish(store, dialing, second, make.at(4))
    order = [(await claim(store, dialing, make.at(5))).outdial_target_id for _ in targets]
    assert order == [targets[2].id, targets[0].id, targets[1].id]


async def test_a_retry_and_a_new_target_go_by_when_last_touched(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    retried = make.target(dialing.outdial.id, tm_create=make.stamp(0))
    await store.create_targets([retried])
    await finish(store, dialing, await claim(store, dialing, make.at(1)), make.at(5))
    added_after = make.target(dialing.outdial.id, tm_create=make.stamp(10))
    added_before_end = make.target(dialing.outdial.id, tm_create=make.stamp(3))
    await store.create_targets([added_after, added_before_end])
    order = [(await claim(store, dialing, make.at(20))).outdial_target_id for _ in range(3)]
    assert order == [added_before_end.id, retried.id, added_after.id]


async def test_a_waiting_target_does_not_block_others(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, try_interval=60_000)
    waiting, fresh = make.target(dialing.outdial.id), make.target(dialing.outdial.id)
    await store.create_targets([waiting, fresh])
    await finish(store, dialing, await claim(store, dialing, make.at(0)), make.at(10))
    assert (await claim(store, dialing, make.at(11))).outdial_target_id == fresh.id
    assert await store.start_attempt(dialing.plan(make.at(12))) is None
    assert (await claim(store, dialing, make.at(70))).outdial_target_id == waiting.id


async def test_the_retry_interval_runs_from_the_end_of_the_last_attempt(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store, try_interval=60_000)
    await store.create_targets([make.target(dialing.outdial.id)])
    await finish(store, dialing, await claim(store, dialing, make.at(0)), make.at(50))
    # 65 s after the start, but only 15 s after the end.
    assert await store.start_attempt(dialing.plan(make.at(65))) is None
    assert await store.start_attempt(dialing.plan(make.at(109.999))) is None
    assert (await claim(store, dialing, make.at(110))).try_count == 2


async def test_every_try_of_slot_0_comes_before_slot_1(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, max_try_counts=(2, 1))
    first, second = make.tel("+15550001"), make.tel("+15550002")
    target = make.target(dialing.outdial.id, first, second)
    await store.create_targets([target])
    attempts = []
    for second_of_day in range(0, 40, 10):
        campaigncall = await store.start_attempt(dialing.plan(make.at(second_of_day)))
        if campaigncall is None:
            break
        attempts.append(
            (campaigncall.destination_index, campaigncall.destination, campaigncall.try_count)
        )
        await finish(store, dialing, campaigncall, make.at(second_of_day + 1))
    assert attempts == [(0, first, 1), (0, first, 2), (1, second, 1)]
    stored = await store.get_target(dialing.outdial.id, target.id)
    assert stored is not None
    assert stored.status == TargetStatus.DONE
    assert stored.try_counts == (2, 1, 0, 0, 0)


async def test_empty_destinations_are_skipped(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, max_try_counts=(1, 1, 1, 1, 1))
    blank = Address(type=AddressType.TEL, target="", name="no number")
    dialable = make.tel("+15550004")
    target = make.target(dialing.outdial.id, blank, None, None, dialable)
    nothing = make.target(dialing.outdial.id, blank, None)
    await store.create_targets([nothing, target])
    campaigncall = await claim(store, dialing, make.at(1))
    assert (campaigncall.outdial_target_id, campaigncall.destination_index) == (target.id, 3)
    assert campaigncall.destination == dialable
    await finish(store, dialing, campaigncall, make.at(2))
    assert await store.start_attempt(dialing.plan(make.at(3))) is None
    assert await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id)


async def test_a_slot_with_no_tries_allowed_is_skipped(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, max_try_counts=(0, 2))
    target = make.target(dialing.outdial.id, make.tel("+15550010"), make.tel("+15550011"))
    await store.create_targets([target])
    campaigncall = await claim(store, dialing, make.at(1))
    assert campaigncall.destination_index == 1


async def test_a_target_whose_slots_allow_no_try_is_never_dialed(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store, max_try_counts=(0, 2))
    only_slot_0 = make.target(dialing.outdial.id, make.tel("+15550010"))
    await store.create_targets([only_slot_0])
    assert await store.start_attempt(dialing.plan(make.at(1))) is None


async def test_a_deleted_target_is_not_dialed(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    deleted, kept = make.target(dialing.outdial.id), make.target(dialing.outdial.id)
    await store.create_targets([deleted, kept])
    await store.delete_target(dialing.outdial.id, deleted.id, make.at(1))
    assert (await claim(store, dialing, make.at(2))).outdial_target_id == kept.id
    assert await store.start_attempt(dialing.plan(make.at(3))) is None


async def test_start_attempt_on_an_empty_outdial_finds_nothing(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    assert await store.start_attempt(dialing.plan(make.at(1))) is None


async def test_a_call_attempt_records_what_is_dialed(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id, make.tel("+15550020"))
    await store.create_targets([target])
    plan = dialing.plan(make.at(3))
    campaigncall = await store.start_attempt(plan)
    assert campaigncall is not None
    campaign = dialing.campaign
    assert campaigncall.id == plan.campaigncall_id
    assert (campaigncall.customer_id, campaigncall.campaign_id) == (
        campaign.customer_id,
        campaign.id,
    )
    assert (campaigncall.outplan_id, campaigncall.outdial_id) == (
        dialing.outplan.id,
        campaign.outdial_id,
    )
    assert campaigncall.outdial_target_id == target.id
    assert campaigncall.queue_id == campaign.queue_id
    assert campaigncall.reference_type == ReferenceType.CALL
    assert campaigncall.reference_id == plan.reference_id
    assert campaigncall.status == CampaigncallStatus.DIALING
    assert campaigncall.result == CampaigncallResult.NONE
    assert campaigncall.source == dialing.outplan.source
    assert campaigncall.destination == make.tel("+15550020")
    assert (campaigncall.destination_index, campaigncall.try_count) == (0, 1)
    assert (campaigncall.tm_create, campaigncall.tm_update, campaigncall.tm_delete) == (
        make.stamp(3),
        None,
        None,
    )
    stored = await store.get_target(dialing.outdial.id, target.id)
    assert stored is not None
    assert (stored.status, stored.try_count_0, stored.tm_update) == (
        TargetStatus.PROGRESSING,
        1,
        make.stamp(3),
    )


async def test_a_flow_attempt_references_its_activeflow(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, type=CampaignType.FLOW)
    await store.create_targets([make.target(dialing.outdial.id)])
    plan = dialing.plan(make.at(1))
    campaigncall = await store.start_attempt(plan)
    assert campaigncall is not None
    assert campaigncall.reference_type == ReferenceType.FLOW
    assert campaigncall.reference_id == "00000000-0000-0000-0000-000000000000"
    assert campaigncall.activeflow_id == plan.activeflow_id


# -- a tick's claim on the campaign as it read it (start_attempts_if_unchanged) -------------


async def read_dialing(store: Store, dialing: Dialing) -> Dialing:
    """``dialing`` with the campaign and outplan as a tick reads them."""
    campaign, outplan = await store.campaign_and_outplan(dialing.campaign.id)
    assert campaign is not None
    assert outplan is not None
    return Dialing(campaign=campaign, outplan=outplan, outdial=dialing.outdial)


async def test_a_claim_on_an_unchanged_read_claims(store: Store, make: Factory) -> None:
    dialing = await read_dialing(store, await make.dialing(store))
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    plans = [dialing.plan(make.at(1)) for _ in range(2)]
    claimed = await store.start_attempts_if_unchanged(plans)
    assert isinstance(claimed, list)
    assert [call.id for call in claimed] == [plan.campaigncall_id for plan in plans]
    # Again, on the same read: nothing changed.
    again = await store.start_attempts_if_unchanged([dialing.plan(make.at(2))])
    assert isinstance(again, list)
    assert len(again) == 1


@pytest.mark.parametrize("change", ["campaign", "outplan", "stop"])
async def test_a_claim_on_a_stale_read_claims_nothing_and_answers_what_is_stored(
    store: Store, make: Factory, change: str
) -> None:
    dialing = await read_dialing(store, await make.dialing(store, max_try_counts=(2,)))
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    # Another writer (an API call, another instance) changes it after the read.
    campaign, outplan = dialing.campaign, dialing.outplan
    if change == "campaign":
        campaign = await store.update_campaign(
            msgspec.structs.replace(campaign, name="renamed", tm_update=make.stamp(1))
        )
    elif change == "outplan":
        outplan = await store.update_outplan(
            msgspec.structs.replace(outplan, dial_timeout=12_000, tm_update=make.stamp(1))
        )
    elif change == "stop":
        campaign = await store.update_campaign(
            msgspec.structs.replace(campaign, status=CampaignStatus.STOP, tm_update=make.stamp(1))
        )

    answer = await store.start_attempts_if_unchanged([dialing.plan(make.at(2))])
    assert answer == AsStored(campaign, outplan)
    assert await store.active_attempts(campaign.id) == []
    counts = await store.target_counts(dialing.outdial.id, make.at(2))
    assert (counts.idle_due, counts.progressing) == (3, 0)


@pytest.mark.parametrize("kind", [CampaignType.CALL, CampaignType.FLOW])
async def test_each_attempt_of_a_batch_carries_its_own_plan_s_ids(
    store: Store, make: Factory, kind: CampaignType
) -> None:
    dialing = await make.dialing(store, type=kind)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(5)])
    plans = [dialing.plan(make.at(1)) for _ in range(5)]
    claimed = await store.start_attempts(plans)
    nil = "00000000-0000-0000-0000-000000000000"
    assert [(call.id, call.reference_id, call.activeflow_id) for call in claimed] == [
        (plan.campaigncall_id, nil if kind == CampaignType.FLOW else plan.reference_id,
         plan.activeflow_id)
        for plan in plans
    ]  # fmt: skip
    for call in claimed:
        assert await store.get_campaigncall(None, call.id) == call


# -- finish_attempt and mark_answered (behaviour.md §5) --------------------------------------


async def test_success_finishes_the_target(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    campaigncall = await claim(store, dialing, make.at(1))
    done = await store.finish_attempt(
        campaigncall.id, SUCCESS, "normal", RetryRule.of(dialing.outplan), make.at(9)
    )
    assert done is not None
    assert done.finished
    assert (done.campaigncall.status, done.campaigncall.result) == (
        CampaigncallStatus.DONE,
        SUCCESS,
    )
    assert (done.campaigncall.reason, done.campaigncall.tm_update) == ("normal", make.stamp(9))
    assert done.target is not None
    assert (done.target.status, done.target.tm_update) == (TargetStatus.DONE, make.stamp(9))
    assert await store.get_campaigncall(None, campaigncall.id) == done.campaigncall
    assert await store.start_attempt(dialing.plan(make.at(10))) is None


async def test_a_burst_of_ends_is_written_as_each_end_alone(store: Store, make: Factory) -> None:
    """``finish_attempts``: each end of the burst as ``finish_attempt`` writes it, in
    order; an end under a lost lease changes nothing and the others are written; an
    unknown attempt is None; the burst written again changes nothing."""
    dialing = await make.dialing(store, max_try_counts=(2,))
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    fence = await store.acquire_lease(dialing.campaign.id, "host-a:1:aa", 60.0, make.at(1))
    assert fence is not None
    plan = msgspec.structs.replace(dialing.plan(make.at(1)), fence=fence)
    busy, talked, fenced_off = await store.start_attempts(
        [msgspec.structs.replace(plan, campaigncall_id=new_id()) for _ in range(3)]
    )
    rule = RetryRule.of(dialing.outplan)
    stale = Fence(dialing.campaign.id, "host-b:2:bb", fence.token + 1)

    def end(call_id: str, result: CampaigncallResult, reason: str, **more: object) -> AttemptEnd:
        return AttemptEnd(
            campaigncall_id=call_id, result=result, reason=reason, rule=rule,
            now=make.at(5), **{"fence": fence, **more},  # type: ignore[arg-type]
        )  # fmt: skip

    burst = [
        end(busy.id, FAIL, "busy"),
        # Answered and ended in the same burst: the end is the only write of both.
        end(talked.id, SUCCESS, "normal", answered=True),
        end(fenced_off.id, FAIL, "busy", fence=stale),
        end(new_id(), FAIL, "busy"),
    ]
    first, second, lost, unknown = await store.finish_attempts(burst)
    assert isinstance(first, FinishResult)
    assert isinstance(second, FinishResult)
    assert (first.finished, first.campaigncall.result, first.campaigncall.reason) == (
        True, FAIL, "busy",
    )  # fmt: skip
    assert first.target is not None
    assert first.target.status == TargetStatus.IDLE  # a try left
    assert (second.finished, second.campaigncall.status, second.campaigncall.result) == (
        True, CampaigncallStatus.DONE, SUCCESS,
    )  # fmt: skip
    assert second.target is not None
    assert second.target.status == TargetStatus.DONE
    assert isinstance(lost, LeaseLost)
    assert unknown is None
    assert [call.id for call in await store.active_attempts(dialing.campaign.id)] == [fenced_off.id]
    stored = await store.get_campaigncall(None, busy.id)
    assert stored == first.campaigncall
    again = await store.finish_attempts(burst[:2])
    assert [isinstance(done, FinishResult) and done.finished for done in again] == [False, False]
    assert await store.finish_attempts([]) == []


async def test_a_burst_of_answers_is_written_as_each_answer_alone(
    store: Store, make: Factory
) -> None:
    """``mark_answered_many``: each answer as ``mark_answered`` writes it, in order; one
    under a lost lease changes nothing and the others are written; an attempt no longer
    dialing or unknown is None; the list written again changes nothing."""
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(4)])
    fence = await store.acquire_lease(dialing.campaign.id, "host-a:1:aa", 60.0, make.at(1))
    assert fence is not None
    plan = msgspec.structs.replace(dialing.plan(make.at(1)), fence=fence)
    first, second, fenced_off, ended = await store.start_attempts(
        [msgspec.structs.replace(plan, campaigncall_id=new_id()) for _ in range(4)]
    )
    await finish(store, dialing, ended, make.at(2))
    stale = Fence(dialing.campaign.id, "host-b:2:bb", fence.token + 1)
    answers = [
        (first.id, fence),
        (second.id, fence),
        (fenced_off.id, stale),
        (ended.id, fence),
        (new_id(), fence),
    ]
    one, two, lost, done, unknown = await store.mark_answered_many(answers, make.at(3))
    assert isinstance(lost, LeaseLost)
    assert (done, unknown) == (None, None)
    for answered, claimed in ((one, first), (two, second)):
        assert answered is not None
        assert not isinstance(answered, LeaseLost)
        assert (answered.id, answered.status, answered.tm_update) == (
            claimed.id, CampaigncallStatus.PROGRESSING, make.stamp(3),
        )  # fmt: skip
        assert await store.get_campaigncall(None, claimed.id) == answered
    assert await store.count_dialing(dialing.campaign.id) == 1  # the fenced-off one
    assert await store.mark_answered_many(answers[:2], make.at(4)) == [None, None]
    assert await store.mark_answered_many([], make.at(4)) == []


async def test_a_failure_with_tries_left_makes_the_target_idle(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, max_try_counts=(2,))
    await store.create_targets([make.target(dialing.outdial.id)])
    campaigncall = await claim(store, dialing, make.at(1))
    done = await store.finish_attempt(
        campaigncall.id, FAIL, "no_answer", RetryRule.of(dialing.outplan), make.at(2)
    )
    assert done is not None
    assert done.target is not None
    assert done.target.status == TargetStatus.IDLE
    assert done.campaigncall.reason == "no_answer"


async def test_a_failure_on_the_last_try_finishes_the_target(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store, max_try_counts=(1,))
    await store.create_targets([make.target(dialing.outdial.id)])
    campaigncall = await claim(store, dialing, make.at(1))
    done = await store.finish_attempt(
        campaigncall.id, FAIL, "busy", RetryRule.of(dialing.outplan), make.at(2)
    )
    assert done is not None
    assert done.target is not None
    assert done.target.status == TargetStatus.DONE


async def test_each_outcome_waits_its_own_interval_and_stops_at_its_own_limit(
    store: Store, make: Factory
) -> None:
    """An outplan's ``retry_by_outcome``: busy lines are retried after 5 s, unanswered
    calls after an hour (the outplan's own interval is a minute), and a number that
    reached an answering machine is not tried again once it has had two attempts."""
    dialing = await make.dialing(store, max_try_counts=(5,), try_interval=60_000)
    outplan = msgspec.structs.replace(
        dialing.outplan,
        retry_by_outcome={
            "busy": OutcomeRetry(try_interval=5_000),
            "no_answer": OutcomeRetry(try_interval=3_600_000),
            "machine": OutcomeRetry(max_tries=2),
        },
    )
    dialing = Dialing(campaign=dialing.campaign, outplan=outplan, outdial=dialing.outdial)
    busy, silent, machine = (
        make.target(dialing.outdial.id, tm_create=make.stamp(n), name=name)
        for n, name in enumerate(("busy line", "never answers", "machine"))
    )
    await store.create_targets([busy, silent, machine])
    rule = RetryRule.of(outplan)

    async def attempt(now: int, reason: str) -> str:
        call = await claim(store, dialing, make.at(now))
        result = SUCCESS if reason == "normal" else FAIL
        await store.finish_attempt(call.id, result, reason, rule, make.at(now))
        return call.outdial_target_id

    assert await attempt(10, "busy") == busy.id
    assert await attempt(10, "no_answer") == silent.id
    assert await attempt(10, "machine") == machine.id  # 1 attempt so far: retried
    waiting = await store.get_target(dialing.outdial.id, silent.id)
    assert waiting is not None
    assert (waiting.status, waiting.hold_reason, waiting.tm_next_try) == (
        TargetStatus.IDLE,
        "retry_interval",
        make.stamp(3_610),
    )
    assert await store.start_attempt(dialing.plan(make.at(14))) is None
    assert await attempt(15, "busy") == busy.id  # 5 s after its busy end
    assert await attempt(70, "machine") == machine.id  # the outplan's minute
    spent = await store.get_target(dialing.outdial.id, machine.id)
    assert spent is not None
    assert spent.status == TargetStatus.DONE
    assert await attempt(70, "normal") == busy.id  # due again since 20 s: answered
    assert await store.start_attempt(dialing.plan(make.at(3_609))) is None
    assert await attempt(3_610, "no_answer") == silent.id
    counts = await store.target_counts(dialing.outdial.id, make.at(3_610))
    assert (counts.idle_due, counts.idle_waiting, counts.done) == (0, 1, 2)


async def test_an_attempt_is_finished_exactly_once(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    target = make.target(dialing.outdial.id)
    await store.create_targets([target])
    campaigncall = await claim(store, dialing, make.at(1))
    first = await store.finish_attempt(
        campaigncall.id, SUCCESS, "normal", RetryRule.of(dialing.outplan), make.at(5)
    )
    again = await store.finish_attempt(
        campaigncall.id, FAIL, "lost", RetryRule.of(dialing.outplan), make.at(8)
    )
    assert first is not None
    assert again is not None
    assert not again.finished
    assert again.campaigncall == first.campaigncall
    assert again.target == first.target
    assert await store.get_campaigncall(None, campaigncall.id) == first.campaigncall
    assert await store.get_target(dialing.outdial.id, target.id) == first.target


async def test_finishing_an_unknown_attempt_finds_nothing(store: Store, make: Factory) -> None:
    result = await store.finish_attempt(
        new_id(), FAIL, "busy", RetryRule((1, 0, 0, 0, 0)), make.at(1)
    )
    assert result is None


async def test_only_a_dialing_attempt_can_be_answered(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id)])
    campaigncall = await claim(store, dialing, make.at(1))
    answered = await store.mark_answered(campaigncall.id, make.at(2))
    assert answered is not None
    assert (answered.status, answered.tm_update) == (CampaigncallStatus.PROGRESSING, make.stamp(2))
    assert await store.get_campaigncall(None, campaigncall.id) == answered
    assert await store.mark_answered(campaigncall.id, make.at(3)) is None
    await finish(store, dialing, campaigncall, make.at(4))
    assert await store.mark_answered(campaigncall.id, make.at(5)) is None
    assert await store.mark_answered(new_id(), make.at(5)) is None


async def test_dialing_and_active_attempts_are_counted(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    other = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    await store.create_targets([make.target(other.outdial.id)])
    first, second, third = [await claim(store, dialing, make.at(1)) for _ in range(3)]
    elsewhere = await claim(store, other, make.at(1))
    assert await store.count_dialing(dialing.campaign.id) == 3
    await store.mark_answered(first.id, make.at(2))
    await finish(store, dialing, second, make.at(3))
    assert await store.count_dialing(dialing.campaign.id) == 1
    active = await store.active_attempts(dialing.campaign.id)
    assert {c.id: c.status for c in active} == {
        first.id: CampaigncallStatus.PROGRESSING,
        third.id: CampaigncallStatus.DIALING,
    }
    everywhere = await store.active_attempts()
    assert {c.id for c in everywhere} == {first.id, third.id, elsewhere.id}
    assert await store.count_dialing(new_id()) == 0


async def test_hundreds_of_active_attempts_are_all_listed_in_order(
    store: Store, make: Factory
) -> None:
    """More active attempts than one decoding chunk (Redis decodes them a hundred at a
    time): every one is listed, oldest first."""
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(250)])
    claimed = [await claim(store, dialing, make.at(n)) for n in range(250)]
    listed = await store.active_attempts(dialing.campaign.id)
    assert [call.id for call in listed] == [call.id for call in claimed]
    assert len(await store.active_attempts()) == 250


async def test_attempts_claimed_together_are_found_by_their_id_alone_on_another_instance(
    store: Store, twin_store: Store, make: Factory
) -> None:
    """Claims made in one step by one instance: another, which never saw them, reads,
    answers and ends each by its id alone (an instance taking over after a crash)."""
    dialing = await make.dialing(store)
    await store.create_targets([make.target(dialing.outdial.id) for _ in range(3)])
    plan = dialing.plan(make.at(1))
    claimed = await store.start_attempts(
        [msgspec.structs.replace(plan, campaigncall_id=new_id()) for _ in range(3)]
    )
    assert len(claimed) == 3
    for call in claimed:
        assert await twin_store.get_campaigncall(None, call.id) == call
    answered = await twin_store.mark_answered(claimed[0].id, make.at(2))
    assert answered is not None
    assert answered.status == CampaigncallStatus.PROGRESSING
    for call in claimed:
        await finish(twin_store, dialing, call, make.at(3))
    assert await store.active_attempts(dialing.campaign.id) == []


# -- exhaustion (behaviour.md §6) --------------------------------------------------------


async def test_the_outdial_is_exhausted_only_when_nothing_is_left(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store, max_try_counts=(2,), try_interval=60_000)
    await store.create_targets([make.target(dialing.outdial.id)])

    async def exhausted() -> bool:
        return await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id)

    assert not await exhausted()
    campaigncall = await claim(store, dialing, make.at(0))
    assert not await exhausted()  # an attempt is active
    await finish(store, dialing, campaigncall, make.at(10))
    assert await store.start_attempt(dialing.plan(make.at(20))) is None
    assert not await exhausted()  # the target waits for its retry
    campaigncall = await claim(store, dialing, make.at(70))
    await store.mark_answered(campaigncall.id, make.at(71))
    assert not await exhausted()
    await finish(store, dialing, campaigncall, make.at(80))
    assert await exhausted()


async def test_an_empty_outdial_is_exhausted(store: Store, make: Factory) -> None:
    dialing = await make.dialing(store)
    assert await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id)


# -- concurrency ------------------------------------------------------------------------------


async def test_concurrent_claimers_never_dial_one_target_twice(
    store: Store, twin_store: Store, make: Factory
) -> None:
    max_tries = 3
    dialing = await make.dialing(store, max_try_counts=(max_tries,))
    targets = [make.target(dialing.outdial.id) for _ in range(200)]
    await store.create_targets(targets)
    active: set[str] = set()
    attempts: dict[str, list[int]] = {target.id: [] for target in targets}
    overlaps: list[str] = []

    async def claimer(instance: Store) -> None:
        for _ in range(len(targets) * max_tries + 1):
            # One instant for everything: with try_interval 0 a failed target is due at once.
            campaigncall = await instance.start_attempt(dialing.plan(make.at(1)))
            if campaigncall is None:
                return
            target_id = campaigncall.outdial_target_id
            if target_id in active:
                overlaps.append(target_id)
            active.add(target_id)
            attempts[target_id].append(campaigncall.try_count)
            # Other claimers run while this attempt is answered, and must not take its target.
            answered = await instance.mark_answered(campaigncall.id, make.at(1))
            assert answered is not None
            # Leave the set before finishing: once finished, the target may be claimed again.
            active.discard(target_id)
            result = await instance.finish_attempt(
                campaigncall.id, FAIL, "busy", RetryRule.of(dialing.outplan), make.at(1)
            )
            assert result is not None
            assert result.finished

    with anyio.fail_after(60):
        async with anyio.create_task_group() as claimers:
            for number in range(32):
                claimers.start_soon(claimer, store if number % 2 else twin_store)

    assert overlaps == []
    assert all(sorted(counts) == [1, 2, 3] for counts in attempts.values())
    for target in targets:
        stored = await store.get_target(dialing.outdial.id, target.id)
        assert stored is not None
        assert (stored.status, stored.try_counts) == (TargetStatus.DONE, (3, 0, 0, 0, 0))
    assert await store.outdial_exhausted(dialing.campaign.id, dialing.outdial.id)
    assert await store.active_attempts(dialing.campaign.id) == []


# -- abandonment counts (behaviour.md §10) ----------------------------------------------


async def test_abandonment_counts_add_up_per_campaign_and_day(store: Store) -> None:
    campaign, other = new_id(), new_id()
    assert await store.abandonment_days(campaign, "2026-01-01") == []
    assert await store.add_abandonment(campaign, "2026-03-01", 1, 0) == DayCount(
        day="2026-03-01", live=1, abandoned=0
    )
    assert await store.add_abandonment(campaign, "2026-03-01", 1, 1) == DayCount(
        day="2026-03-01", live=2, abandoned=1
    )
    await store.add_abandonment(campaign, "2026-03-02", 3, 0)
    await store.add_abandonment(campaign, "2026-02-27", 5, 2)
    await store.add_abandonment(other, "2026-03-01", 7, 7)

    assert await store.abandonment_days(campaign, "2026-03-01") == [
        DayCount(day="2026-03-01", live=2, abandoned=1),
        DayCount(day="2026-03-02", live=3, abandoned=0),
    ]
    assert [day.day for day in await store.abandonment_days(campaign, "2026-01-01")] == [
        "2026-02-27",
        "2026-03-01",
        "2026-03-02",
    ]
    assert await store.abandonment_days(other, "2026-01-01") == [
        DayCount(day="2026-03-01", live=7, abandoned=7)
    ]


async def test_abandonment_counts_are_shared_by_instances_and_lose_no_concurrent_add(
    store: Store, twin_store: Store
) -> None:
    campaign = new_id()
    async with anyio.create_task_group() as task_group:
        for index in range(40):
            writer = store if index % 2 else twin_store
            abandoned = int(index % 4 == 0)
            task_group.start_soon(writer.add_abandonment, campaign, "2026-03-01", 1, abandoned)
    assert await twin_store.abandonment_days(campaign, "2026-03-01") == [
        DayCount(day="2026-03-01", live=40, abandoned=10)
    ]


async def test_abandonment_counts_survive_a_reopen(new_store: StoreMaker) -> None:
    campaign = new_id()
    first = new_store()
    await first.open()
    await first.add_abandonment(campaign, "2026-03-01", 100, 3)
    await first.close()
    again = new_store()
    await again.open()
    try:
        assert await again.abandonment_days(campaign, "2026-03-01") == [
            DayCount(day="2026-03-01", live=100, abandoned=3)
        ]
    finally:
        await again.close()


async def test_a_tick_reads_a_campaign_and_its_outplan_in_one_step(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    assert await store.campaign_and_outplan(dialing.campaign.id) == (
        dialing.campaign,
        dialing.outplan,
    )
    assert await store.campaign_and_outplan(new_id()) == (None, None)
    # Another customer's outplan is not this campaign's (stopped: a running campaign
    # is never stored with an outplan it cannot use, nor its outplan deleted).
    foreign = await store.create_outplan(make.outplan(new_id()))
    moved = await store.update_campaign(
        msgspec.structs.replace(
            dialing.campaign,
            status=CampaignStatus.STOP,
            outplan_id=foreign.id,
            tm_update=make.stamp(1),
        )
    )
    assert await store.campaign_and_outplan(moved.id) == (moved, None)
    back = await store.update_campaign(
        msgspec.structs.replace(moved, outplan_id=dialing.outplan.id, tm_update=make.stamp(2))
    )
    await store.delete_outplan(dialing.campaign.customer_id, dialing.outplan.id, make.at(3))
    assert await store.campaign_and_outplan(back.id) == (back, None)
