"""One conformance model for the stores (issue 16): every backend answers as the pure
reference does (``tests/fakes/reference_store.py``, built on ``dialerd.core.targets``).

Hypothesis draws histories of imports, claims, answers, outcomes, outplan edits,
deletes and clock jumps; each history runs on a backend and on the reference, and every
answer is compared: the campaigncall a claim creates (which target, slot and try count,
or ``None``), what ``mark_answered``, ``finish_attempt`` and ``delete_target`` return
(or raise), the target after each step, the target counts, ``outdial_exhausted``, the
active attempts, and at the end every target and campaigncall. SQLite and Redis both
equal to the reference means they equal each other.

Each example uses its own campaign, outplan and outdial in the one store of the test;
ids are derived from a per-example namespace, so the backend and the reference get the
same ids and the same listing order.

The large cases replay where the old Redis store diverged: thousands of spent targets
at the head of the ready order (it stepped over 64 at most) and thousands waiting for
their retry (its exhausted check looked at 1,000).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import msgspec
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from dialerd.core.hours import CallingHours
from dialerd.core.targets import CallingRules, RetryRule, gives_try_back, result_for
from dialerd.model import (
    Address,
    AddressType,
    Campaign,
    Campaigncall,
    CampaigncallStatus,
    CampaignStatus,
    DncNumber,
    HangupReason,
    Outdial,
    OutdialTarget,
    Outplan,
    format_time,
)
from dialerd.store import (
    AttemptPlan,
    CampaignNotRunning,
    Conflict,
    Store,
    StoreError,
)
from tests.fakes.reference_store import ReferenceStore
from tests.integration.conftest import EPOCH, Factory

HOUR_MS = 3_600_000
SLOTS = 5

# -- histories --------------------------------------------------------------------------

# A destination: None, a blank tel address, an all-empty address, one of a few numbers,
# or a sip address the trunk dials as one of the first two numbers (issue 26).
NO_ADDRESS, BLANK_TEL, EMPTY, *NUMBERS = range(7)
SIP_TWINS = (7, 8)


def number_of(code: int) -> str:
    return f"+1555010{code:04d}"


def address(code: int) -> Address | None:
    if code == NO_ADDRESS:
        return None
    if code == BLANK_TEL:
        return Address(type=AddressType.TEL, target="", name="no number on file")
    if code == EMPTY:
        return Address()
    if code in SIP_TWINS:
        twin = NUMBERS[SIP_TWINS.index(code)]
        return Address(type=AddressType.SIP, target=f"sip:{number_of(twin)[1:]}@trunk")
    return Address(type=AddressType.TEL, target=number_of(code))


@dataclass(frozen=True)
class Create:
    destinations: tuple[tuple[int, ...], ...]  # five codes per target


@dataclass(frozen=True)
class ClaimOne:
    pass


@dataclass(frozen=True)
class Answer:
    pick: int


@dataclass(frozen=True)
class Finish:
    pick: int
    reason: HangupReason
    stopped: bool  # a stop ended it: the try is given back unless it was answered
    late: bool  # pick among every campaigncall, finished ones too


@dataclass(frozen=True)
class EditOutplan:
    max_try_counts: tuple[int, int, int, int, int]
    try_interval: int


@dataclass(frozen=True)
class Delete:
    pick: int


@dataclass(frozen=True)
class ListNumber:
    pick: int  # which of NUMBERS goes on the customer's do-not-call list


@dataclass(frozen=True)
class Jump:
    kind: str  # "ms", "interval-", "interval", "interval+", "hours"
    amount: int


Step = Create | ClaimOne | Answer | Finish | EditOutplan | Delete | ListNumber | Jump

# Mostly numbers to dial; now and then a slot without one, or a sip twin of a number.
codes = st.one_of(
    st.sampled_from(NUMBERS),
    st.sampled_from(NUMBERS),
    st.integers(0, EMPTY),
    st.sampled_from(SIP_TWINS),
)
one_target = st.tuples(*(codes for _ in range(SLOTS)))
max_counts = st.tuples(*(st.integers(0, 3) for _ in range(SLOTS)))
# The outplan a history starts with allows a try or more on the first number.
first_counts = st.tuples(st.integers(1, 3), *(st.integers(0, 2) for _ in range(SLOTS - 1)))
intervals = st.sampled_from([0, 1, 1_000, 60_000])
creates = st.builds(
    Create,
    st.one_of(
        st.lists(one_target, min_size=1, max_size=8),
        st.lists(one_target, min_size=1, max_size=50),
    ).map(tuple),
)
finishes = st.builds(
    Finish,
    st.integers(0, 50),
    st.sampled_from(list(HangupReason)),
    st.booleans(),
    st.integers(0, 9).map(lambda n: n == 0),
)
by_kind: dict[str, st.SearchStrategy[Step]] = {
    "create": creates,
    "claim": st.just(ClaimOne()),
    "finish": finishes,
    "answer": st.builds(Answer, st.integers(0, 50)),
    "edit": st.builds(EditOutplan, max_counts, intervals),
    "delete": st.builds(Delete, st.integers(0, 200)),
    "list": st.builds(ListNumber, st.integers(0, len(NUMBERS) - 1)),
    "jump": st.builds(
        Jump,
        st.sampled_from(["ms", "interval-", "interval", "interval+", "hours"]),
        st.integers(0, 5),
    ),
}
# How often each kind of step comes (claims and ends of attempts the most).
WEIGHTS = {
    "create": 1,
    "claim": 5,
    "finish": 4,
    "answer": 2,
    "edit": 1,
    "delete": 1,
    "list": 1,
    "jump": 2,
}
steps: st.SearchStrategy[Step] = st.sampled_from(
    [kind for kind, weight in WEIGHTS.items() for _ in range(weight)]
).flatmap(by_kind.__getitem__)


@dataclass(frozen=True)
class History:
    max_try_counts: tuple[int, int, int, int, int]
    try_interval: int
    steps: list[Step]


histories = st.builds(
    History,
    first_counts,
    intervals,
    st.tuples(creates, st.lists(steps, min_size=10, max_size=40)).map(
        lambda drawn: [drawn[0], *drawn[1]]
    ),
)


# -- running one history on a store and on the reference ----------------------------------


class Backend(Protocol):
    """What the model calls, as the Store port and the reference both offer it."""

    backend: str

    async def create_campaign(self, campaign: Campaign) -> Campaign: ...
    async def create_outplan(self, outplan: Outplan) -> Outplan: ...
    async def update_outplan(self, outplan: Outplan) -> Outplan: ...
    async def create_outdial(self, outdial: Outdial) -> Outdial: ...


Answered = tuple[str, Any]


def _plain(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


async def answer_of(call: Awaitable[Any]) -> Answered:
    """A call's answer as comparable data: its value, or the kind of error it raised."""
    try:
        return ("ok", _plain(await call))
    except CampaignNotRunning:
        return ("error", "CampaignNotRunning")
    except Conflict:
        return ("error", "Conflict")
    except StoreError as error:
        return ("error", f"StoreError:{type(error).__name__}")


@dataclass
class Run:
    """One history's world: the same resources in the store and in the reference."""

    store: Store
    reference: ReferenceStore
    namespace: uuid.UUID
    campaign: Campaign
    outplan: Outplan
    outdial: Outdial
    now: datetime = EPOCH
    target_ids: list[str] = field(default_factory=list)
    campaigncall_ids: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def id(self, name: str) -> str:
        return str(uuid.uuid5(self.namespace, name))

    @classmethod
    async def start(cls, store: Store, max_try_counts: tuple[int, ...], try_interval: int) -> Run:
        make = Factory()
        namespace = uuid.uuid4()
        customer = str(uuid.uuid5(namespace, "customer"))
        outplan = make.outplan(customer, max_try_counts=max_try_counts, try_interval=try_interval)
        outdial = make.outdial(customer)
        campaign = make.campaign(
            customer, outplan_id=outplan.id, outdial_id=outdial.id, status=CampaignStatus.RUN
        )
        reference = ReferenceStore()
        for backend in (store, reference):
            await backend.create_outplan(outplan)
            await backend.create_outdial(outdial)
            await backend.create_campaign(campaign)
        return cls(store, reference, namespace, campaign, outplan, outdial)

    async def same(self, label: str, call: Callable[[Any], Awaitable[Any]]) -> Answered:
        """Ask both; they must answer alike."""
        expected = await answer_of(call(self.reference))
        actual = await answer_of(call(self.store))
        self.log.append(f"{label} -> {expected}")
        assert actual == expected, (
            f"{self.store.backend} differs from the reference at {label!r} "
            f"(now {format_time(self.now)}):\n  {self.store.backend}: {actual}\n"
            f"  reference: {expected}"
        )
        return expected

    # -- steps ---------------------------------------------------------------------------
    async def apply(self, step: Step) -> None:
        match step:
            case Create(destinations):
                await self.create(destinations)
            case ClaimOne():
                await self.claim()
            case Answer(pick):
                await self.answer(pick)
            case Finish():
                await self.finish(step)
            case EditOutplan(counts, interval):
                await self.edit(counts, interval)
            case Delete(pick):
                await self.delete(pick)
            case ListNumber(pick):
                await self.list_number(pick)
            case Jump(kind, amount):
                self.jump(kind, amount)
        await self.check_counts()

    async def create(self, destinations: tuple[tuple[int, ...], ...]) -> None:
        stamp = format_time(self.now)
        targets = []
        for codes_ in destinations:
            number = len(self.target_ids)
            fresh = OutdialTarget.fresh(
                self.outdial.id, [address(code) for code in codes_], stamp, name=f"t{number}"
            )
            targets.append(msgspec.structs.replace(fresh, id=self.id(f"target-{number}")))
            self.target_ids.append(targets[-1].id)
        await self.same(
            f"create_targets({len(targets)})", lambda backend: backend.create_targets(targets)
        )

    def plan(self) -> AttemptPlan:
        number = len(self.campaigncall_ids)
        campaigncall_id = self.id(f"campaigncall-{number}")
        return AttemptPlan(
            campaign=self.campaign,
            outplan=self.outplan,
            campaigncall_id=campaigncall_id,
            reference_id=self.id(f"reference-{number}"),
            activeflow_id=self.id(f"activeflow-{number}"),
            now=self.now,
        )

    async def claim(self) -> None:
        plan = self.plan()
        kind, campaigncall = await self.same(
            "start_attempt", lambda backend: backend.start_attempt(plan)
        )
        if kind == "ok" and campaigncall is not None:
            self.campaigncall_ids.append(plan.campaigncall_id)
            target_id = campaigncall["outdial_target_id"]
            await self.same(
                f"get_target({target_id}) after the claim",
                lambda backend: backend.get_target(self.outdial.id, target_id),
            )

    def active(self) -> list[str]:
        return [
            id_
            for id_ in self.campaigncall_ids
            if self.reference.campaigncalls[id_].status != CampaigncallStatus.DONE
        ]

    async def answer(self, pick: int) -> None:
        active = self.active()
        if not active:
            return
        campaigncall_id = active[pick % len(active)]
        await self.same(
            f"mark_answered({campaigncall_id})",
            lambda backend: backend.mark_answered(campaigncall_id, self.now),
        )

    async def finish(self, step: Finish) -> None:
        candidates = self.campaigncall_ids if step.late else self.active()
        if not candidates:
            return
        campaigncall_id = candidates[step.pick % len(candidates)]
        stored = self.reference.campaigncalls[campaigncall_id]
        answered = stored.status == CampaigncallStatus.PROGRESSING
        give_back = gives_try_back(step.reason, answered=answered, stopped=step.stopped)
        result = result_for(step.reason)
        rule = RetryRule.of(self.outplan)
        await self.same(
            f"finish_attempt({campaigncall_id}, {result}, {step.reason}, {rule}, "
            f"give_back_try={give_back})",
            lambda backend: backend.finish_attempt(
                campaigncall_id,
                result,
                step.reason.value,
                rule,
                self.now,
                give_back_try=give_back,
            ),
        )

    async def edit(self, counts: tuple[int, ...], interval: int) -> None:
        changes = {f"max_try_count_{slot}": counts[slot] for slot in range(SLOTS)}
        self.outplan = msgspec.structs.replace(
            self.outplan, try_interval=interval, tm_update=format_time(self.now), **changes
        )
        outplan = self.outplan
        await self.same(
            f"update_outplan({counts}, {interval})",
            lambda backend: backend.update_outplan(outplan),
        )

    async def delete(self, pick: int) -> None:
        if not self.target_ids:
            return
        target_id = self.target_ids[pick % len(self.target_ids)]
        await self.same(
            f"delete_target({target_id})",
            lambda backend: backend.delete_target(self.outdial.id, target_id, self.now),
        )

    async def list_number(self, pick: int) -> None:
        entry = DncNumber(
            customer_id=self.campaign.customer_id,
            number=number_of(NUMBERS[pick]),
            tm_create=format_time(self.now),
        )
        for backend in (self.reference, self.store):
            await backend.add_dnc_numbers([entry])
        self.log.append(f"listed {entry.number}")

    def jump(self, kind: str, amount: int) -> None:
        interval = self.outplan.try_interval
        ms = {
            "ms": amount,
            "interval-": max(0, interval - 1),
            "interval": interval,
            "interval+": interval + 1 + amount,
            "hours": HOUR_MS * (1 + amount),
        }[kind]
        self.now += timedelta(milliseconds=ms)
        self.log.append(f"clock +{ms} ms")

    async def check_counts(self) -> None:
        await self.same(
            "target_counts", lambda backend: backend.target_counts(self.outdial.id, self.now)
        )
        await self.same(
            "outdial_exhausted",
            lambda backend: backend.outdial_exhausted(self.campaign.id, self.outdial.id),
        )

    async def check_everything(self) -> None:
        """The end of a history: every target, every campaigncall, the active ones."""
        await self.check_counts()
        await self.same("the target listing", lambda backend: all_targets(backend, self.outdial))
        for target_id in self.target_ids:
            await self.same(
                f"get_target({target_id})",
                lambda backend, target_id=target_id: backend.get_target(self.outdial.id, target_id),
            )
        for campaigncall_id in self.campaigncall_ids:
            await self.same(
                f"get_campaigncall({campaigncall_id})",
                lambda backend, campaigncall_id=campaigncall_id: backend.get_campaigncall(
                    None, campaigncall_id
                ),
            )
        await self.same(
            "active_attempts",
            lambda backend: sorted_calls(backend.active_attempts(self.campaign.id)),
        )
        await self.same("count_dialing", lambda backend: backend.count_dialing(self.campaign.id))


async def all_targets(backend: Any, outdial: Outdial) -> list[OutdialTarget]:
    """Every page of the listing, in order (a page may come back short)."""
    found: list[OutdialTarget] = []
    token = ""
    while True:
        page = await backend.list_targets(outdial.id, page_size=100, page_token=token)
        found.extend(page.result)
        if not page.next_page_token:
            return found
        token = page.next_page_token


async def sorted_calls(calls: Awaitable[list[Campaigncall]]) -> list[Campaigncall]:
    return sorted(await calls, key=lambda campaigncall: campaigncall.id)


# -- the model ----------------------------------------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories)
async def test_the_store_answers_as_the_reference_does(store: Store, history: History) -> None:
    note(f"history: {history!r}")
    run = await Run.start(store, history.max_try_counts, history.try_interval)
    for step in history.steps:
        await run.apply(step)
    await run.check_everything()


async def test_a_claim_walks_past_thousands_of_spent_targets(
    store: Store,
) -> None:
    run = await Run.start(store, (3, 0, 0, 0, 0), 0)
    stamp = format_time(run.now)
    spent = [
        msgspec.structs.replace(
            OutdialTarget.fresh(run.outdial.id, [address(NUMBERS[0])], stamp, name=f"s{n}"),
            id=run.id(f"spent-{n}"),
            try_count_0=2,
        )
        for n in range(3_000)
    ]
    await run.same("import 3,000 tried twice", lambda backend: backend.create_targets(spent))
    run.target_ids.extend(target.id for target in spent)
    await run.create(((NUMBERS[1], 0, 0, 0, 0),) * 5)
    await run.check_counts()
    await run.edit((2, 0, 0, 0, 0), 0)
    for _ in range(5):
        await run.claim()
    await run.check_counts()
    await run.claim()  # none left: the five are progressing
    for _ in range(5):
        await run.finish(Finish(0, HangupReason.NORMAL, stopped=False, late=False))
    await run.claim()
    await run.check_everything()
    assert run.reference.campaigncalls, "the five dialable targets behind were claimed"
    assert await run.store.outdial_exhausted(run.campaign.id, run.outdial.id)


async def test_thousands_of_targets_waiting_for_their_retry(
    store: Store,
) -> None:
    count = 2_000
    run = await Run.start(store, (2, 0, 0, 0, 0), 60_000)
    await run.create(((NUMBERS[0], 0, 0, 0, 0),) * count)
    for _ in range(count):
        plan = run.plan()
        run.campaigncall_ids.append(plan.campaigncall_id)
        for backend in (run.reference, run.store):
            assert await backend.start_attempt(plan) is not None
    # Ended in the reverse order, a millisecond apart: the retries go in that order.
    rule = RetryRule.of(run.outplan)
    for campaigncall_id in reversed(run.campaigncall_ids):
        run.now += timedelta(milliseconds=1)
        for backend in (run.reference, run.store):
            await backend.finish_attempt(
                campaigncall_id, result_for(HangupReason.BUSY), "busy", rule, run.now
            )
    await run.check_counts()
    await run.claim()  # every target waits for its interval
    await run.check_counts()
    run.jump("interval", 0)  # the first ones to have ended are due again
    for _ in range(3):
        await run.claim()
    await run.check_counts()
    await run.edit((1, 0, 0, 0, 0), 60_000)  # lowered: every waiting target is spent
    run.jump("hours", 0)
    await run.claim()
    await run.check_everything()


async def test_thousands_due_at_once_are_claimed_in_the_order_sqlite_takes(
    store: Store,
) -> None:
    """5,000 targets due at once, whose due order is not their ready order: the first
    half (in Los Angeles) was created first but its hours open three hours after the
    second half's (in New York). Once all are due the claim takes the first created, as
    SQLite does (a store that moved only the earliest due to the ready ones took a New
    York one)."""
    half = 2_500
    run = await Run.start(store, (3, 0, 0, 0, 0), 0)
    rules = CallingRules(hours=CallingHours())
    stamp = format_time(run.now)
    targets = []
    for n in range(2 * half):
        zone = "America/Los_Angeles" if n < half else "America/New_York"
        fresh = OutdialTarget.fresh(
            run.outdial.id, [address(NUMBERS[0])], stamp, data=f'{{"timezone": "{zone}"}}'
        )
        targets.append(msgspec.structs.replace(fresh, id=run.id(f"target-{n}")))
    run.target_ids.extend(target.id for target in targets)
    await run.same("create_targets", lambda backend: backend.create_targets(targets))

    async def claim() -> None:
        plan = msgspec.structs.replace(run.plan(), rules=rules)
        kind, call = await run.same("start_attempt", lambda b: b.start_attempt(plan))
        if kind == "ok" and call is not None:
            run.campaigncall_ids.append(plan.campaigncall_id)

    await claim()  # 09:00 UTC: night in both; every target waits for its opening
    await run.check_counts()
    run.now += timedelta(hours=7)  # 16:00 UTC: 08:00 in Los Angeles, 11:00 in New York
    for _ in range(3):
        await claim()
    await run.check_counts()
    first = run.reference.campaigncalls[run.campaigncall_ids[0]]
    assert first.outdial_target_id == run.target_ids[0], "the first created goes first"


async def test_a_claim_finds_the_target_behind_5000_staged_import_rows(
    store: Store,
) -> None:
    """An import of 5,000 rows is staged (not published yet) ahead of a target created
    meanwhile: the claim steps over all of them and dials that target; once published,
    the rows are dialed in their order."""
    count = 5_000
    run = await Run.start(store, (1, 0, 0, 0, 0), 0)
    stamp = format_time(run.now)
    staged = [
        msgspec.structs.replace(
            OutdialTarget.fresh(run.outdial.id, [address(NUMBERS[1])], stamp, name=f"i{n}"),
            id=run.id(f"staged-{n}"),
        )
        for n in range(count)
    ]

    async def batches() -> AsyncIterator[list[OutdialTarget]]:
        yield staged
        # Staged, not published: the reference has not seen them.
        run.now += timedelta(milliseconds=1)
        await run.create(((NUMBERS[0], 0, 0, 0, 0),))
        await run.claim()
        await run.claim()  # nothing else is visible

    assert await run.store.import_targets(batches()) == count
    await run.reference.create_targets(staged)
    run.target_ids.extend(target.id for target in staged)
    first = run.reference.campaigncalls[run.campaigncall_ids[0]]
    assert first.outdial_target_id == run.target_ids[-count - 1]
    for _ in range(3):
        await run.claim()
    await run.check_everything()
